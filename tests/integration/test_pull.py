"""--pull against a real registry: Debian's docker-registry (2.8) on 127.0.0.1 with htpasswd auth
over plain HTTP (dockerd treats 127.0.0.0/8 registries as insecure). A session fixture starts it
and stops it by pid; test images (busybox-static and a marker file) are pushed there with the
docker CLI under a throwaway DOCKER_CONFIG, then removed locally, so that only a pull brings them
back. Each test checks what a process inside sees, and removes every image it pulled."""
import json
import os
import re
import subprocess
import time

import pytest

import udlib
from udlib import describe, docker, error_line, helper_env, run

from registry_support import PASSWORD, USER, _auths_config, _free_port, _write  # noqa: F401


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
