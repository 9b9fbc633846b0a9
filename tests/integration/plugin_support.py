"""Helpers and fixtures for the end-to-end tests of the uWSGI `docker` plugin (test_plugin.py).

The test images carry busybox-static, the host's Python 3.11 stdlib (what Debian's python3 plugin
embeds) and a WSGI app that reports what it sees from inside. Two versions, v1 and v2, share every
layer but the last few (the second build is served from the build cache).

uWSGI runs as /usr/bin/uwsgi with `plugin-dir` = the directory of $UD_HELPER (build/), in its own
session, its output in a log file. Stopping is SIGINT to the master, a bounded wait, then SIGKILL of
what is left (only processes this module started: the session, or the environment marker).
"""
import collections
import fcntl
import re
import http.client
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import types
import uuid

import pytest

import udlib
from udlib import DOCKER, HELPER

# Another uWSGI (one built from source, say) with UD_UWSGI; a monolithic one (Python built in, as
# pip and uwsgiconfig.py --build make it) with UD_UWSGI_PLUGINS=docker. Debian's by default.
UWSGI = os.environ.get("UD_UWSGI", "/usr/bin/uwsgi")
PLUGINS = os.environ.get("UD_UWSGI_PLUGINS", "python3,docker")
PYTHON = "/usr/bin/python3"
BUSYBOX = "/bin/busybox"
PYLIB = "/usr/lib/python3.11"
BUILD_DIR = os.path.dirname(os.path.abspath(HELPER)) if HELPER else ""
# Per session: two sessions on one daemon (another developer's run, CI) must never retag or
# remove each other's images (a retag under a running reload test changes the ids it checks).
PREFIX = f"udplug-{os.getpid()}-{os.urandom(3).hex()}-"
NOBODY = 65534
NOGROUP = 65534
READY_TIMEOUT = 25.0
STOP_TIMEOUT = 20.0
MARKER_ENV = "UDPLUG_TEST_MARKER"

# ---------------------------------------------------------------- the app inside the image

APP = r'''
import json
import os
import sys
from urllib.parse import parse_qs


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        return "ERR:" + type(e).__name__


def _root_mount():
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                pre, post = line.split(" - ", 1)
                if pre.split(" ")[4] == "/":
                    last = line
        return last.strip()
    except Exception as e:
        return "ERR:" + repr(e)


def _mounts():
    out = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                pre, post = line.split(" - ", 1)
                out.append([pre.split(" ")[4], post.split(" ")[0], pre.split(" ")[5]])
    except Exception as e:
        out.append(["ERR", repr(e), ""])
    return out


def application(environ, start_response):
    q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    info = {
        "version": _read("/srv/version").strip(),
        "only_in_image": _read("/srv/only-in-image").strip(),
        "gone_exists": os.path.lexists("/srv/gone"),
        "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "egid": os.getegid(),
        "pid": os.getpid(),
        "cwd": os.getcwd(),
        "environ": dict(os.environ),
        "root_listing": sorted(os.listdir("/")),
        "root_mount": _root_mount(),
        "mnt_ns": os.readlink("/proc/self/ns/mnt"),
        "python": sys.version,
        "hostname": os.uname().nodename,
        "mounts": _mounts(),
    }
    if "read" in q:
        info["read"] = _read(q["read"])
    if "marker" in q:
        info["marker_exists"] = os.path.lexists(q["marker"])
    if "write" in q:
        try:
            with open(q["write"], "w") as f:
                f.write("written from inside\n")
            info["write"] = "ok:" + _read(q["write"]).strip()
        except OSError as e:
            info["write"] = "ERR:" + type(e).__name__ + ":" + str(e)
    body = json.dumps(info).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''

DOCKERFILE_COMMON = [
    "FROM scratch",
    "COPY busybox /bin/busybox",
    'RUN ["/bin/busybox", "--install", "-s", "/bin"]',
    "RUN mkdir -p /tmp /etc /srv && chmod 1777 /tmp && chmod 0777 /srv"
    " && echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd"
    " && echo 'this file is deleted by a later layer' > /srv/gone",
    "COPY python3.11 /usr/lib/python3.11",
    "RUN rm /srv/gone",
    "COPY app.py /srv/app.py",
    "COPY only-in-image /srv/only-in-image",
]


def _dockerfile(version, env):
    return "\n".join(DOCKERFILE_COMMON + [
        f"COPY version-{version} /srv/version",
        "ENV " + " ".join(f"{k}={v}" for k, v in env.items()),
        "WORKDIR /srv",
    ]) + "\n"


V1_ENV = {"GREETING": "hello-v1", "UDPLUG_ONLY_V1": "present-in-v1"}
V2_ENV = {"GREETING": "hello-v2"}


def _write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def _copy_tree_linked(src, dst):
    """A copy of src (hard links where possible: same filesystem, nothing written twice)."""
    def link_or_copy(s, d):
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)
    shutil.copytree(src, dst, symlinks=True, copy_function=link_or_copy)


def _build(tag, ctx, dockerfile):
    env = dict(os.environ)
    env["DOCKER_BUILDKIT"] = "0"
    p = subprocess.run([DOCKER, "build", "-q", "--network", "none", "--rm", "--force-rm",
                        "-f", dockerfile, "-t", tag, ctx],
                       capture_output=True, text=True, env=env, timeout=600)
    if p.returncode != 0:
        pytest.fail(f"docker build of {tag} failed:\n{p.stdout}\n{p.stderr}")


@pytest.fixture(scope="session")
def plug_images(docker_ready, session_dir):
    """udplug-app:v1 and udplug-app:v2 (same layers up to the version file and Env). Attributes:
    v1, v2 (tags), info[tag] (docker image inspect), env[tag], extra_tags (tags tests add, all
    removed at the end)."""
    if not os.path.isdir(PYLIB):
        pytest.fail(f"{PYLIB} missing: the image must carry the host's Python 3.11 stdlib")
    imgs = types.SimpleNamespace(v1=PREFIX + "app:v1", v2=PREFIX + "app:v2", info={}, env={},
                                 extra_tags=[])
    ctx = os.path.join(session_dir, "plug-image")
    os.mkdir(ctx)
    shutil.copy(BUSYBOX, os.path.join(ctx, "busybox"))
    _copy_tree_linked(PYLIB, os.path.join(ctx, "python3.11"))
    _write(os.path.join(ctx, "app.py"), APP)
    _write(os.path.join(ctx, "only-in-image"), "image-only-content\n")
    _write(os.path.join(ctx, "version-v1"), "v1\n")
    _write(os.path.join(ctx, "version-v2"), "v2\n")
    _write(os.path.join(ctx, "Dockerfile.v1"), _dockerfile("v1", V1_ENV))
    _write(os.path.join(ctx, "Dockerfile.v2"), _dockerfile("v2", V2_ENV))
    built = []
    try:
        for tag, df, env in ((imgs.v1, "Dockerfile.v1", V1_ENV), (imgs.v2, "Dockerfile.v2", V2_ENV)):
            _build(tag, ctx, os.path.join(ctx, df))
            built.append(tag)
            imgs.info[tag] = udlib.inspect(tag)
            imgs.env[tag] = env
        shutil.rmtree(ctx, ignore_errors=True)
        yield imgs
    finally:
        for tag in imgs.extra_tags + list(reversed(built)):
            udlib.docker("rmi", "-f", tag, check=False)


# ---------------------------------------------------------------- ports, HTTP, uwsgi protocol

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path="/", timeout=10.0):
    """(status, body bytes) over TCP."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def get_json(port, path="/", timeout=10.0):
    status, body = http_get(port, path, timeout)
    assert status == 200, (status, body[:500])
    return json.loads(body)


def uwsgi_request(sock_path, path="/", timeout=10.0):
    """One request in the uwsgi protocol over a unix socket; returns the raw HTTP-ish answer."""
    env = {"REQUEST_METHOD": "GET", "PATH_INFO": path.split("?")[0],
           "QUERY_STRING": path.split("?", 1)[1] if "?" in path else "",
           "REQUEST_URI": path, "SERVER_PROTOCOL": "HTTP/1.0", "SERVER_NAME": "localhost",
           "SERVER_PORT": "80", "HTTP_HOST": "localhost", "REMOTE_ADDR": "127.0.0.1"}
    data = b"".join(struct.pack("<H", len(k)) + k.encode() + struct.pack("<H", len(v)) + v.encode()
                    for k, v in env.items())
    pkt = struct.pack("<BHB", 0, len(data), 0) + data
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(sock_path)
        s.sendall(pkt)
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    return b"".join(chunks)


def parse_http(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode()
    return status_line, body


# ---------------------------------------------------------------- processes and namespaces

def _proc_stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    rest = s[s.rindex(")") + 2:].split()
    # rest[0] = state, [1] = ppid, [2] = pgrp, [3] = session
    return types.SimpleNamespace(state=rest[0], ppid=int(rest[1]), pgrp=int(rest[2]),
                                 sid=int(rest[3]))


def all_pids():
    return [int(n) for n in os.listdir("/proc") if n.isdigit()]


def _environ_has(pid, marker):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return marker.encode() in f.read()
    except OSError:
        return False


def ns_of(pid, kind="mnt"):
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


NS_GET_MNTNS_ID = 0x8008b705  # _IOR(0xb7, 0x5, __u64), Linux 6.8+


def mnt_ns_id(pid):
    """The 64-bit id of pid's mount namespace, never reused within a boot (0: unknown). Inode
    numbers are reused at once: another session's namespace may get one this test saw."""
    try:
        fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        buf = bytearray(8)
        fcntl.ioctl(fd, NS_GET_MNTNS_ID, buf)
        return int.from_bytes(buf, "little")
    except OSError:
        return 0
    finally:
        os.close(fd)


def ns_fds(pid):
    """Namespace links held open as fds by pid: {'mnt:[...]', ...} as a Counter."""
    c = collections.Counter()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                t = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if t.split(":", 1)[0] in ("mnt", "ipc", "uts", "net", "cgroup", "pid"):
                c[t] += 1
    except OSError:
        pass
    return c


# dockerd mounts and unmounts container roots (docker build RUN steps of other test sessions on
# this machine) under its own directories: those are not ours to judge.
_DOCKERD_OWN = ("/var/lib/docker/", "/run/docker/", "/var/run/docker/")


def _ours_to_judge(m):
    return not m.mountpoint.startswith(_DOCKERD_OWN) and not udlib.foreign_mount(m)


def host_mount_points():
    """The host's mount table as (mount point, fs type) pairs (a Counter)."""
    return collections.Counter((m.mountpoint, m.fstype) for m in udlib.host_mounts()
                               if _ours_to_judge(m))


def mounts_of_type(types_):
    return sorted((m.mountpoint, m.fstype) for m in udlib.host_mounts()
                  if m.fstype in types_ and _ours_to_judge(m))


class Uwsgi:
    """One uWSGI process tree started by a test (an instance or an Emperor)."""

    def __init__(self, workdir, args, name="uwsgi", command=None, env=None, popen_kw=None):
        self.workdir = workdir
        self.args = args
        self.name = name
        # command: the whole argv when what starts is not uwsgi itself but something that
        # executes it in its own process (systemd-socket-activate); env: added to BASE_ENV.
        self.command = command
        self.extra_env = dict(env or {})
        self.popen_kw = dict(popen_kw or {})  # e.g. group=: a unit's Group=
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.marker = f"{name}-{uuid.uuid4().hex}"
        self.proc = None
        self.seen_pids = set()
        self.seen_mnt_ns = set()
        self.seen_mnt_ids = {}  # mount namespace link -> its id, when known
        self.returncode = None
        self.leftover_before_kill = []

    def start(self):
        env = dict(udlib.BASE_ENV)
        env.update(self.extra_env)
        env[MARKER_ENV] = self.marker
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.command or [UWSGI, *self.args], stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     cwd=self.workdir, start_new_session=True,
                                     **self.popen_kw)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def tail(self, n=4000):
        """The end of the log for a failure message, without uWSGI's request lines: a request
        loop writes thousands of them and would push out what the test is about."""
        lines = [l for l in self.log().splitlines(keepends=True) if not l.startswith("[pid: ")]
        return "".join(lines)[-n:]

    def pids(self):
        """Processes this test started that are still alive (zombies included): the session,
        or the environment marker (in case something called setsid)."""
        out = []
        # Once the session leader has exited its pid may be reused (pid_max is 32768 here, and
        # other sessions start processes all the time) by another session's leader: from then
        # on only the marker tells.
        leader_alive = self.proc.poll() is None
        for p in all_pids():
            if p == os.getpid():
                continue
            try:
                st = _proc_stat(p)
            except OSError:
                continue
            if (leader_alive and st.sid == self.proc.pid) or _environ_has(p, self.marker):
                out.append(p)
        self.seen_pids.update(out)
        for p in out:
            ns = ns_of(p)
            if ns:
                self.seen_mnt_ns.add(ns)
                self.seen_mnt_ids.setdefault(ns, mnt_ns_id(p))
        return out

    def apps_pending(self):
        """With lazy-apps (form 1) each worker loads the app after fork: the number of spawned
        workers whose app load has not been logged yet."""
        log = self.log()
        spawned = len(re.findall(r"(?i)spawned uWSGI worker \d+", log))
        loaded = len(re.findall(r"WSGI app 0 \(mountpoint='[^']*'\) ready", log)) + \
            log.count("unable to load app 0")
        return spawned - loaded

    def wait_apps_loaded(self, timeout=READY_TIMEOUT):
        """A SIGINT that reaches a worker while Python imports the app becomes a
        KeyboardInterrupt in the import, and that worker then ignores the shutdown until
        uWSGI's mercy runs out (uWSGI's own behaviour with lazy-apps). So a test stops a form 1
        instance only once every worker has loaded its app."""
        deadline = time.monotonic() + timeout
        while self.apps_pending() > 0 and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return
            time.sleep(0.1)
        # uWSGI logs "ready" before uwsgi_worker_run() installs the worker's own SIGINT handler
        # (core/uwsgi.c): a SIGINT in between is Python's, and is lost the same way. A worker
        # blocked in its event loop is past that point; one busy with a request is given time.
        while time.monotonic() < deadline and self.proc.poll() is None:
            live = set(self.pids())
            if all(_in_event_loop(p) for p in self.worker_pids() if p in live):
                return
            time.sleep(0.05)

    def worker_pids(self):
        """Host pids of the workers the master spawned (its log names them: it sees host pids)."""
        return [int(p) for p in re.findall(r"(?i)spawned uWSGI worker \d+ \(pid: (\d+)",
                                            self.log())]

    def wait_exit(self, timeout):
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self, sig=signal.SIGINT, timeout=STOP_TIMEOUT):
        """SIGINT to the master, wait; SIGKILL to whatever of ours is left. Returns the exit
        status of the master (None if it had to be killed)."""
        if self.proc is None:
            return None
        self.pids()
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            self.wait_exit(timeout)
        rc = self.proc.returncode
        self.returncode = rc
        # Whatever of ours outlives the master (workers, vassals, a helper) gets a moment to go;
        # what is still there is recorded (tests assert it is nothing), then SIGKILLed.
        deadline = time.monotonic() + 5
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.leftover_before_kill = [(p, cmdline(p)) for p in self.pids()]
        for p, _ in self.leftover_before_kill:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            rc = None
        self._log.close()
        return rc

    def wait_ready(self, port, path="/", timeout=READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.proc.returncode} before answering:\n"
                            f"{self.log()}")
            try:
                status, body = http_get(port, path, timeout=5)
                if status == 200:
                    return json.loads(body)
                last = (status, body[:300])
            except (OSError, http.client.HTTPException) as e:
                last = e
            time.sleep(0.2)
        pytest.fail(f"{self.name} did not answer on port {port} within {timeout} s "
                    f"(last: {last!r}):\n{self.log()}")


def wait_for(cond, timeout, interval=0.2):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            return v
        time.sleep(interval)


def touch(path, mtime=None):
    """Creates or touches path; an explicit mtime (uWSGI compares whole seconds)."""
    with open(path, "a"):
        pass
    t = time.time() if mtime is None else mtime
    os.utime(path, (t, t))


def write_ini(path, options):
    """options: list of (key, value) pairs (repeatable keys)."""
    lines = ["[uwsgi]"] + [f"{k} = {v}" for k, v in options]
    _write(path, "\n".join(lines) + "\n")
    return path


def base_options(workdir, port):
    return [
        ("plugin-dir", BUILD_DIR),
        ("plugins", PLUGINS),
        ("master", "true"),
        ("http-socket", f"127.0.0.1:{port}"),
        ("socket", os.path.join(workdir, "app.sock")),
        ("uid", "nobody"),
        ("gid", "nogroup"),
        ("wsgi-file", "/srv/app.py"),
        ("processes", "2"),
        ("pidfile", os.path.join(workdir, "pid")),
    ]


def form1_options(workdir, port, image):
    return base_options(workdir, port) + [
        ("docker-image", image),
        ("docker-helper", HELPER),
        ("touch-reload", os.path.join(workdir, "reload")),
        ("touch-workers-reload", os.path.join(workdir, "workers-reload")),
    ]


def form2_options(workdir, port, image):
    return base_options(workdir, port) + [
        ("exec-as-root", f"{HELPER} {image}"),
    ]


class RequestLoop(threading.Thread):
    """Requests / continuously (bounded in time and count); records each answer's version or
    the failure."""

    def __init__(self, port, max_seconds=90.0, max_requests=200000):
        super().__init__(daemon=True)
        self.port = port
        self.max_seconds = max_seconds
        self.max_requests = max_requests
        self.stop_event = threading.Event()
        self.results = []   # (monotonic time, version or None)
        self.failures = []  # (monotonic time, repr of the error)
        self.lock = threading.Lock()

    def run(self):
        deadline = time.monotonic() + self.max_seconds
        n = 0
        while not self.stop_event.is_set() and time.monotonic() < deadline and \
                n < self.max_requests:
            n += 1
            t = time.monotonic()
            try:
                status, body = http_get(self.port, "/", timeout=15)
                if status != 200:
                    raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
                v = json.loads(body)["version"]
                with self.lock:
                    self.results.append((t, v))
            except Exception as e:  # every kind of failure counts
                with self.lock:
                    self.failures.append((t, repr(e)))

    def versions(self):
        with self.lock:
            return [v for _, v in self.results]

    def finish(self):
        self.stop_event.set()
        self.join(timeout=30)
        assert not self.is_alive(), "the request loop did not stop"


# The plugin's init of the workers' PID namespace (pid 1 there) is a child of the master too.
INIT_COMM = "uwsgi-docker-in"  # "uwsgi-docker-init", as the kernel keeps it (15 bytes)


# x86_64 numbers of the calls a worker blocks in once it waits for requests: epoll_wait,
# epoll_pwait, epoll_pwait2, accept, accept4, poll, ppoll, select, pselect6.
_EVENT_LOOP_SYSCALLS = {232, 281, 441, 43, 288, 7, 271, 23, 270}


def _in_event_loop(pid):
    try:
        with open(f"/proc/{pid}/syscall") as f:
            first = f.read().split()[:1]
    except OSError:
        return True  # gone: nothing to wait for
    return bool(first) and first[0].isdigit() and int(first[0]) in _EVENT_LOOP_SYSCALLS


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def inner_pid(pid):
    """pid as the process itself sees it (the last NSpid: workers live in a PID namespace)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    raise AssertionError(f"no NSpid for {pid}")


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


TEST_MNT_NS = ns_of(os.getpid())  # the "host" namespace: the one the tests (and uWSGI) start in


class Harness:
    """Starts uWSGI instances for one test; stop_and_check() stops one and checks what the
    brief asks of every stop; cleanup() (fixture teardown) stops whatever is still running."""

    def __init__(self, workdir, images):
        self.workdir = workdir
        self.images = images
        self.started = []
        self.mounts_before = host_mount_points()

    def path(self, name):
        return os.path.join(self.workdir, name)

    def start(self, options, name="uwsgi", extra_args=()):
        ini = write_ini(self.path(f"{name}.ini"), options)
        u = Uwsgi(self.workdir, ["--ini", ini, *extra_args], name=name)
        self.started.append(u)
        return u.start()

    def start_raw(self, args, name, command=None, env=None, popen_kw=None):
        u = Uwsgi(self.workdir, args, name=name, command=command, env=env, popen_kw=popen_kw)
        self.started.append(u)
        return u.start()

    def stray_in_namespaces(self, u):
        """uWSGI processes anywhere on the machine still in a mount namespace that a process of
        this instance was seen in (other than the tests' own)."""
        nss = u.seen_mnt_ns - {TEST_MNT_NS}
        out = []
        for p in all_pids():
            ns = ns_of(p)
            if ns not in nss or "uwsgi" not in cmdline(p):
                continue
            seen, now = u.seen_mnt_ids.get(ns, 0), mnt_ns_id(p)
            if seen and now and seen != now:
                continue  # the inode, reused by a namespace this instance never had
            out.append((p, cmdline(p), ns))
        return out

    def stop_and_check(self, u, sig=signal.SIGINT, expect_rc=0, lazy=True):
        if lazy:
            u.wait_apps_loaded()
        u.pids()
        rc = u.stop(sig)
        log = u.log()
        assert u.leftover_before_kill == [], \
            f"processes of {u.name} still alive after the master exited: " \
            f"{[(p, c) for p, c in u.leftover_before_kill]}\n{log[-3000:]}"
        assert rc is not None, f"{u.name} did not exit within {STOP_TIMEOUT} s of signal {sig}:\n" \
                               f"{log[-3000:]}"
        if expect_rc is not None:
            assert rc == expect_rc, f"{u.name} exited with {rc}, expected {expect_rc}:\n{log[-3000:]}"
        stray = self.stray_in_namespaces(u)
        assert stray == [], f"uWSGI processes left in the image's namespaces: {stray}"
        self.assert_mounts_unchanged()
        return rc

    def assert_mounts_unchanged(self):
        after = host_mount_points()
        if after != self.mounts_before:
            appeared = sorted((after - self.mounts_before).elements())
            vanished = sorted((self.mounts_before - after).elements())
            raise AssertionError(f"host mount table changed: appeared {appeared}, "
                                 f"vanished {vanished}")

    def cleanup(self):
        for u in self.started:
            if u.proc is not None and (u.proc.poll() is None or u.pids()):
                u.wait_apps_loaded(timeout=10)
                u.stop()
