"""Support for test_export.py: a recording (and pausable) proxy in front of dockerd, an in-process
fake daemon that serves a crafted image archive, the inside-view listing and its parser, xattrs
read through /proc/PID/root of a process inside, and cache-directory helpers."""
import collections
import json
import os
import re
import selectors
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time

import udlib
from udlib import HELPER, describe, helper_env

GET_RE = re.compile(r"^GET /(v[0-9.]+/)?images/[^ ]+/get(\?[^ ]*)? HTTP/")


# ---------------------------------------------------------------- HTTP plumbing

def _read_head(sock, buf):
    """Reads until the end of an HTTP head; returns (head bytes, rest) or (None, buf) at EOF."""
    while b"\r\n\r\n" not in buf:
        try:
            data = sock.recv(65536)
        except OSError:
            return None, buf
        if not data:
            return None, buf
        buf += data
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head, rest


def _content_length(head):
    for h in head.decode("latin-1").split("\r\n")[1:]:
        k, _, v = h.partition(":")
        if k.strip().lower() == "content-length":
            return int(v.strip())
    return 0


class _Server:
    """A unix-socket server that hands each connection to self.handle(conn) in a thread."""

    def __init__(self, path):
        self.path = path
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(64)
        self.conns = []
        self.lock = threading.Lock()
        self.closed = False
        self.log = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def address(self):
        return "unix://" + self.path

    def _accept(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            with self.lock:
                if self.closed:
                    c.close()
                    return
                self.conns.append(c)
            threading.Thread(target=self._run, args=(c,), daemon=True).start()

    def _run(self, c):
        try:
            self.handle(c)
        except OSError:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def record(self, line):
        with self.lock:
            self.log.append(line)

    def requests(self):
        with self.lock:
            return list(self.log)

    def gets(self):
        return [r for r in self.requests() if GET_RE.match(r)]

    def close(self):
        with self.lock:
            self.closed = True
            conns = list(self.conns)
        try:
            self.srv.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.srv.close()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.thread.join(5)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class RecordingProxy(_Server):
    """Forwards bytes between the helper and dockerd, recording every request line. With
    hold_get_after=N, the response to an image export (GET .../get) stops after N bytes until
    release() (so that a test can catch the helper in the middle of unpacking)."""

    def __init__(self, path, upstream=udlib.DOCKER_SOCK, hold_get_after=None):
        self.upstream = upstream
        self.hold_get_after = hold_get_after
        self.held = threading.Event()
        self.released = threading.Event()
        super().__init__(path)

    def release(self):
        self.released.set()

    def handle(self, c):
        up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        up.connect(self.upstream)
        with self.lock:
            self.conns.append(up)
        state = {"current": ""}
        back = threading.Thread(target=self._pump_back, args=(up, c, state), daemon=True)
        back.start()
        buf = b""
        try:
            while True:
                head, buf = _read_head(c, buf)
                if head is None:
                    break
                line = head.decode("latin-1").split("\r\n", 1)[0]
                self.record(line)
                state["current"] = line
                n = _content_length(head)
                while len(buf) < n:
                    data = c.recv(65536)
                    if not data:
                        break
                    buf += data
                body, buf = buf[:n], buf[n:]
                up.sendall(head + b"\r\n\r\n" + body)
        finally:
            try:
                up.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            back.join(120)
            up.close()

    def _pump_back(self, up, c, state):
        sent = 0
        try:
            while True:
                data = up.recv(65536)
                if not data:
                    break
                if self.hold_get_after is not None and GET_RE.match(state["current"]):
                    if sent + len(data) > self.hold_get_after and not self.released.is_set():
                        self.held.set()
                        self.released.wait(120)
                    sent += len(data)
                c.sendall(data)
        except OSError:
            pass
        finally:
            try:
                c.shutdown(socket.SHUT_WR)
            except OSError:
                pass


CONTAINERD_INFO = {
    "ID": "udtest-fake", "ServerVersion": "29.0.0", "Driver": "overlayfs",
    "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]],
    "DockerRootDir": "/var/lib/docker", "OperatingSystem": "fake",
}


class FakeDaemon(_Server):
    """A Docker-29-like daemon (API 1.47, containerd image store: image inspect without layer
    directories) that knows one image: any /images/NAME/json answers `inspect`, any
    /images/NAME/get streams `archive` (chunked, like dockerd). truncate_at=N: the export stops
    after N bytes and the connection is closed. hold_at=N: the export stops after N bytes, the
    connection stays open (a stalled daemon) until close(); self.held is set once it holds.
    pace=S: a pause of S seconds after every 64 KiB chunk."""

    def __init__(self, path, inspect, archive, truncate_at=None, api="1.47", hold_at=None,
                 pace=0):
        self.inspect = inspect
        self.archive = archive
        self.truncate_at = truncate_at
        self.hold_at = hold_at
        self.pace = pace
        self.held = threading.Event()
        self.unhold = threading.Event()
        self.api = api
        super().__init__(path)

    def close(self):
        self.unhold.set()
        super().close()

    def _send(self, c, status, body=b"", ctype="application/json", head_only=False):
        if isinstance(body, str):
            body = body.encode()
        reason = {200: "OK", 404: "Not Found"}.get(status, "X")
        hdr = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {ctype}",
               f"Content-Length: {len(body)}", f"Api-Version: {self.api}",
               "Docker-Experimental: false", "Ostype: linux", "Server: Docker/29.0.0 (linux)"]
        c.sendall(("\r\n".join(hdr) + "\r\n\r\n").encode() + (b"" if head_only else body))

    def _send_archive(self, c):
        hdr = ["HTTP/1.1 200 OK", "Content-Type: application/x-tar", "Transfer-Encoding: chunked",
               f"Api-Version: {self.api}", "Server: Docker/29.0.0 (linux)"]
        c.sendall(("\r\n".join(hdr) + "\r\n\r\n").encode())
        data = self.archive
        end = len(data) if self.truncate_at is None else self.truncate_at
        end = end if self.hold_at is None else min(end, self.hold_at)
        for i in range(0, end, 65536):
            chunk = data[i:min(i + 65536, end)]
            c.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            if self.pace:
                time.sleep(self.pace)
        if self.hold_at is not None:
            self.held.set()
            self.unhold.wait(120)
            return False
        if self.truncate_at is not None:
            c.shutdown(socket.SHUT_RDWR)
            return False
        c.sendall(b"0\r\n\r\n")
        return True

    def handle(self, c):
        buf = b""
        while True:
            head, buf = _read_head(c, buf)
            if head is None:
                return
            line = head.decode("latin-1").split("\r\n", 1)[0]
            self.record(line)
            n = _content_length(head)
            buf = buf[n:]
            parts = line.split(" ")
            method, target = parts[0], parts[1] if len(parts) > 1 else "/"
            path = re.sub(r"^/v[0-9.]+/", "/", target.split("?", 1)[0])
            head_only = method == "HEAD"
            if path == "/_ping":
                self._send(c, 200, "OK", "text/plain; charset=utf-8", head_only)
            elif path == "/version":
                self._send(c, 200, json.dumps({"Version": "29.0.0", "ApiVersion": self.api,
                                               "MinAPIVersion": "1.24", "Os": "linux"}))
            elif path == "/info":
                self._send(c, 200, json.dumps(CONTAINERD_INFO))
            elif path.startswith("/images/") and path.endswith("/json"):
                self._send(c, 200, json.dumps(self.inspect))
            elif path.startswith("/images/") and path.endswith("/get"):
                if not self._send_archive(c):
                    return
            else:
                self._send(c, 404, '{"message":"page not found"}')


# ---------------------------------------------------------------- running the helper

def run(args, timeout=120):
    return udlib.run(args, timeout=timeout)


def export_opts(cache, host=None, mode="export"):
    opts = ["--layers", mode, "--cache-dir", cache]
    if host:
        opts = ["-H", host, *opts]
    return opts


def start_inside(args, script):
    """Starts the helper with `sh -c 'echo $$; SCRIPT'` inside; returns (Popen, pid of the shell
    inside) -- the pid is None if the helper failed (the Popen then has its output)."""
    p = subprocess.Popen([HELPER, *args, "--", "/bin/sh", "-c", "echo $$; " + script],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=helper_env(), start_new_session=True)
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    line = p.stdout.readline() if sel.select(60) else ""
    sel.close()
    if not line.strip().isdigit():
        return p, None
    return p, int(line)


def finish(p, timeout=30):
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


# ---------------------------------------------------------------- the inside view

LIST_SCRIPT = ("find / -xdev ! -path / -exec "
               "stat -c '%n|%f|%u|%g|%h|%t|%T|%s|%Y|%d|%i|%N' {} +")
SPECIAL = ("/proc", "/dev", "/sys")
# Made by the helper at each run (issue 12: docker run's network files, in the init layer), with
# that run's times: not the image's, so not compared.
RUN_MADE = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf")


def parse_listing(out):
    """name -> dict of what the inside sees (type, mode, owner, links, device numbers, size,
    mtime, symlink target, hard-link group); inode numbers are replaced by the group of names
    sharing the inode."""
    raw = {}
    for line in out.splitlines():
        f = line.split("|", 11)
        if len(f) != 12:
            raise AssertionError(f"bad listing line: {line!r}")
        name = f[0]
        if name in SPECIAL or any(name.startswith(s + "/") for s in SPECIAL) or name in RUN_MADE:
            continue
        mode = int(f[1], 16)
        e = {"type": stat.S_IFMT(mode), "mode": oct(stat.S_IMODE(mode)), "uid": int(f[2]),
             "gid": int(f[3]), "nlink": int(f[4]), "mtime": int(f[8])}
        if name == "/etc":  # the init layer's, made at each run (as Docker's init layer is)
            del e["mtime"]
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            e["rdev"] = (int(f[5], 16), int(f[6], 16))
        if not stat.S_ISDIR(mode):
            e["size"] = int(f[7])
        if stat.S_ISLNK(mode):
            e["target"] = f[11].split(" -> ", 1)[1][1:-1]
        raw[name] = (e, (f[9], f[10]))
    groups = collections.defaultdict(list)
    for name, (e, ino) in raw.items():
        if e["type"] != stat.S_IFDIR:
            groups[ino].append(name)
    view = {}
    for name, (e, ino) in raw.items():
        if e["type"] != stat.S_IFDIR:
            e["links"] = tuple(sorted(groups[ino]))
        view[name] = e
    return view


def inside_view(image, opts):
    p = run([*opts, image, "--", "/bin/sh", "-c", LIST_SCRIPT])
    assert p.returncode == 0, f"listing inside {image} with {opts}: {describe(p)}"
    view = parse_listing(p.stdout)
    assert len(view) > 50, f"suspiciously short listing: {p.stdout[:2000]}"
    return view


def diff_views(a, b):
    out = []
    for name in sorted(set(a) | set(b)):
        if a.get(name) != b.get(name):
            out.append(f"{name}: {a.get(name)} != {b.get(name)}")
    return out


def _xattrs_of(p):
    try:
        names = os.listxattr(p, follow_symlinks=False)
    except OSError as e:
        return {"error": str(e)}
    return {n: os.getxattr(p, n, follow_symlinks=False) for n in sorted(names)}


def inside_xattrs(image, opts, under="/data"):
    """{path: {xattr: value}} of every entry under `under` that has xattrs, as a process inside
    sees them (read through /proc/PID/root of a shell running inside)."""
    p, pid = start_inside([*opts, image], "exec sleep 60")
    if pid is None:
        r = finish(p)
        raise AssertionError(f"helper did not start a shell in {image}: {describe(r)}")
    try:
        root = f"/proc/{pid}/root"
        out = {}
        for dirpath, dirnames, filenames in os.walk(root + under):
            for n in [""] + dirnames + filenames:
                path = os.path.join(dirpath, n) if n else dirpath
                if not n and dirpath != root + under:
                    continue
                x = _xattrs_of(path)
                if x:
                    out[path[len(root):]] = x
        return out
    finally:
        os.kill(pid, signal.SIGKILL)
        finish(p)


# ---------------------------------------------------------------- cache directories

def cache_layers(cache):
    """The layer directories in the cache: {hex: path}."""
    d = os.path.join(cache, "sha256")
    try:
        return {n: os.path.join(d, n) for n in os.listdir(d)}
    except FileNotFoundError:
        return {}


def cache_tmp(cache):
    try:
        return sorted(os.listdir(os.path.join(cache, "tmp")))
    except FileNotFoundError:
        return []


def diff_ids(info):
    """hex diffIDs, bottom to top, from an image inspect."""
    return [l.split(":", 1)[1] for l in info["RootFS"]["Layers"]]


def layer_stat(path):
    st = os.lstat(path)
    return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns)


def remove_tree(path):
    """Removes a cache or scratch tree: pins (nsfs) under it are released first; never
    deletes across any other mount."""
    if not os.path.lexists(path):
        return
    for m in udlib.host_mounts():
        if m.mountpoint == path or m.mountpoint.startswith(path + "/"):
            if m.fstype == "nsfs":
                subprocess.run(["umount", m.mountpoint], capture_output=True)
            else:
                raise AssertionError(f"not removing {path}: {m.mountpoint} is mounted under it")
    shutil.rmtree(path)


def wait_for(pred, timeout, interval=0.002):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    return pred()
