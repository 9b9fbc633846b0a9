"""A start the daemon already answered asks it nothing (answers.h): the inspect answer of an
earlier start is reused while the daemon's reference store (repositories.json) is byte for byte
what it was, under the same daemon, with every layer directory still there.

Each test goes through a recording proxy of its own in front of the real dockerd, so that what
the helper asks is seen, and the records (keyed by the proxy's socket path) are the test's own
and removed. What must never happen: a start that serves an image the reference no longer names
(re-tagged, untagged), or a start that hides that the daemon is down.
"""
import os
import socket

import pytest

import udlib
from export_support import RecordingProxy
from udlib import describe, docker, run

ANSWERS = "/run/uwsgi-docker/answers"
WHICH = "if [ -e /srv/work/top ]; then echo layers; else echo busybox; fi"


def _record(socket_path, ref):
    return os.path.join(ANSWERS, os.path.basename(udlib.lastgood_record(socket_path, ref)))


@pytest.fixture
def proxy(scratch):
    p = RecordingProxy(os.path.join(scratch, "proxy.sock"))
    yield p
    p.close()


@pytest.fixture
def ref(images, proxy):
    r = f"udtest-answers-{os.getpid()}-{os.urandom(3).hex()}:1"
    docker("tag", images.busybox, r)
    yield r
    docker("rmi", r, check=False)
    for path in (_record(proxy.path, r), udlib.lastgood_record(proxy.path, r)):
        if os.path.exists(path):
            os.unlink(path)


def _which(proxy, ref, expect=0):
    """Which test image the reference names inside, and the requests that start made."""
    before = len(proxy.requests())
    p = run(["-H", proxy.address, "--pull", "never", ref, "--", "/bin/sh", "-c", WHICH])
    assert p.returncode == expect, describe(p)
    return p, proxy.requests()[before:]


def _warm(proxy, ref):
    """Until a start asks nothing: the first may ask /info (DockerRootDir), the next keeps the
    answer; the third must reuse it."""
    for _ in range(2):
        p, asked = _which(proxy, ref)
        assert p.stdout.strip() == "busybox"
        assert asked, "a start with no kept answer asked the daemon nothing?!"
    assert os.path.exists(_record(proxy.path, ref)), os.listdir(ANSWERS)
    p, asked = _which(proxy, ref)
    assert p.stdout.strip() == "busybox"
    assert asked == [], f"a kept answer that holds, yet the start asked: {asked}"


def test_a_kept_answer_is_reused_until_the_reference_moves(proxy, ref, images):
    _warm(proxy, ref)
    st = os.stat(_record(proxy.path, ref))
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600)
    assert os.stat(ANSWERS).st_mode & 0o777 == 0o700

    docker("tag", images.layers, ref)
    p, asked = _which(proxy, ref)
    assert p.stdout.strip() == "layers", "a re-tagged reference served its old image"
    assert any("/images/" in a for a in asked), asked
    p, asked = _which(proxy, ref)
    assert (p.stdout.strip(), asked) == ("layers", [])


def test_an_untagged_reference_is_not_found_even_with_a_kept_answer(proxy, ref):
    _warm(proxy, ref)
    docker("rmi", ref)
    p, asked = _which(proxy, ref, expect=65)
    assert "not found" in p.stderr, describe(p)
    assert asked, "an untagged reference was served from a kept answer"


def test_a_kept_answer_does_not_hide_a_daemon_that_is_down(proxy, ref):
    """The socket stays (same inode: dockerd killed -9 leaves it), nobody listens: the start
    says the daemon is down and uses the last good resolution, as without kept answers."""
    _warm(proxy, ref)
    proxy.srv.shutdown(socket.SHUT_RDWR)  # ends the accept() in progress; the file stays
    proxy.srv.close()
    proxy.thread.join(5)
    with pytest.raises(OSError):
        socket.socket(socket.AF_UNIX).connect(proxy.path)
    p, _ = _which(proxy, ref)
    assert p.stdout.strip() == "busybox"
    assert "using the last good resolution" in p.stderr, describe(p)
    assert "unreachable" in p.stderr, describe(p)


def test_a_record_others_could_have_written_is_not_used(proxy, ref):
    _warm(proxy, ref)
    os.chmod(ANSWERS, 0o755)
    try:
        p, asked = _which(proxy, ref)
    finally:
        os.chmod(ANSWERS, 0o700)
    assert p.stdout.strip() == "busybox"
    assert any("/images/" in a for a in asked), f"a record in a directory not root's own: {asked}"


def test_an_export_start_reuses_an_answer_and_exports_only_what_its_cache_lacks(proxy, ref,
                                                                               scratch):
    def export_run(cache):
        before = len(proxy.requests())
        p = run(["-H", proxy.address, "--pull", "never", "--layers", "export", "--cache-dir",
                 os.path.join(scratch, cache), ref, "--", "/bin/sh", "-c", WHICH])
        assert p.returncode == 0, describe(p)
        assert p.stdout.strip() == "busybox"
        return proxy.requests()[before:]

    _warm(proxy, ref)
    asked = export_run("a")
    assert any("/get" in a for a in asked), f"a first export asked no export? {asked}"
    assert export_run("a") == [], "every layer cached and the answer holds, yet it asked"
    # Another cache, the same kept answer: the export is asked for (its API version first).
    asked = export_run("b")
    assert any(a.startswith("GET /_ping") for a in asked), asked
    assert any("/get" in a for a in asked), asked
