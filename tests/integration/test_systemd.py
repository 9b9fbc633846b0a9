"""systemd: readiness (Type=notify, NOTIFY_SOCKET) and socket activation (LISTEN_FDS), forms 1
and 2, with Debian's uWSGI and the real dockerd.

systemd itself does not run here: the tests do what it does. A NOTIFY_SOCKET is a datagram
socket the test binds, writable by anyone as /run/systemd/notify is, with SO_PASSCRED so that
each message carries its sender's pid (systemd's NotifyAccess=main accepts only the main pid's).
Socket activation is systemd's own `systemd-socket-activate`, which listens, then executes
uWSGI with LISTEN_FDS/LISTEN_PID at the first connection, as a .socket unit does."""
import configparser
import grp
import os
import pwd
import re
import select
import shlex
import signal
import socket
import struct
import subprocess
import time

import pytest

from plugin_support import (MARKER_ENV, UWSGI, Harness, form1_options, form2_options, free_port,
                            parse_http, plug_images, uwsgi_request, wait_for, write_ini)

assert plug_images  # a fixture, used by name

FORMS = ["form1", "form2"]
OPTIONS = {"form1": form1_options, "form2": form2_options}
SSA = "/usr/bin/systemd-socket-activate"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "hooks", "examples")
DEBIAN_EMPEROR_UNIT = "/lib/systemd/system/uwsgi-emperor.service"
DEBIAN_EMPEROR_INI = "/etc/uwsgi-emperor/emperor.ini"


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
        assert got, f"no READY=1 on NOTIFY_SOCKET; got {n.messages}:\n{u.tail()}"
        assert got[0] == u.pid, f"READY=1 from pid {got[0]}, not the main pid {u.pid}"
        assert "[docker] cannot" not in u.log(), u.tail()
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
    assert len(lines) == 1 and missing in lines[0], u.tail()
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
    unix = plug.path("activated.sock")
    try:
        cmd = [SSA, "-l", f"127.0.0.1:{port}", "-l", unix, "-E", MARKER_ENV, "-E", "PATH",
               "-E", f"NOTIFY_SOCKET={n.path}", UWSGI, "--ini", ini]
        u = plug.start_raw([], name=form, command=cmd)
        d = u.wait_ready(port)
        assert d["version"] == "v1" and d["only_in_image"] == "image-only-content", d
        log = u.log()
        assert "SystemD socket activation detected" in log, log[-3000:]
        # the listeners are systemd-socket-activate's, executed into uWSGI: the same pid
        assert f"127.0.0.1:{port} fd 3" in log and f"{unix} fd 4" in log, \
            [l for l in log.splitlines() if "address" in l or "activat" in l]
        raw = _http_over_unix(unix)
        assert raw.startswith(b"HTTP/1.0 200") and b"image-only-content" in raw, raw[:300]
        # systemd's socket keeps the owner its unit gave it (the plugin chowns only its own)
        st = os.stat(unix)
        assert (st.st_uid, st.st_gid) == (0, 0), (st.st_uid, st.st_gid)
        got = n.wait_for("READY=1", 20)
        assert got and got[0] == u.pid, (n.messages, u.pid)
        plug.stop_and_check(u)
    finally:
        n.close()
        if os.path.exists(unix):
            os.unlink(unix)  # systemd-socket-activate leaves its socket file


def _http_over_unix(path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(20)
        s.connect(path)
        s.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                return b"".join(chunks)
            chunks.append(b)


# ---------------------------------------------------------------- units, run as systemd runs them

def read_unit(path):
    cp = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"))
    cp.optionxform = str
    with open(path) as f:
        cp.read_file(f)
    return cp


class Unit:
    """A service unit started and stopped the way systemd does, as far as these units use it:
    ExecStart (its config paths replaced by the test's), Group=, Type=notify with NOTIFY_SOCKET
    (NotifyAccess=main: only the main pid's READY=1 counts), a .socket's ListenStream= handed
    over by systemd-socket-activate, and KillSignal= sent as KillMode= says (control-group, the
    default: to every process of the unit; mixed: to the main process), then TimeoutStopSec=."""

    def __init__(self, plug, path, replace, socket_unit=None, listen=None):
        self.plug, self.path = plug, path
        svc = read_unit(path)["Service"]
        self.argv = [replace.get(a, a) for a in shlex.split(svc["ExecStart"])]
        if self.argv[0] == "/usr/bin/uwsgi":
            self.argv[0] = UWSGI  # the uwsgi under test (UD_UWSGI), Debian's by default
        self.notify = svc.get("Type") == "notify"
        self.notify_access = svc.get("NotifyAccess", "none")
        self.kill_signal = signal.Signals[svc.get("KillSignal", "SIGTERM")]
        self.kill_mode = svc.get("KillMode", "control-group")
        self.stop_timeout = float(svc.get("TimeoutStopSec", "90"))
        self.group = svc.get("Group")
        self.listen = None
        if socket_unit:
            assert read_unit(socket_unit)["Socket"]["ListenStream"].startswith("/")
            self.listen = listen
        self.listener = NotifyListener(plug.path("notify")) if self.notify else None

    def start(self, name):
        env = {"NOTIFY_SOCKET": self.listener.path} if self.notify else {}
        cmd = self.argv
        if self.listen:
            cmd = [SSA, "-l", self.listen, "-E", MARKER_ENV, "-E", "PATH"] + \
                [a for k, v in env.items() for a in ("-E", f"{k}={v}")] + cmd
        kw = {"group": self.group, "extra_groups": []} if self.group else {}
        self.u = self.plug.start_raw([], name=name, command=cmd, env=env, popen_kw=kw)
        return self.u

    def wait_ready(self, timeout=40):
        got = self.listener.wait_for("READY=1", timeout)
        assert got, f"{self.path}: no READY=1 ({self.listener.messages}):\n{self.u.tail()}"
        if self.notify_access == "main":
            assert got[0] == self.u.pid, f"READY=1 from {got[0]}, the main pid is {self.u.pid}"

    def stop(self, expect_rc=0):
        # uWSGI with Python: a worker that gets the stop signal while it is still starting
        # (Python's own SIGINT handler in place, or the master's inherited) ignores the shutdown
        # until the mercy runs out. Plain uWSGI does the same; systemd stops units that have run
        # a while. So the workers get a moment to settle first.
        time.sleep(2)
        pids = self.u.pids() if self.kill_mode == "control-group" else [self.u.pid]
        for p in pids:
            try:
                os.kill(p, self.kill_signal)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self.stop_timeout
        rc = self.u.wait_exit(self.stop_timeout)
        gone = wait_for(lambda: not self.u.pids(), max(deadline - time.monotonic(), 0.5))
        log = self.u.log()
        assert rc is not None and gone, \
            f"{self.path}: still running {self.stop_timeout} s after {self.kill_signal.name} " \
            f"({self.kill_mode}): {self.u.pids()}\n{log[-3000:]}"
        self.plug.stop_and_check(self.u, expect_rc=expect_rc, lazy=False)
        self.listener.close()
        return rc


def _vassal(plug, name, form, image, keep_ids=True):
    port = free_port()
    opts = [(k, v) for k, v in OPTIONS[form](plug.workdir, port, image)
            if k not in ("pidfile", "touch-reload", "touch-workers-reload", "socket")]
    if not keep_ids:
        opts = [(k, v) for k, v in opts if k not in ("uid", "gid")]
    write_ini(plug.path(f"vassals/{name}.ini"), opts + [("socket", plug.path(f"{name}.sock"))])
    return port


def _emperor_ini(plug, template, vassal_dir_in_template):
    with open(template) as f:
        text = f.read()
    assert vassal_dir_in_template in text, template
    path = plug.path("emperor.ini")
    with open(path, "w") as f:
        f.write(text.replace(vassal_dir_in_template, plug.path("vassals")))
    return path


def test_emperor_unit_serves_both_forms_and_stops(plug, plug_images):
    os.mkdir(plug.path("vassals"))
    ports = {"a": _vassal(plug, "a", "form1", plug_images.v1),
             "b": _vassal(plug, "b", "form2", plug_images.v2)}
    ini = _emperor_ini(plug, os.path.join(EXAMPLES, "emperor.ini"), "/etc/uwsgi-docker/vassals")
    unit = Unit(plug, os.path.join(EXAMPLES, "uwsgi-docker-emperor.service"),
                {"/etc/uwsgi-docker/emperor.ini": ini})
    u = unit.start("emperor")
    assert u.wait_ready(ports["a"])["version"] == "v1"
    assert u.wait_ready(ports["b"])["version"] == "v2"
    unit.wait_ready()
    unit.stop()


def test_single_instance_unit_with_its_socket_unit(plug, plug_images):
    """myapp.service (form 2, Type=notify) with myapp.socket: the uwsgi-protocol socket is
    systemd's, READY=1 comes from the master inside the image."""
    opts = [(k, v) for k, v in form2_options(plug.workdir, 0, plug_images.v1)
            if k not in ("http-socket", "socket")]
    ini = write_ini(plug.path("myapp.ini"), opts)
    sock = plug.path("app.sock")
    unit = Unit(plug, os.path.join(EXAMPLES, "myapp.service"), {"/etc/uwsgi-docker/myapp.ini": ini},
                socket_unit=os.path.join(EXAMPLES, "myapp.socket"), listen=sock)
    u = unit.start("myapp")
    # the first connection starts the instance, as systemd does
    raw = wait_for(lambda: _try_request(sock), 40, interval=0.5)
    assert raw, f"no answer on {sock}:\n{u.tail()}"
    status, body = parse_http(raw)
    assert "200" in status and b'"only_in_image": "image-only-content"' in body, raw[:500]
    assert "SystemD socket activation detected" in u.log()
    unit.wait_ready()
    unit.stop()
    os.unlink(sock)  # systemd-socket-activate leaves its socket file


def _try_request(sock):
    try:
        return uwsgi_request(sock, "/", timeout=20) if os.path.exists(sock) else None
    except OSError:
        return None


WWW_DATA = (pwd.getpwnam("www-data").pw_uid, grp.getgrnam("www-data").gr_gid)


def test_debian_uwsgi_emperor_with_the_shipped_emperor_ini(plug, plug_images):
    """Debian's uwsgi-emperor.service as it is, with hooks/examples/uwsgi-emperor.ini as its
    emperor.ini: the Emperor runs as root (Group=www-data), vassals without uid/gid of their own
    serve as www-data."""
    assert os.path.isfile(DEBIAN_EMPEROR_UNIT), "uwsgi-emperor is not installed (scripts/deps.sh)"
    os.mkdir(plug.path("vassals"))
    ports = {"a": _vassal(plug, "a", "form1", plug_images.v1, keep_ids=False),
             "b": _vassal(plug, "b", "form2", plug_images.v1, keep_ids=False)}
    ini = _emperor_ini(plug, os.path.join(EXAMPLES, "uwsgi-emperor.ini"),
                       "/etc/uwsgi-emperor/vassals")
    unit = Unit(plug, DEBIAN_EMPEROR_UNIT, {DEBIAN_EMPEROR_INI: ini})
    assert unit.group == "www-data" and unit.kill_signal == signal.SIGQUIT
    u = unit.start("debian-emperor")
    for name, port in ports.items():
        d = u.wait_ready(port)
        assert d["only_in_image"] == "image-only-content", d
        assert (d["uid"], d["gid"]) == WWW_DATA, (name, d["uid"], d["gid"])
    unit.wait_ready()
    unit.stop()


def test_debian_uwsgi_emperor_own_ini_cannot_run_docker_vassals(plug, plug_images):
    """What the shipped emperor.ini is for: with Debian's own (uid = www-data), a vassal is
    started unprivileged and never serves; each start says why in one line."""
    os.mkdir(plug.path("vassals"))
    port = _vassal(plug, "a", "form1", plug_images.v1)
    ini = _emperor_ini(plug, DEBIAN_EMPEROR_INI, "/etc/uwsgi-emperor/vassals")
    unit = Unit(plug, DEBIAN_EMPEROR_UNIT, {DEBIAN_EMPEROR_INI: ini})
    u = unit.start("debian-emperor-own-ini")
    line = f"[docker] uWSGI runs as uid {WWW_DATA[0]}, and the docker plugin must start as root"
    assert wait_for(lambda: line in u.log(), 30), u.tail()
    assert "WSGI app" not in u.log() and "[docker] image" not in u.log(), u.tail()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    unit.stop(expect_rc=None)
