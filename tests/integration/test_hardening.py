"""The helper's weaker spots, attacked: --pin onto files it does not own, --rw-path through
symlinks or onto foreign directories, a --send-to listener that is not root, a root COMMAND
with every capability and the host's /proc, and a form-2 run (UWSGI_DOCKER_FD) that never ends.
Each refusal is one line with its exit status; the host stays unchanged (autouse fixture)."""
import fcntl
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from udlib import HELPER, describe, error_line, helper_env, host_mounts, inside, run

NOBODY = 65534
MARKER = ".uwsgi-docker-rw"
# docker run's default bounding set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
# NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP
DOCKER_CAPS = 0x00000000a80425fb
FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_daemon.py")


def _mounted(path):
    return any(m.mountpoint == path for m in host_mounts())


def _umount(path):
    if _mounted(path):
        subprocess.run(["umount", path], check=True)


# ------------------------------------------------------------------------------ --pin

def _pin_refused(images, pin, real=None):
    real = real or pin
    try:
        p = run(["--pin", pin, images.busybox])
        mounted = _mounted(real)
    finally:
        _umount(real)
    assert not mounted, f"--pin mounted onto {pin}"
    return error_line(p, 68)


def test_pin_refuses_a_file_with_content(images, scratch):
    """Like /etc/passwd: a file with content is not a pin file."""
    pin = os.path.join(scratch, "passwd")
    with open(pin, "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")
    line = _pin_refused(images, pin)
    assert pin in line, line
    assert open(pin).read().startswith("root:x:0:0:")


def test_pin_refuses_a_file_not_owned_by_root(images, scratch):
    pin = os.path.join(scratch, "nobodys")
    open(pin, "w").close()
    os.chown(pin, NOBODY, NOBODY)
    _pin_refused(images, pin)


def test_pin_refuses_a_symlinked_parent(images, scratch):
    real = os.path.join(scratch, "real")
    os.mkdir(real)
    os.symlink(real, os.path.join(scratch, "link"))
    _pin_refused(images, os.path.join(scratch, "link", "pin"), os.path.join(real, "pin"))
    assert os.listdir(real) == []


def test_pin_refuses_a_symlink(images, scratch):
    target = os.path.join(scratch, "target")
    open(target, "w").close()
    pin = os.path.join(scratch, "pin")
    os.symlink(target, pin)
    _pin_refused(images, pin)
    assert not _mounted(target)


def test_pin_onto_an_empty_root_file_still_works(images, scratch):
    pin = os.path.join(scratch, "empty")
    open(pin, "w").close()
    p = run(["--pin", pin, images.busybox])
    try:
        assert p.returncode == 0, describe(p)
        assert _mounted(pin)
    finally:
        _umount(pin)


# ------------------------------------------------------------------------------ --rw-path

def _rw_refused(images, d, status=68):
    p = run(["--rw-path", d, images.busybox, "--", "/bin/true"])
    return error_line(p, status)


def test_rw_path_through_a_symlink(images, scratch):
    host = os.path.join(scratch, "hostdir")
    os.mkdir(host)
    open(os.path.join(host, "keep"), "w").close()
    link = os.path.join(scratch, "link")
    os.symlink(host, link)
    _rw_refused(images, link)
    _rw_refused(images, os.path.join(link, "rw"))
    assert os.listdir(host) == ["keep"]


def test_rw_path_root_is_refused(images):
    line = _rw_refused(images, "/", status=64)
    assert "--rw-path" in line, line


def test_rw_path_with_foreign_work(images, scratch):
    d = os.path.join(scratch, "rw")
    os.makedirs(os.path.join(d, "work", "work"))
    with open(os.path.join(d, "work", "work", "data"), "w") as f:
        f.write("not yours\n")
    os.chmod(d, 0o700)
    _rw_refused(images, d)
    assert sorted(os.listdir(d)) == ["work"]
    assert open(os.path.join(d, "work", "work", "data")).read() == "not yours\n"


def test_rw_path_not_empty_not_marked(images, scratch):
    d = os.path.join(scratch, "rw")
    os.mkdir(d, 0o700)
    open(os.path.join(d, "notes"), "w").close()
    line = _rw_refused(images, d)
    assert MARKER in line, line
    assert os.listdir(d) == ["notes"]


@pytest.mark.parametrize("how", ["owner", "mode"])
def test_rw_path_owner_and_mode(images, scratch, how):
    d = os.path.join(scratch, "rw")
    os.mkdir(d)
    if how == "owner":
        os.chmod(d, 0o700)
        os.chown(d, NOBODY, NOBODY)
    else:
        os.chmod(d, 0o777)
    _rw_refused(images, d)
    assert os.listdir(d) == []


def test_rw_path_new_dir_is_marked_and_reused(images, scratch):
    d = os.path.join(scratch, "new", "rw")
    inside(images.busybox, "echo kept > /kept", "--rw-path", d)
    assert set(os.listdir(d)) == {MARKER, "lock", "upper", "work"}
    assert inside(images.busybox, "cat /kept", "--rw-path", d) == "kept\n"
    # an empty directory made by the operator is taken too
    e = os.path.join(scratch, "empty")
    os.mkdir(e, 0o700)
    inside(images.busybox, "true", "--rw-path", e)
    assert MARKER in os.listdir(e)


# ------------------------------------------------------------------------------ --send-to

def _listener(path, uid):
    """A forked listener: binds as root, then becomes uid and listens (SO_PEERCRED reports
    the listen()er). Returns (pid, read end of a pipe that gets the bytes it received)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            s.bind(path)
            os.setgid(uid)
            os.setuid(uid)
            s.listen(1)
            os.write(w, b"L")
            s.settimeout(30)
            c, _ = s.accept()
            c.settimeout(30)
            msg, anc, _, _ = c.recvmsg(1 << 20, socket.CMSG_SPACE(4 * 8))
            for level, typ, data in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    for i in range(0, len(data) - len(data) % 4, 4):
                        os.close(int.from_bytes(data[i:i + 4], "little"))
            os.write(w, str(len(msg)).encode())
        except BaseException as ex:  # reported to the parent through the pipe
            os.write(w, f"error {ex}".encode())
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"L", "listener did not start"
    return pid, r


def _finish(pid, r, delivered=False):
    """The listener's report. delivered: the helper said it sent, so wait (30 s at most) for the
    listener to say what it received -- a send returns once the message is queued, and a kill
    right after it could come before the listener has read it."""
    if delivered:
        with selectors.DefaultSelector() as sel:
            sel.register(r, selectors.EVENT_READ)
            sel.select(30)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    got = b""
    while True:
        b = os.read(r, 4096)
        if not b:
            break
        got += b
    os.close(r)
    return got.decode()


def test_send_to_listener_not_root(images, scratch):
    path = os.path.join(scratch, "l.sock")
    pid, r = _listener(path, NOBODY)
    try:
        p = run(["--send-to", path, images.busybox], timeout=60)
    finally:
        got = _finish(pid, r)
    line = error_line(p, 69)
    assert str(NOBODY) in line, line
    assert got in ("", "0") or got.startswith("error"), f"the listener received {got} bytes"


def test_send_to_uid_allows_that_listener(images, scratch):
    path = os.path.join(scratch, "l.sock")
    pid, r = _listener(path, NOBODY)
    p = None
    try:
        p = run(["--send-to", path, "--send-to-uid", str(NOBODY), images.busybox], timeout=60)
        assert p.returncode == 0, describe(p)
    finally:
        got = _finish(pid, r, delivered=p is not None and p.returncode == 0)
    assert got.isdigit() and int(got) > 0, got


def test_send_to_socket_in_a_writable_dir(images, scratch):
    d = os.path.join(scratch, "open")
    os.mkdir(d)
    os.chmod(d, 0o1777)
    path = os.path.join(d, "l.sock")
    pid, r = _listener(path, 0)
    try:
        p = run(["--send-to", path, images.busybox], timeout=60)
    finally:
        got = _finish(pid, r)
    error_line(p, 69)
    assert got in ("", "0") or got.startswith("error"), got


# ------------------------------------------------------------------------------ a bounded form 2

def _form2(args, timeout):
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        t0 = time.monotonic()
        p = subprocess.Popen([HELPER, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, pass_fds=[theirs.fileno()],
                             env=helper_env(UWSGI_DOCKER_FD=str(theirs.fileno())))
        theirs.close()
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            raise AssertionError(f"the helper still ran after {timeout} s")
        return p.returncode, time.monotonic() - t0, err
    finally:
        ours.close()


def test_form2_with_a_hanging_daemon_ends(images, session_dir):
    sock = os.path.join(session_dir, f"hang-{os.urandom(3).hex()}.sock")
    log = sock + ".log"
    d = subprocess.Popen([sys.executable, FAKE, sock, "hang", log], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        sel = selectors.DefaultSelector()
        sel.register(d.stdout, selectors.EVENT_READ)
        assert sel.select(15) and d.stdout.readline() == "ready\n", "fake daemon did not start"
        sel.close()
        rc, took, err = _form2(["-H", sock, "-t", "1", images.busybox], timeout=30)
        # 4 x timeout + 5 s at most; a signal death counts too (uWSGI then sees no namespace
        # and stops).
        assert took < 4 * 1 + 5 + 2, (rc, took, err)
        assert rc != 0, (rc, err)
    finally:
        d.terminate()
        d.wait(timeout=10)
        for f in (sock, log):
            if os.path.exists(f):
                os.unlink(f)


def test_form2_stuck_on_a_held_rw_lock_is_killed(images, scratch):
    """Something holds the --rw-path lock forever: the form-2 helper must not wait forever."""
    d = os.path.join(scratch, "rw")
    inside(images.busybox, "true", "--rw-path", d)
    fd = os.open(os.path.join(d, "lock"), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        rc, took, err = _form2(["-t", "1", "--rw-path", d, images.busybox], timeout=30)
    finally:
        os.close(fd)
    assert rc == -signal.SIGALRM, (rc, took, err)
    assert took < 4 * 1 + 5 + 2, took


# ------------------------------------------------------------------------------ root inside

CONNECT_C = r"""
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(argv[1]);
    memcpy(sa.sun_path + 1, argv[1], n);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    return argc == 2 && connect(s, (struct sockaddr *)&sa, offsetof(struct sockaddr_un, sun_path) + 1 + n) == 0 ? 0 : 1;
}
"""


@pytest.fixture(scope="module")
def connector(session_dir):
    src = os.path.join(session_dir, "udconnect.c")
    exe = os.path.join(session_dir, "udconnect")
    with open(src, "w") as f:
        f.write(CONNECT_C)
    subprocess.run(["gcc", "-static", "-O1", "-o", exe, src], check=True, capture_output=True)
    return exe


@pytest.fixture
def host_peers():
    """An abstract unix socket listening on the host, and a host process to signal."""
    name = f"udtest-abstract-{os.getpid()}-{os.urandom(3).hex()}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind("\0" + name)
    s.listen(16)
    sleeper = subprocess.Popen(["sleep", "300"])
    yield name, sleeper.pid
    s.close()
    sleeper.kill()
    sleeper.wait()


PROBE = textwrap.dedent("""
    echo "keys=$(cat /proc/keys 2>/dev/null | wc -c)"
    echo "timer_list=$(cat /proc/timer_list 2>/dev/null | wc -c)"
    v=$(cat /proc/sys/kernel/printk_ratelimit)
    if echo "$v" > /proc/sys/kernel/printk_ratelimit 2>/dev/null; then echo sysctl=w; else echo sysctl=ro; fi
    if mount -o remount,rw /sys 2>/dev/null; then echo sysrw=yes; else echo sysrw=no; fi
    echo "capbnd=$(sed -n 's/^CapBnd:[[:space:]]*//p' /proc/self/status)"
    echo "capeff=$(sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status)"
    if /udconnect "$1"; then echo abstract=yes; else echo abstract=no; fi
    if kill -0 "$2" 2>/dev/null; then echo signal=yes; else echo signal=no; fi
""")


def _probe(images, connector, peers, *opts):
    name, pid = peers
    p = run([*opts, "--ro-bind", f"{connector}:/udconnect", images.busybox, "--", "/bin/sh",
             "-c", PROBE, "probe", name, str(pid)])
    assert p.returncode == 0, describe(p)
    return dict(line.split("=", 1) for line in p.stdout.splitlines())


def test_root_command_is_confined(images, connector, host_peers):
    r = _probe(images, connector, host_peers)
    assert r["keys"] == "0" and r["timer_list"] == "0", r
    assert r["sysctl"] == "ro", r
    assert r["sysrw"] == "no", r
    assert int(r["capbnd"], 16) == DOCKER_CAPS, r
    assert int(r["capeff"], 16) == DOCKER_CAPS, r
    assert r["abstract"] == "no", r
    assert r["signal"] == "no", r


def test_no_confine_lifts_it_all(images, connector, host_peers):
    r = _probe(images, connector, host_peers, "--no-confine")
    assert r["timer_list"] != "0", r
    assert r["sysctl"] == "w", r
    assert r["sysrw"] == "yes", r
    assert int(r["capbnd"], 16) & ~DOCKER_CAPS, r
    assert r["abstract"] == "yes", r
    assert r["signal"] == "yes", r


def test_masks_are_in_the_plan_and_in_every_namespace(images, scratch):
    plan = json.loads(run(["--print", images.busybox]).stdout)
    confine = {(m["type"], m["dst"]) for m in plan["confine"]}
    assert ("mask", "/proc/keys") in confine and ("readonly", "/proc/sys") in confine, confine
    plan = json.loads(run(["--print", "--no-confine", images.busybox]).stdout)
    assert plan["confine"] == []
    pin = os.path.join(scratch, "pin")
    p = run(["--pin", pin, images.busybox])
    try:
        assert p.returncode == 0, describe(p)
        r = subprocess.run(["nsenter", f"--mount={pin}", "/bin/sh", "-c",
                            "cat /proc/timer_list | wc -c; grep ' /proc/sys ' /proc/self/mountinfo"],
                           capture_output=True, text=True, timeout=30, env=helper_env())
    finally:
        _umount(pin)
    lines = r.stdout.splitlines()
    assert lines[0] == "0", r
    assert " ro," in lines[1] or " ro " in lines[1], r


@pytest.mark.parametrize("args", [
    ["--send-to-uid", "65534", "IMG", "--", "/bin/true"],   # without --send-to
    ["--send-to", "/nonexistent-udtest.sock", "--send-to-uid", "nobody", "IMG"],
    ["--send-to", "/nonexistent-udtest.sock", "--send-to-uid", "-1", "IMG"],
], ids=["alone", "name", "negative"])
def test_send_to_uid_usage(images, args):
    p = run([images.busybox if a == "IMG" else a for a in args])
    error_line(p, 64)
