"""The daemon is down: a start, or a full reload, uses the reference's last good resolution when
all its layers are still there, and says so in one line; without one, it fails as before.

"Down" is a socket nobody listens on (connect() is refused, as after dockerd stopped), reached
through a per-test path: the real dockerd keeps serving the other tests. The record is keyed by
the daemon's socket path and the reference, so each test has its own and removes it.
"""
import os
import socket
import subprocess
import time

import pytest

import udlib
from plugin_support import (HELPER, PREFIX, Harness, RequestLoop, form1_options, free_port,
                            get_json, plug_images, wait_for)

assert plug_images  # a fixture, used by name

LASTGOOD = udlib.LASTGOOD
_record_name = udlib.lastgood_record


class Daemon:
    """A socket path that reaches dockerd (a symlink) until down() leaves a dead socket there."""

    def __init__(self, d):
        self.path = os.path.join(d, "docker.sock")
        os.symlink("/var/run/docker.sock", self.path)
        self.records = []

    def host(self):
        return "unix://" + self.path

    def down(self):
        os.unlink(self.path)
        s = socket.socket(socket.AF_UNIX)
        s.bind(self.path)
        s.close()

    def up(self):
        os.unlink(self.path)
        os.symlink("/var/run/docker.sock", self.path)

    def record(self, ref):
        r = _record_name(self.path, ref)
        self.records.append(r)
        return r

    def cleanup(self):
        for r in self.records:
            if os.path.exists(r):
                os.unlink(r)


@pytest.fixture
def daemon(scratch):
    d = Daemon(scratch)
    yield d
    d.cleanup()


@pytest.fixture
def plug(scratch, plug_images):
    h = Harness(scratch, plug_images)
    yield h
    h.cleanup()


def _run(daemon, ref, *cmd):
    return subprocess.run([HELPER, "--docker-host", daemon.host(), ref, "--", *cmd],
                          capture_output=True, text=True, timeout=60)


def test_helper_uses_the_last_good_resolution_while_the_daemon_is_down(daemon, plug_images):
    ref = plug_images.v1
    record = daemon.record(ref)
    p = _run(daemon, ref, "/bin/cat", "/srv/version")
    assert p.returncode == 0 and p.stdout == "v1\n", p.stderr
    st = os.stat(record)
    assert st.st_uid == 0 and st.st_mode & 0o077 == 0, oct(st.st_mode)
    assert os.stat(LASTGOOD).st_mode & 0o077 == 0
    daemon.down()
    p = _run(daemon, ref, "/bin/cat", "/srv/version")
    assert p.returncode == 0 and p.stdout == "v1\n", p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and "unreachable" in lines[0] and \
        "using the last good resolution of" in lines[0] and \
        plug_images.info[ref]["Id"] in lines[0], p.stderr
    # a reference never resolved: the daemon's own failure, as before
    p = _run(daemon, plug_images.v2, "/bin/true")
    assert p.returncode == 66 and "unreachable" in p.stderr and "last good" not in p.stderr


def test_a_kept_record_is_checked_like_a_daemon_answer(daemon, plug_images):
    ref = plug_images.v1
    record = daemon.record(ref)
    assert _run(daemon, ref, "/bin/true").returncode == 0
    daemon.down()
    with open(record) as f:
        key, body = f.read().split("\n", 1)
    for bad in ("{not json", body.replace("/diff", "/../../../../etc")):
        with open(record, "w") as f:
            f.write(key + "\n" + bad)
        p = _run(daemon, ref, "/bin/true")
        assert p.returncode == 66 and "unreachable" in p.stderr, p.stderr
        assert len(p.stderr.splitlines()) == 1, p.stderr


def test_form1_full_reload_and_fresh_start_while_the_daemon_is_down(plug, daemon, plug_images):
    tag = PREFIX + "down:live"
    plug_images.extra_tags.append(tag)
    udlib.docker("tag", plug_images.v1, tag)
    daemon.record(tag)
    port = free_port()
    opts = form1_options(plug.workdir, port, tag) + [("docker-host", daemon.host())]
    reload_file = plug.path("reload")
    with open(reload_file, "w"):
        pass
    os.utime(reload_file, (time.time() - 100,) * 2)
    u = plug.start(opts, name="down")
    assert u.wait_ready(port)["version"] == "v1"
    loop = RequestLoop(port, max_seconds=60)
    loop.start()
    try:
        daemon.down()
        os.utime(reload_file, (time.time() + 10,) * 2)
        assert wait_for(lambda: get_json(port)["environ"].get("UWSGI_RELOADS") == "1",
                        timeout=60), u.tail()
        n = len(loop.versions())
        assert wait_for(lambda: len(loop.versions()) >= n + 20, timeout=20)
    finally:
        loop.finish()
    assert loop.failures == [], loop.failures[:5]
    assert set(loop.versions()) == {"v1"}
    lines = [l for l in u.log().splitlines() if "using the last good resolution" in l]
    assert len(lines) == 1 and lines[0].startswith("[docker] "), u.tail()
    plug.stop_and_check(u)
    # a fresh start, the daemon still down
    u = plug.start(opts, name="down-fresh")
    assert u.wait_ready(port)["version"] == "v1"
    plug.stop_and_check(u)
    # the daemon is back, re-tagged: the next start sees the new image
    daemon.up()
    udlib.docker("tag", plug_images.v2, tag)
    u = plug.start(opts, name="up-again")
    assert u.wait_ready(port)["version"] == "v2"
    plug.stop_and_check(u)
