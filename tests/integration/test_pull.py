"""--pull against a real registry: Debian's docker-registry (2.8) on 127.0.0.1 with htpasswd auth
over plain HTTP (dockerd treats 127.0.0.0/8 registries as insecure). A session fixture starts it
and stops it by pid; test images (busybox-static and a marker file) are pushed there with the
docker CLI under a throwaway DOCKER_CONFIG, then removed locally, so that only a pull brings them
back. Each test checks what a process inside sees, and removes every image it pulled."""
import base64
import io
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import tarfile
import time
import types

import pytest

import udlib
from udlib import DOCKER, describe, docker, error_line, helper_env, run

REGISTRY = "/usr/bin/docker-registry"
USER, PASSWORD = "regtester", "s3cret-pw-9f2"


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def _wait_answering(addr, proc, log):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"docker-registry exited {proc.returncode}:\n{open(log).read()}")
        try:
            with socket.create_connection(addr.split(":"), timeout=1) as s:
                s.sendall(b"GET /v2/ HTTP/1.0\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.0 401"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail(f"docker-registry does not answer at {addr}:\n{open(log).read()}")


def _image_tar(path, marker):
    """busybox-static at /bin/busybox (and /bin/cat, /bin/sh) plus /marker."""
    with tarfile.open(path, "w") as t:
        for d in ("bin", "tmp"):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            t.addfile(ti)
        t.add("/bin/busybox", "bin/busybox")
        for a in ("cat", "sh"):
            ti = tarfile.TarInfo("bin/" + a)
            ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, "busybox", 0o777
            t.addfile(ti)
        data = marker.encode()
        ti = tarfile.TarInfo("marker")
        ti.size, ti.mode = len(data), 0o644
        t.addfile(ti, io.BytesIO(data))


@pytest.fixture(scope="session")
def registry(docker_ready, session_dir):
    """The registry, and reg.push(repo_tag, marker) -> the pushed manifest's digest."""
    for tool in (REGISTRY, "/usr/bin/htpasswd"):
        if not os.access(tool, os.X_OK):
            pytest.fail(f"{tool} is missing (scripts/deps.sh installs docker-registry and "
                        "apache2-utils)")
    d = os.path.join(session_dir, "registry")
    os.makedirs(os.path.join(d, "data"))
    htpasswd = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], capture_output=True,
                              text=True, check=True).stdout
    _write(os.path.join(d, "htpasswd"), htpasswd)
    addr = f"127.0.0.1:{_free_port()}"
    _write(os.path.join(d, "config.yml"), "\n".join([
        "version: 0.1", "log:", "  level: warn", "storage:", "  filesystem:",
        f"    rootdirectory: {d}/data", "http:", f"  addr: {addr}", f"  secret: {os.urandom(8).hex()}",
        "auth:", "  htpasswd:", "    realm: udtest", f"    path: {d}/htpasswd", ""]))
    log = os.path.join(d, "registry.log")
    with open(log, "w") as logf:
        proc = subprocess.Popen([REGISTRY, "serve", os.path.join(d, "config.yml")],
                                stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    push_cfg = os.path.join(d, "push-config")
    os.mkdir(push_cfg, 0o700)
    try:
        _wait_answering(addr, proc, log)
        p = subprocess.run([DOCKER, "--config", push_cfg, "login", "-u", USER, "--password-stdin",
                            addr], input=PASSWORD, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        counter = [0]

        def push(repo_tag, marker):
            counter[0] += 1
            tar = os.path.join(d, f"img{counter[0]}.tar")
            _image_tar(tar, marker)
            ref = f"{addr}/{repo_tag}"
            docker("import", tar, ref)
            try:
                out = docker("--config", push_cfg, "push", ref).stdout
            finally:
                docker("rmi", "-f", ref, check=False)
            m = re.search(r"digest: (sha256:[0-9a-f]{64})", out)
            assert m, out
            return m.group(1)

        def push_tag(local, repo_tag):
            """Pushes an image the daemon has under another name; only the tag goes away."""
            ref = f"{addr}/{repo_tag}"
            docker("tag", local, ref)
            try:
                docker("--config", push_cfg, "push", ref)
            finally:
                docker("rmi", ref, check=False)

        yield types.SimpleNamespace(addr=addr, push=push, push_tag=push_tag, dir=d)
    finally:
        docker("--config", push_cfg, "logout", addr, check=False)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def pulled():
    """Records refs a test may pull; removes their images afterwards and checks they are gone."""
    refs = []
    yield refs
    for ref in refs:
        p = docker("image", "inspect", "-f", "{{.Id}}", ref, check=False)
        if p.returncode == 0:
            docker("rmi", "-f", p.stdout.strip(), check=False)
    for ref in refs:
        assert docker("image", "inspect", ref, check=False).returncode != 0, f"{ref} left behind"


def _auths_config(scratch, addr, user=USER, password=PASSWORD):
    cfg = os.path.join(scratch, "docker-config")
    os.mkdir(cfg, 0o700)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    _write(os.path.join(cfg, "config.json"), json.dumps({"auths": {addr: {"auth": auth}}}), 0o600)
    return cfg


def _cat_marker(ref, *opts, env=None):
    p = run([*opts, ref, "--", "/bin/cat", "/marker"], env=env, timeout=120)
    assert p.returncode == 0, describe(p)
    return p


def test_pull_missing_with_auths(registry, scratch, pulled):
    ref = f"{registry.addr}/udpull/auths:v1"
    registry.push("udpull/auths:v1", "auths-v1\n")
    pulled.append(ref)
    cfg = _auths_config(scratch, registry.addr)
    p = _cat_marker(ref, "--docker-config", cfg)
    assert p.stdout == "auths-v1\n", describe(p)
    # Not a terminal: one line per completed layer, then the summary, never the secret.
    assert re.search(r"layer [0-9a-f]+ complete", p.stderr), describe(p)
    assert f"pulled {ref} from {registry.addr}" in p.stderr, describe(p)
    assert PASSWORD not in p.stderr and USER not in p.stderr, describe(p)
    # Present now: the default policy (missing) does not pull again.
    p = _cat_marker(ref, "--docker-config", cfg)
    assert p.stdout == "auths-v1\n" and p.stderr == "", describe(p)


def test_pull_docker_config_env(registry, scratch, pulled):
    """$DOCKER_CONFIG, as the CLI reads it, when --docker-config is not given."""
    ref = f"{registry.addr}/udpull/env:v1"
    registry.push("udpull/env:v1", "env-v1\n")
    pulled.append(ref)
    cfg = _auths_config(scratch, registry.addr)
    p = _cat_marker(ref, env=helper_env(DOCKER_CONFIG=cfg))
    assert p.stdout == "env-v1\n", describe(p)


@pytest.mark.parametrize("kind", ["credsStore", "credHelpers"])
def test_pull_with_credential_helper(registry, scratch, pulled, kind):
    """credsStore (every registry) or credHelpers (this one): docker-credential-NAME get, the
    server address on stdin, JSON on stdout."""
    ref = f"{registry.addr}/udpull/helper-{kind.lower()}:v1"
    registry.push(f"udpull/helper-{kind.lower()}:v1", "helper-v1\n")
    pulled.append(ref)
    bindir = os.path.join(scratch, "bin")
    os.mkdir(bindir)
    asked = os.path.join(scratch, "asked")
    _write(os.path.join(bindir, "docker-credential-udtest"), "\n".join([
        "#!/bin/sh",
        f'[ "$1" = get ] || exit 3',
        f"cat > {asked}",
        f"""printf '{{"ServerURL":"%s","Username":"{USER}","Secret":"{PASSWORD}"}}' "$(cat {asked})" """,
        ""]), 0o755)
    cfg = os.path.join(scratch, "docker-config")
    os.mkdir(cfg, 0o700)
    conf = {"credsStore": "udtest"} if kind == "credsStore" else \
        {"credHelpers": {registry.addr: "udtest"}, "auths": {registry.addr: {}}}
    _write(os.path.join(cfg, "config.json"), json.dumps(conf))
    env = helper_env(PATH=bindir + ":" + udlib.BASE_ENV["PATH"])
    p = _cat_marker(ref, "--docker-config", cfg, env=env)
    assert p.stdout == "helper-v1\n", describe(p)
    assert open(asked).read() == registry.addr
    assert PASSWORD not in p.stderr, describe(p)


def test_pull_never_refuses(registry, scratch, pulled):
    ref = f"{registry.addr}/udpull/never:v1"
    registry.push("udpull/never:v1", "never-v1\n")
    pulled.append(ref)
    cfg = _auths_config(scratch, registry.addr)
    line = error_line(run(["--pull", "never", "--docker-config", cfg, ref, "--", "/bin/true"]), 65)
    assert ref in line and "not found" in line, line
    assert docker("image", "inspect", ref, check=False).returncode != 0


def test_bad_credentials(registry, scratch, pulled):
    ref = f"{registry.addr}/udpull/badcreds:v1"
    registry.push("udpull/badcreds:v1", "bad\n")
    pulled.append(ref)
    cfg = _auths_config(scratch, registry.addr, password="wrong-password")
    line = error_line(run(["--docker-config", cfg, ref, "--", "/bin/true"]), 65)
    assert ref in line and registry.addr in line, line
    assert re.search(r"unauthorized|authentication required", line), line
    assert "wrong-password" not in line, line


def test_no_credentials(registry, scratch, pulled):
    ref = f"{registry.addr}/udpull/nocreds:v1"
    pulled.append(ref)
    empty = os.path.join(scratch, "empty-config")
    os.mkdir(empty)
    line = error_line(run(["--docker-config", empty, ref, "--", "/bin/true"]), 65)
    assert ref in line and "no basic auth credentials" in line, line


def test_unknown_tag(registry, scratch, pulled):
    registry.push("udpull/tags:v1", "tags-v1\n")
    ref = f"{registry.addr}/udpull/tags:no-such-tag"
    pulled.append(ref)
    cfg = _auths_config(scratch, registry.addr)
    line = error_line(run(["--docker-config", cfg, ref, "--", "/bin/true"]), 65)
    assert ref in line and "manifest unknown" in line, line


def test_unreachable_registry(scratch, pulled):
    ref = f"127.0.0.1:{_free_port()}/udpull/nowhere:v1"
    pulled.append(ref)
    line = error_line(run(["--docker-config", scratch, ref, "--", "/bin/true"]), 66)
    assert ref in line and "connection refused" in line, line


def test_pull_always_takes_new_content(registry, scratch, pulled):
    ref = f"{registry.addr}/udpull/always:latest"
    pulled.append(ref)
    cfg = _auths_config(scratch, registry.addr)
    registry.push("udpull/always:latest", "always-1\n")
    assert _cat_marker(ref, "--docker-config", cfg).stdout == "always-1\n"
    old_id = udlib.inspect(ref)["Id"]
    # Pushing needs the tag locally: keep the pulled image's under another name meanwhile.
    keep = f"{registry.addr}/udpull/always:keep"
    docker("tag", ref, keep)
    try:
        registry.push("udpull/always:latest", "always-2\n")
        docker("tag", keep, ref)
    finally:
        docker("rmi", keep, check=False)
    # missing: the daemon has the tag, nothing is pulled.
    assert _cat_marker(ref, "--docker-config", cfg).stdout == "always-1\n"
    p = _cat_marker(ref, "--pull", "always", "--docker-config", cfg)
    assert p.stdout == "always-2\n", describe(p)
    docker("rmi", "-f", old_id, check=False)


def test_pull_by_digest(registry, scratch, pulled):
    """NAME@sha256:... pulls exactly that manifest, even after the tag moved on."""
    cfg = _auths_config(scratch, registry.addr)
    first = registry.push("udpull/digest:v1", "digest-first\n")
    registry.push("udpull/digest:v1", "digest-second\n")
    ref = f"{registry.addr}/udpull/digest@{first}"
    pulled.append(ref)
    p = _cat_marker(ref, "--docker-config", cfg)
    assert p.stdout == "digest-first\n", describe(p)
    assert first in p.stderr, describe(p)


# ---------------------------------------------------------------- a daemon that misbehaves

from test_errors import fake_daemon  # noqa: E402,F401  (the fixture)


def test_pull_stall_ends_at_timeout(fake_daemon, scratch):
    """No progress for --timeout seconds ends the pull (status 66), whatever came before."""
    sock, log = fake_daemon("pullstall")
    t0 = time.monotonic()
    line = error_line(run(["-H", sock, "--timeout", "1.5", "--docker-config", scratch,
                           "udtest-stalls:v1", "--", "/bin/true"]), 66)
    took = time.monotonic() - t0
    assert "stalled" in line and "udtest-stalls" in line, line
    assert 1.4 < took < 10, took
    assert "POST /v1.41/images/create?fromImage=udtest-stalls&tag=v1" in open(log).read()


def test_pull_error_object_in_stream(fake_daemon, scratch):
    sock, _ = fake_daemon("pullerror")
    line = error_line(run(["-H", sock, "--docker-config", scratch, "udtest-brokenblob:v1", "--",
                           "/bin/true"]), 66)
    assert "udtest-brokenblob" in line and line.endswith("failed: unknown blob"), line


def test_credential_helper_timeout(registry, scratch, pulled):
    ref = f"{registry.addr}/udpull/slowhelper:v1"
    pulled.append(ref)
    bindir = os.path.join(scratch, "bin")
    os.mkdir(bindir)
    _write(os.path.join(bindir, "docker-credential-slow"), "#!/bin/sh\nexec sleep 60\n", 0o755)
    _write(os.path.join(scratch, "config.json"),
           json.dumps({"credHelpers": {registry.addr: "slow"}}))
    env = helper_env(PATH=bindir + ":" + udlib.BASE_ENV["PATH"])
    t0 = time.monotonic()
    line = error_line(run(["--timeout", "1", "--docker-config", scratch, ref, "--", "/bin/true"],
                          env=env), 66)
    assert time.monotonic() - t0 < 10
    assert "docker-credential-slow" in line and "in time" in line, line


# ---------------------------------------------------------------- the plugin

from plugin_support import Harness, form1_options, get_json, plug_images  # noqa: E402,F401


def test_plugin_docker_pull(registry, scratch, plug_images):
    """docker-pull reaches the helper: form 1 serves an image that only the registry has, with
    credentials from the master's DOCKER_CONFIG (uWSGI's env option)."""
    ref = f"{registry.addr}/udpull/app:v1"
    registry.push_tag(plug_images.v1, "udpull/app:v1")
    assert docker("image", "inspect", ref, check=False).returncode != 0
    cfg = _auths_config(scratch, registry.addr)
    h = Harness(scratch, plug_images)
    try:
        port = _free_port()
        never = form1_options(scratch, port, ref) + [("docker-pull", "never"),
                                                     ("env", f"DOCKER_CONFIG={cfg}")]
        u = h.start(never, name="never")
        rc = u.wait_exit(30)
        log = u.log()
        assert rc not in (None, 0), log[-3000:]
        assert re.search(r"\[docker\] .*not found", log), log[-3000:]
        opts = form1_options(scratch, port, ref) + [("docker-pull", "always"),
                                                    ("env", f"DOCKER_CONFIG={cfg}")]
        u = h.start(opts, name="form1")
        u.wait_ready(port)
        assert get_json(port, "/")["version"] == "v1"
        assert docker("image", "inspect", ref, check=False).returncode == 0
        h.stop_and_check(u)
        # A failure after a pull: the plugin reports the helper's error line, not its progress.
        bad = opts + [("docker-bind", "/nonexistent-udpull:/mnt")]
        u = h.start(bad, name="badbind")
        rc = u.wait_exit(30)
        log = u.log()
        assert rc not in (None, 0), log[-3000:]
        lines = [ln for ln in log.splitlines() if "[docker]" in ln]
        assert any("nonexistent-udpull" in ln for ln in lines), log[-3000:]
        assert not any("pulled" in ln for ln in lines), log[-3000:]
    finally:
        h.cleanup()
        # The image is plug_images' own (same id): only the pulled tag goes.
        docker("rmi", ref, check=False)
    assert docker("image", "inspect", ref, check=False).returncode != 0


def test_progress_on_a_terminal(registry, scratch, pulled):
    """stderr a terminal: one line redrawn in place (\\r, erase), then the summary."""
    import pty
    ref = f"{registry.addr}/udpull/tty:v1"
    registry.push("udpull/tty:v1", "tty-v1\n")
    pulled.append(ref)
    cfg = _auths_config(scratch, registry.addr)
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen([udlib.HELPER, "--docker-config", cfg, ref, "--", "/bin/cat",
                              "/marker"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=slave, env=helper_env())
        os.close(slave)
        slave = -1
        out, _ = p.communicate(timeout=120)
        err = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            err += chunk
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    text = err.decode(errors="replace")
    assert p.returncode == 0 and out == b"tty-v1\n", text
    assert f"\r\x1b[Kpulling {ref}: 1/1 layers" in text, repr(text)
    assert f"\r\x1b[Kuwsgi-docker-rootfs: pulled {ref}" in text, repr(text)
    assert "complete (" not in text, repr(text)  # no per-layer lines on a terminal
