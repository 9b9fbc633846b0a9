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

from udlib import DOCKER_SOCK, HELPER, describe, error_line, helper_env, layer_dirs, run

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
    ref = "udtest-no-such-image:latest"
    args = ["--print", ref] if mode == "print" else [ref, "--", "/bin/true"]
    line = error_line(run(args), 65)
    assert "udtest-no-such-image" in line, line
    assert DOCKER_SOCK in line, line


@pytest.mark.parametrize("ref", ["UPPER::bad", "a b", "../x", "x@sha256:zz"])
def test_bad_reference(images, ref):
    line = error_line(run([ref, "--", "/bin/true"]), 65)
    assert ref in line, line


@pytest.mark.parametrize("ref", ["UPPER::bad", "a b", "../x"])
def test_bad_reference_print(ref):
    error_line(run(["--print", ref]), 65)


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
    assert json.loads(p.stdout)["layers"] == layer_dirs(info)
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
    assert json.loads(p.stdout)["layers"] == layer_dirs(info)
