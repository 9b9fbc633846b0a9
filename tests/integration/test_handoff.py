"""The hand-off: one message (src/handoff.h) with the namespace fds, to $UWSGI_DOCKER_FD or
--send-to PATH. The test plays uWSGI: receives, checks the header, payload and fds, then enters
the mount namespace in a forked child (ctypes setns: Python 3.11 has no os.setns)."""
import array
import ctypes
import fcntl
import json
import os
import selectors
import socket
import struct
import subprocess
import time

import pytest

from udlib import (CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWUTS, HELPER, NS_GET_NSTYPE, describe,
                   error_line, helper_env, layer_dirs, run)

HEADER = struct.Struct("<4sHHII")   # magic, version, n_fds, payload_len, flags
MAX_FDS_ROOM = 64                    # receive room for far more fds than declared

libc = ctypes.CDLL(None, use_errno=True)


def recv_handoff(sock):
    msg, anc, flags, _ = sock.recvmsg(1 << 20, socket.CMSG_SPACE(MAX_FDS_ROOM * 4),
                                      socket.MSG_CMSG_CLOEXEC)
    fds = []
    for level, typ, data in anc:
        assert (level, typ) == (socket.SOL_SOCKET, socket.SCM_RIGHTS), (level, typ)
        a = array.array("i")
        a.frombytes(data[:len(data) - len(data) % a.itemsize])
        fds.extend(a)
    assert not flags & (socket.MSG_CTRUNC | socket.MSG_TRUNC), flags
    return msg, fds


def parse(msg, fds):
    """Checks the message against src/handoff.h; returns (types, payload dict, env list)."""
    assert len(msg) >= HEADER.size, msg
    magic, version, n_fds, payload_len, flags = HEADER.unpack_from(msg)
    assert magic == b"UDNS", msg[:16]
    assert version == 1
    assert flags == 0
    assert 1 <= n_fds <= 5
    types = list(struct.unpack_from(f"<{n_fds}I", msg, HEADER.size))
    payload = msg[HEADER.size + 4 * n_fds:]
    assert len(payload) == payload_len, (len(payload), payload_len)
    # Exactly the declared fds, no more (nothing else of the helper's leaks to the receiver).
    assert len(fds) == n_fds, (fds, n_fds)
    assert types[0] == CLONE_NEWNS, types
    assert len(set(types)) == len(types), types
    for fd, t in zip(fds, types):
        assert fcntl.ioctl(fd, NS_GET_NSTYPE) == t, (fd, t)
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    assert payload.endswith(b"\0"), payload
    fields, env = {}, []
    for item in payload[:-1].split(b"\0"):
        key, sep, value = item.decode().partition("=")
        assert sep, item
        if key == "env":
            env.append(value)
        else:
            assert key not in fields, f"duplicate {key}"
            fields[key] = value
    return types, fields, env


def enter_and_look(fds, types, script_paths=("/data/keep",)):
    """In a forked child: setns into every fd with its explicit type (mnt last), then report
    what the child sees. Returns the child's report (dict)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        try:
            os.close(r)
            order = [i for i, t in enumerate(types) if t != CLONE_NEWNS] + \
                    [i for i, t in enumerate(types) if t == CLONE_NEWNS]
            for i in order:
                if libc.setns(fds[i], types[i]) != 0:
                    raise OSError(ctypes.get_errno(), f"setns({types[i]:#x})")
            report = {
                "root": sorted(os.listdir("/")),
                "cwd": os.getcwd(),
                "files": {p: open(p).read() for p in script_paths},
                "mountinfo": open("/proc/self/mountinfo").read(),
                "hostname": os.uname().nodename,
                "net": open("/proc/self/net/dev").read(),
            }
            os.write(w, json.dumps(report).encode())
        except BaseException as e:  # noqa: B036 (the child must report whatever happened)
            os.write(w, json.dumps({"error": repr(e)}).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    report = json.loads(data)
    assert "error" not in report, report["error"]
    return report


def _check_payload(images, tag, fields, env):
    info = images.info[tag]
    assert fields["image"] == tag
    assert fields["id"] == info["Id"]
    assert fields["layers"] == str(len(layer_dirs(info)))
    assert "workdir" in fields


def test_handoff_to_inherited_fd(images):
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    fds = []
    try:
        proc = subprocess.Popen([HELPER, images.layers], pass_fds=[theirs.fileno()],
                                env=helper_env(UWSGI_DOCKER_FD=str(theirs.fileno())),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        theirs.close()
        ours.settimeout(30)
        try:
            msg, fds = recv_handoff(ours)
        finally:
            out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, f"exit {proc.returncode}: {err}"
        types, fields, env = parse(msg, fds)
        assert types == [CLONE_NEWNS]
        _check_payload(images, images.layers, fields, env)
        assert fields["workdir"] == "/srv/work"
        assert "UDTEST_VAR=hello" in env and "UDTEST_SPACED=a b  c" in env
        report = enter_and_look(fds, types)
        assert report["files"]["/data/keep"] == "keep\n"
        assert {"bin", "data", "srv", "proc", "dev", "sys"} <= set(report["root"]), report["root"]
        assert "work" not in report["root"]                     # no host /work
        assert report["cwd"] == "/"
        root = [line for line in report["mountinfo"].splitlines() if line.split()[4] == "/"]
        assert root and " - overlay " in root[0], report["mountinfo"]
    finally:
        for fd in fds:
            os.close(fd)
        ours.close()


def test_handoff_with_extra_namespaces(images):
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    fds = []
    try:
        proc = subprocess.Popen([HELPER, "--unshare", "uts,net", "--hostname", "udtest-handoff",
                                 images.busybox], pass_fds=[theirs.fileno()],
                                env=helper_env(UWSGI_DOCKER_FD=str(theirs.fileno())),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        theirs.close()
        ours.settimeout(30)
        try:
            msg, fds = recv_handoff(ours)
        finally:
            out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, f"exit {proc.returncode}: {err}"
        types, fields, env = parse(msg, fds)
        assert types[0] == CLONE_NEWNS
        assert sorted(types[1:]) == sorted([CLONE_NEWUTS, CLONE_NEWNET])
        _check_payload(images, images.busybox, fields, env)
        report = enter_and_look(fds, types, script_paths=("/etc/udtest-base",))
        assert report["files"]["/etc/udtest-base"] == "base\n"
        assert report["hostname"] == "udtest-handoff"
        ifaces = [x.split(":")[0].strip() for x in report["net"].splitlines()[2:] if ":" in x]
        assert ifaces == ["lo"], report["net"]
    finally:
        for fd in fds:
            os.close(fd)
        ours.close()


@pytest.mark.parametrize("kind", ["seqpacket", "stream"])
def test_handoff_send_to_path(images, session_dir, kind):
    """--send-to connects with seqpacket, else stream (man page)."""
    path = os.path.join(session_dir, f"handoff-{kind}.sock")
    listener = socket.socket(socket.AF_UNIX, {"seqpacket": socket.SOCK_SEQPACKET,
                                              "stream": socket.SOCK_STREAM}[kind])
    fds = []
    try:
        listener.bind(path)
        listener.listen(1)
        listener.settimeout(30)
        proc = subprocess.Popen([HELPER, "--send-to", path, images.layers],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=helper_env())
        try:
            # Accept, unless the helper gives up first (then report what it said).
            sel = selectors.DefaultSelector()
            sel.register(listener, selectors.EVENT_READ)
            deadline = time.monotonic() + 30
            while not sel.select(0.1):
                if proc.poll() is not None or time.monotonic() > deadline:
                    out, err = proc.communicate(timeout=30)
                    raise AssertionError(f"the helper never connected: exit {proc.returncode}: "
                                         f"{err}")
            sel.close()
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(30)
                msg, fds = recv_handoff(conn)
        finally:
            out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, f"exit {proc.returncode}: {err}"
        types, fields, env = parse(msg, fds)
        _check_payload(images, images.layers, fields, env)
        report = enter_and_look(fds, types)
        assert report["files"]["/data/keep"] == "keep\n"
    finally:
        for fd in fds:
            os.close(fd)
        listener.close()
        if os.path.exists(path):
            os.unlink(path)


def test_handoff_fd_not_a_socket(images):
    r, w = os.pipe()
    try:
        p = run([images.busybox], env=helper_env(UWSGI_DOCKER_FD=str(w)), pass_fds=[w])
        error_line(p, 69)
    finally:
        os.close(r)
        os.close(w)


def test_handoff_peer_gone(images):
    """The receiver closed its end: EPIPE, reported (not a SIGPIPE death)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.close()
    try:
        p = run([images.busybox], env=helper_env(UWSGI_DOCKER_FD=str(theirs.fileno())),
                pass_fds=[theirs.fileno()])
        error_line(p, 69)
    finally:
        theirs.close()


def test_send_to_missing_socket(images, session_dir):
    path = os.path.join(session_dir, "no-such-receiver.sock")
    p = run(["--send-to", path, images.busybox])
    line = error_line(p, 69)
    assert path in line, line
    assert not os.path.exists(path)
