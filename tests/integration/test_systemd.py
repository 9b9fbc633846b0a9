"""systemd: readiness (Type=notify, NOTIFY_SOCKET) and socket activation (LISTEN_FDS), forms 1
and 2, with Debian's uWSGI and the real dockerd.

systemd itself does not run here: the tests do what it does. A NOTIFY_SOCKET is a datagram
socket the test binds, writable by anyone as /run/systemd/notify is, with SO_PASSCRED so that
each message carries its sender's pid (systemd's NotifyAccess=main accepts only the main pid's).
Socket activation is systemd's own `systemd-socket-activate`, which listens, then executes
uWSGI with LISTEN_FDS/LISTEN_PID at the first connection, as a .socket unit does."""
import array
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import time

import pytest

from plugin_support import (MARKER_ENV, UWSGI, Harness, form1_options, form2_options, free_port,
                            plug_images, wait_for, write_ini)

assert plug_images  # a fixture, used by name

FORMS = ["form1", "form2"]
OPTIONS = {"form1": form1_options, "form2": form2_options}
SSA = "/usr/bin/systemd-socket-activate"


@pytest.fixture
def plug(scratch, plug_images):
    h = Harness(scratch, plug_images)
    yield h
    h.cleanup()


class NotifyListener:
    """Where systemd would listen for a unit's notifications."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.bind(path)
        os.chmod(path, 0o777)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.messages = []  # (sender pid, text)

    def _drain(self, timeout):
        while select.select([self.sock], [], [], timeout)[0]:
            data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            pid = None
            for level, kind, cdata in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", cdata[:12])[0]
            self.messages.append((pid, data.decode(errors="replace")))
            timeout = 0

    def wait_for(self, line, timeout):
        """The first message with this line (as systemd reads it: one assignment a line)."""
        deadline = time.monotonic() + timeout
        while True:
            for pid, text in self.messages:
                if line in text.splitlines():
                    return pid, text
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._drain(min(left, 0.5))

    def inode(self):
        return os.fstat(self.sock.fileno()).st_ino

    def close(self):
        self.sock.close()


def connected_holders(listener):
    """pids of the processes holding a socket connected to the listener (ss reads sock_diag)."""
    out = subprocess.run(["ss", "-xapn"], capture_output=True, text=True, check=True).stdout
    pids = set()
    for line in out.splitlines():
        f = line.split()
        # Netid State Recv-Q Send-Q Local Port Peer Port [Process]
        if len(f) >= 8 and f[7] == str(listener.inode()):
            pids.update(int(p) for p in re.findall(r"pid=(\d+)", line))
    return pids


def _workers(u):
    return [p for p in u.pids() if p != u.pid]


@pytest.mark.parametrize("form", FORMS)
def test_ready_reaches_notify_socket_from_the_master(plug, plug_images, form):
    """READY=1 arrives from the main pid once the instance serves. Form 2's master has entered
    the image by then: it sends through an fd it connected on the host, which no worker keeps,
    and the app does not see NOTIFY_SOCKET."""
    port = free_port()
    n = NotifyListener(plug.path("notify"))
    try:
        ini = write_ini(plug.path(f"{form}.ini"), OPTIONS[form](plug.workdir, port,
                                                                plug_images.v1))
        u = plug.start_raw(["--ini", ini], name=form, env={"NOTIFY_SOCKET": n.path})
        d = u.wait_ready(port)
        assert d["version"] == "v1" and d["only_in_image"] == "image-only-content", d
        got = n.wait_for("READY=1", 20)
        assert got, f"no READY=1 on NOTIFY_SOCKET; got {n.messages}:\n{u.log()[-3000:]}"
        assert got[0] == u.pid, f"READY=1 from pid {got[0]}, not the main pid {u.pid}"
        assert "[docker] cannot" not in u.log(), u.log()[-3000:]
        if form == "form2":
            assert "NOTIFY_SOCKET" not in d["environ"], d["environ"]
            workers = _workers(u)
            assert workers, u.log()[-2000:]
            assert connected_holders(n) == {u.pid}, (connected_holders(n), u.pid, workers)
        plug.stop_and_check(u)
    finally:
        n.close()


def test_form2_unreachable_notify_socket_is_one_line_and_still_serves(plug, plug_images):
    port = free_port()
    missing = plug.path("no-such-notify")
    ini = write_ini(plug.path("form2.ini"), form2_options(plug.workdir, port, plug_images.v1))
    u = plug.start_raw(["--ini", ini], name="form2", env={"NOTIFY_SOCKET": missing})
    assert u.wait_ready(port)["version"] == "v1"
    lines = [l for l in u.log().splitlines() if l.startswith("[docker] cannot connect")]
    assert len(lines) == 1 and missing in lines[0], u.log()[-3000:]
    plug.stop_and_check(u)


def _activated_options(form, workdir, image):
    """The instance's ini without sockets of its own: the one socket is systemd's, speaking
    HTTP (protocol applies to sockets that name none)."""
    opts = [(k, v) for k, v in OPTIONS[form](workdir, 0, image)
            if k not in ("http-socket", "socket")]
    return opts + [("protocol", "http")]


@pytest.mark.parametrize("form", FORMS)
def test_serves_from_a_socket_activated_listener(plug, plug_images, form):
    assert os.access(SSA, os.X_OK), f"{SSA} missing (package systemd; scripts/deps.sh)"
    port = free_port()
    ini = write_ini(plug.path(f"{form}.ini"), _activated_options(form, plug.workdir,
                                                                 plug_images.v1))
    n = NotifyListener(plug.path("notify"))
    try:
        cmd = [SSA, "-l", f"127.0.0.1:{port}", "-E", MARKER_ENV, "-E", "PATH",
               "-E", f"NOTIFY_SOCKET={n.path}", UWSGI, "--ini", ini]
        u = plug.start_raw([], name=form, command=cmd)
        d = u.wait_ready(port)
        assert d["version"] == "v1" and d["only_in_image"] == "image-only-content", d
        log = u.log()
        assert "SystemD socket activation detected" in log, log[-3000:]
        # the listener is systemd-socket-activate's, executed into uWSGI: the same pid
        assert f"127.0.0.1:{port} fd 3" in log, log[-3000:]
        got = n.wait_for("READY=1", 20)
        assert got and got[0] == u.pid, (n.messages, u.pid)
        plug.stop_and_check(u)
    finally:
        n.close()
