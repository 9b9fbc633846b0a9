"""Failures: one stderr line starting with "uwsgi-docker-rootfs: ", a distinct exit status per
kind, and the host unchanged (checked by the autouse fixture). Daemon misbehaviour comes from a
fake daemon (fake_daemon.py) on a unix socket."""
import json
import os
import re
import selectors
import socket
import subprocess
import sys

import pytest

from udlib import DOCKER_SOCK, HELPER, describe, error_line, helper_env, kept_dirs, run

FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_daemon.py")


@pytest.fixture
def fake_daemon(session_dir):
    """start(mode, inspect=None) -> (socket path, request log path)."""
    procs = []

    def start(mode, inspect=None):
        n = len(procs)
        base = os.path.join(session_dir, f"fake-{os.getpid()}-{id(procs) % 10000}-{n}")
        sock, log = base + ".sock", base + ".log"
        open(log, "w").close()
        args = [sys.executable, FAKE, sock, mode, log]
        if inspect is not None:
            with open(base + ".json", "w") as f:
                json.dump(inspect, f)
            args.append(base + ".json")
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append((p, base))
        sel = selectors.DefaultSelector()
        sel.register(p.stdout, selectors.EVENT_READ)
        ready = sel.select(15) and p.stdout.readline() == "ready\n"
        sel.close()
        assert ready, f"fake daemon did not start: {p.poll()} {p.stderr.read() if p.poll() is not None else ''}"
        return sock, log

    yield start
    for p, base in procs:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        for ext in (".sock", ".log", ".json"):
            try:
                os.unlink(base + ext)
            except FileNotFoundError:
                pass


def _requests(log):
    with open(log) as f:
        return [line.split() for line in f.read().splitlines() if line.strip()]


# ------------------------------------------------------------------------------ usage

@pytest.mark.parametrize("args", [
    ["--bogus-option", "IMG", "--", "/bin/true"],
    [],
    ["--print"],
    ["--unshare", "bogus", "IMG", "--", "/bin/true"],
    ["--hostname", "h", "IMG", "--", "/bin/true"],          # needs --unshare uts
    ["--mount-api", "bogus", "IMG", "--", "/bin/true"],
    ["-t", "abc", "IMG", "--", "/bin/true"],
    ["--bind", "relative/src:/x", "IMG", "--", "/bin/true"],
    ["--tmpfs", "relative", "IMG", "--", "/bin/true"],
    ["IMG", "--rw-path"],
    ["IMG"],                                                # no COMMAND and no hand-off target
    ["--print", "IMG", "--", "/bin/true"],                  # the modes exclude each other
    ["--print", "--pin", "/nonexistent-udtest-pin", "IMG"],
    ["--pin", "/nonexistent-udtest-pin", "--send-to", "/nonexistent-udtest.sock", "IMG"],
    ["--pin", "/nonexistent-udtest-pin", "IMG", "--", "/bin/true"],
    ["--pin", "/nonexistent-udtest-pin", "--unshare", "uts", "IMG"],   # only mnt can be pinned
], ids=["unknown-option", "nothing", "no-image", "unshare-bogus", "hostname-without-uts",
        "mount-api-bogus", "timeout-bogus", "bind-relative", "tmpfs-relative", "missing-arg",
        "no-mode", "print+command", "print+pin", "pin+send-to", "pin+command", "pin+unshare"])
def test_usage_errors(images, args):
    args = [images.busybox if a == "IMG" else a for a in args]
    p = run(args, env=helper_env(UWSGI_DOCKER_FD=None))
    error_line(p, 64)
    assert not os.path.lexists("/nonexistent-udtest-pin")


def test_unshare_pid_is_refused_with_a_pointer(images):
    p = run(["--unshare", "pid", images.busybox, "--", "/bin/true"])
    line = error_line(p, 64)
    assert "emperor-use-clone" in line, line


@pytest.mark.parametrize("opt", ["--help", "-h", "--version", "-V"])
def test_help_and_version(opt):
    p = run([opt])
    assert p.returncode == 0, describe(p)
    assert p.stdout.strip(), describe(p)
    if "h" in opt:
        assert "--rw-path" in p.stdout, describe(p)
    else:
        assert re.search(r"\d+\.\d+", p.stdout), describe(p)


# ------------------------------------------------------------------------------ image

@pytest.mark.parametrize("mode", ["command", "print"])
def test_missing_image(images, mode):
    """The daemon's not found (--pull never: the default would ask Docker Hub; test_pull.py)."""
    ref = "udtest-no-such-image:latest"
    args = ["--print", ref] if mode == "print" else [ref, "--", "/bin/true"]
    args = ["--pull", "never", *args]
    line = error_line(run(args), 65)
    assert "udtest-no-such-image" in line, line
    assert DOCKER_SOCK in line, line


@pytest.mark.parametrize("ref", ["UPPER::bad", "a b", "../x", "x@sha256:zz", "a/../b",
                                 "library/../../../_ping"])
def test_bad_reference(images, ref):
    """Refused before any request: "not found" (also 65) would mean it reached the daemon,
    whose path router (and curl's) resolve the dots: a/../b asks for b."""
    line = error_line(run([ref, "--", "/bin/true"]), 65)
    assert line.endswith(f"'{ref}' is not a valid image reference"), line


@pytest.mark.parametrize("ref", ["UPPER::bad", "a b", "../x", "a/../b"])
def test_bad_reference_print(ref):
    line = error_line(run(["--print", ref]), 65)
    assert line.endswith(f"'{ref}' is not a valid image reference"), line


# ------------------------------------------------------------------------------ daemon

@pytest.mark.parametrize("how", ["-H path", "-H unix://", "DOCKER_HOST"])
def test_dead_socket_missing_path(images, session_dir, how):
    path = os.path.join(session_dir, "no-such-daemon.sock")
    if how == "-H path":
        p = run(["-H", path, images.busybox, "--", "/bin/true"])
    elif how == "-H unix://":
        p = run(["-H", "unix://" + path, images.busybox, "--", "/bin/true"])
    else:
        p = run([images.busybox, "--", "/bin/true"], env=helper_env(DOCKER_HOST="unix://" + path))
    line = error_line(p, 66)
    assert path in line, line


def test_dead_socket_not_listening(images, session_dir):
    path = os.path.join(session_dir, "not-listening.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()  # the socket file stays; connect() gets ECONNREFUSED
    try:
        line = error_line(run(["-H", path, images.busybox, "--", "/bin/true"]), 66)
        assert path in line, line
    finally:
        os.unlink(path)


def test_socket_path_is_not_a_socket(images, session_dir):
    path = os.path.join(session_dir, "plain-file")
    open(path, "w").close()
    try:
        error_line(run(["-H", path, images.busybox, "--", "/bin/true"]), 66)
    finally:
        os.unlink(path)


@pytest.mark.parametrize("mode", ["garbage", "badjson", "truncated", "status500"])
def test_daemon_garbage(images, fake_daemon, mode):
    sock, log = fake_daemon(mode, images.info[images.busybox])
    p = run(["-H", sock, "-t", "5", images.busybox, "--", "/bin/true"], timeout=30)
    line = error_line(p, 66)
    assert sock in line, line
    assert _requests(log), "the helper never talked to the fake daemon"


@pytest.mark.parametrize("timeout", ["1", "0.5"])
def test_daemon_never_answers(images, fake_daemon, timeout):
    sock, log = fake_daemon("hang")
    # Must give up on its own after about --timeout; 20 s is only a safety net.
    p = run(["-H", sock, "-t", timeout, images.busybox, "--", "/bin/true"], timeout=20)
    line = error_line(p, 66)
    assert sock in line, line
    assert _requests(log), "the helper never talked to the fake daemon"


@pytest.mark.parametrize("theirs,expected", [
    ("1.12", "1.12"), ("1.41", "1.41"), ("1.47", "1.47"), ("99.1", "1.47"),
    ("1.100", "1.47"), ("1.9", "1.9"),
])
def test_api_version_negotiation(images, fake_daemon, theirs, expected):
    """min(ours = 1.47, theirs), versions compared as integers per component."""
    info = images.info[images.layers]
    sock, log = fake_daemon("version:" + theirs, info)
    p = run(["-H", sock, "--print", images.layers])
    assert p.returncode == 0, describe(p)
    assert json.loads(p.stdout)["layers"] == kept_dirs(info)
    reqs = _requests(log)
    image_paths = [r[1] for r in reqs if "/images/" in r[1]]
    assert image_paths, reqs
    for path in image_paths:
        assert path.startswith(f"/v{expected}/images/"), reqs
    for method, path, *_ in reqs:
        m = re.match(r"^/v([0-9.]+)/", path)
        if m:
            assert m.group(1) == expected, reqs


def test_run_through_a_fake_daemon(images, fake_daemon):
    """The answer is all the helper needs: a run works with the layers the fake names."""
    sock, log = fake_daemon("version:1.41", images.info[images.layers])
    p = run(["-H", "unix://" + sock, images.layers, "--", "/bin/sh", "-c",
             "cat /data/keep; echo $UDTEST_VAR"])
    assert p.returncode == 0, describe(p)
    assert p.stdout == "keep\nhello\n"


def test_containerd_image_store(images, fake_daemon):
    """--layers direct refuses storage without layer directories, naming it (the default, auto,
    falls back to exporting the image instead: see test_export.py)."""
    sock, log = fake_daemon("containerd", images.info[images.busybox])
    line = error_line(run(["-H", sock, "--layers", "direct", images.busybox, "--", "/bin/true"]), 67)
    assert "overlayfs" in line or "containerd" in line, line


@pytest.mark.parametrize("mode", [["--layers", "direct"], []])
def test_layers_outside_docker_root_dir(images, fake_daemon, mode):
    """Every start checks the layer directories against /info's DockerRootDir (the answer is
    kept per daemon socket, asked again before refusing)."""
    sock, log = fake_daemon("otherroot", images.info[images.busybox])
    line = error_line(run(["-H", sock, *mode, images.busybox, "--", "/bin/true"]), 67)
    assert "/srv/elsewhere/docker" in line, line
    reqs = open(log).read()
    assert "/info" in reqs, reqs


def test_podman_style_404(images, fake_daemon):
    """Not found is the status, whatever the body looks like."""
    sock, log = fake_daemon("podman404", images.info[images.busybox])
    line = error_line(run(["-H", sock, "udtest-nope", "--", "/bin/true"]), 65)
    assert "udtest-nope" in line and sock in line, line


# ------------------------------------------------------------------------------ COMMAND

def test_command_not_found(images):
    error_line(run([images.layers, "--", "/no/such/command"]), 127)


def test_command_not_executable(images):
    error_line(run([images.layers, "--", "/data/keep"]), 126)


# ------------------------------------------------------------------------------ mounts

def test_bind_source_missing(images, session_dir):
    src = os.path.join(session_dir, "no-such-bind-source")
    p = run(["--bind", f"{src}:/mnt/x", images.layers, "--", "/bin/true"])
    assert p.returncode in (64, 68), describe(p)
    line = error_line(p, p.returncode)
    assert src in line, line


# ------------------------------------------------------------------------------ --print

def test_print_does_not_need_root(images, fake_daemon):
    """--print is the one mode that runs without root (man page, MODES): as nobody, with a
    daemon socket nobody may use, it resolves and prints."""
    info = images.info[images.layers]
    sock, log = fake_daemon("version:1.41", info)
    os.chmod(sock, 0o666)
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        HELPER, "-H", sock, "--print", images.layers], capture_output=True,
                       text=True, timeout=60, env=helper_env(), stdin=subprocess.DEVNULL)
    assert p.returncode == 0, describe(p)
    assert json.loads(p.stdout)["layers"] == kept_dirs(info)


# ---------------------------------------------------------------- a daemon newer than the helper

def test_daemon_newer_than_the_helper(images, fake_daemon):
    """A daemon that dropped our API version (Docker 29 rejects anything below 1.44): HTTP 400
    "client version 1.47 is too old" on the inspect, then the helper asks /version once and
    speaks its MinAPIVersion from then on; the run works."""
    sock, log = fake_daemon("newer:1.50", images.info[images.layers])
    p = run(["-H", sock, images.layers, "--", "/bin/sh", "-c", "cat /data/keep"])
    assert p.returncode == 0 and p.stdout == "keep\n", describe(p)
    paths = [r[1] for r in _requests(log)]
    inspects = [x for x in paths if "/images/" in x]
    assert [x.split("/images/")[0] for x in inspects] == ["/v1.47", "/v1.50"], paths
    first, second = paths.index(inspects[0]), paths.index(inspects[1])
    assert paths[first + 1:second] == ["/version"], paths
    later = [x for x in paths[second:] if re.match(r"^/v[0-9]", x)]
    assert all(x.startswith("/v1.50/") for x in later), paths


def test_daemon_newer_than_the_helper_print(images, fake_daemon):
    """The same through --print (no root needed, no mount): the plan names the image's layers."""
    info = images.info[images.layers]
    sock, log = fake_daemon("newer:1.49", info)
    p = run(["-H", sock, "--print", images.layers])
    assert p.returncode == 0, describe(p)
    assert json.loads(p.stdout)["layers"] == kept_dirs(info)
    assert [r[1].split("/images/")[0] for r in _requests(log) if "/images/" in r[1]] == \
        ["/v1.47", "/v1.49"]


# ---------------------------------------------------------------- the DockerRootDir memory

ROOTS = "/run/uwsgi-docker/docker-roots"
ROOTS_MAX = 16


@pytest.fixture
def roots_file():
    """The helper's memory of each daemon's DockerRootDir is machine-wide: saved and put back.
    (Other sessions may add lines meanwhile; it is a cache, a lost line costs one /info.)"""
    try:
        with open(ROOTS, "rb") as f:
            saved = f.read()
    except FileNotFoundError:
        saved = None
    yield ROOTS
    if saved is None:
        try:
            os.unlink(ROOTS)
        except FileNotFoundError:
            pass
    else:
        with open(ROOTS + ".udtest", "wb") as f:
            f.write(saved)
        os.rename(ROOTS + ".udtest", ROOTS)


def _key(sock):
    st = os.stat(sock)
    return f"{sock} {st.st_ino} {st.st_ctime_ns // 10**9}.{st.st_ctime_ns % 10**9:09d}"


def _roots_lines():
    with open(ROOTS, "rb") as f:
        return f.read().decode(errors="replace").splitlines()


def _print_via(sock, images):
    p = run(["-H", sock, "--print", images.layers])
    assert p.returncode == 0, describe(p)


def _asked_info(log):
    return any(r[1].endswith("/info") for r in _requests(log))


def test_docker_root_is_remembered_per_socket(images, fake_daemon, roots_file):
    """/info is asked once per daemon socket: the answer is remembered (newest first)."""
    sock, log = fake_daemon("version:1.41", images.info[images.layers])
    _print_via(sock, images)
    assert _asked_info(log)
    assert _roots_lines()[0] == f"{_key(sock)} /var/lib/docker"
    open(log, "w").close()
    _print_via(sock, images)
    assert not _asked_info(log), _requests(log)


def test_docker_root_memory_is_capped(images, fake_daemon, roots_file):
    """Never more than 16 lines, one per key, the newest first."""
    socks = []
    for _ in range(ROOTS_MAX + 3):
        sock, _log = fake_daemon("version:1.41", images.info[images.layers])
        _print_via(sock, images)
        socks.append(sock)
        lines = _roots_lines()
        assert lines[0] == f"{_key(sock)} /var/lib/docker", lines[:3]
        assert len(lines) <= ROOTS_MAX, lines
    keys = [" ".join(line.split(" ")[:3]) for line in _roots_lines()]
    assert len(keys) == len(set(keys)), keys
    assert _key(socks[0]) not in keys, "the oldest of 19 keys should have been dropped"


def test_docker_root_stale_line_costs_one_info(images, fake_daemon, roots_file):
    """A remembered root that does not hold the layers (a stale or planted line) is not
    trusted: /info is asked again, the run works, and the line is replaced."""
    sock, log = fake_daemon("version:1.41", images.info[images.layers])
    key = _key(sock)
    others = [l for l in _roots_lines() if not l.startswith(key + " ")] \
        if os.path.exists(ROOTS) else []
    with open(ROOTS, "w") as f:
        f.write("\n".join([f"{key} /srv/elsewhere/docker"] + others[:ROOTS_MAX - 1]) + "\n")
    _print_via(sock, images)
    assert _asked_info(log)
    lines = _roots_lines()
    assert lines[0] == f"{key} /var/lib/docker", lines[:3]
    assert [l for l in lines if l.startswith(key + " ")] == [lines[0]], lines


def test_docker_root_memory_corrupt_file(images, fake_daemon, roots_file):
    """A corrupt file (binary junk, a line longer than the reader's buffer, lines without a
    root, a line naming a root that is a prefix but not a parent) is not believed: /info
    is asked, the run works, and the file stays within its cap with the answer first."""
    sock, log = fake_daemon("version:1.41", images.info[images.layers])
    key = _key(sock)
    junk = (b"\x00\xff\xfe binary\n" + b"x" * 5000 + b"\n" + key.encode() + b"\n" +
            key.encode() + b" \n" + key.encode() + b" /var/lib/dock\n" + b"\n" * 30)
    with open(ROOTS, "wb") as f:
        f.write(junk)
    _print_via(sock, images)
    assert _asked_info(log)
    lines = _roots_lines()
    assert lines[0] == f"{key} /var/lib/docker", lines[:3]
    assert len(lines) <= ROOTS_MAX, len(lines)
    open(log, "w").close()
    _print_via(sock, images)
    assert not _asked_info(log), "the rewritten file was not used"


# ---------------------------------------------------------------- overlay options past one page

def _fake_storage(root, n_layers):
    """A Docker-like overlay2 store with n_layers layers under root/overlay2 (ids, diff/, link,
    l/<short name> -> ../<id>/diff); the top layer holds busybox. Returns the layer dirs, top
    first."""
    import hashlib
    import shutil
    storage = os.path.join(root, "overlay2")
    os.makedirs(os.path.join(storage, "l"))
    layers = []
    for i in range(n_layers):
        lid = hashlib.sha256(f"{root} {i}".encode()).hexdigest()
        short = hashlib.sha256(f"short {root} {i}".encode()).hexdigest()[:26].upper()
        diff = os.path.join(storage, lid, "diff")
        os.makedirs(diff)
        with open(os.path.join(storage, lid, "link"), "w") as f:
            f.write(short)
        os.symlink(f"../{lid}/diff", os.path.join(storage, "l", short))
        with open(os.path.join(diff, f"layer-{i}"), "w") as f:
            f.write(f"{i}\n")
        layers.append(diff)
    top = layers[-1]
    os.makedirs(os.path.join(top, "bin"))
    shutil.copy("/bin/busybox", os.path.join(top, "bin", "busybox"))
    os.symlink("busybox", os.path.join(top, "bin", "sh"))
    return list(reversed(layers))


@pytest.mark.parametrize("api", ["legacy", "fd", "string", "auto"])
def test_legacy_overlay_options_past_one_page(images, fake_daemon, scratch, api):
    """150 layers: the legacy mount(2) option string (lowerdir=...:l/<26 chars>...) is more than
    a page. --mount-api legacy refuses it plainly (E2BIG, exit 68, one line naming the limit)
    instead of letting the kernel cut it; the other APIs add one layer per call and work."""
    n = 150
    root = os.path.join(scratch, "docker")
    layers = _fake_storage(root, n)
    doc = json.loads(json.dumps(images.info[images.single]))
    doc["GraphDriver"] = {"Name": "overlay2",
                          "Data": {"UpperDir": layers[0], "LowerDir": ":".join(layers[1:])}}
    sock, log = fake_daemon("root=" + root, doc)
    p = run(["-H", sock, "--layers", "direct", "--mount-api", api, images.single, "--",
             "/bin/sh", "-c",
             "ls / | grep -c '^layer-'"])
    if api == "legacy":
        line = error_line(p, 68)
        assert f"overlay options for {n} layers are" in line and "(4095)" in line, line
        assert "Argument list too long" in line, line
    else:
        assert p.returncode == 0, describe(p)
        assert p.stdout == f"{n}\n", describe(p)
