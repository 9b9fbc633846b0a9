"""The image is a boundary: attacks from a hostile image against real uWSGI and dockerd.

Each test builds the hostile image it needs, runs the attack through the plugin, and asserts what
the app really sees (or that the host was not touched). Each of them succeeded against the plugin
of 0.1 (the commit before these fixes); see the resolving note of the security issue.
"""
import array
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

import udlib
from plugin_support import (HELPER, NOBODY, NOGROUP, PREFIX, Harness, all_pids, form1_options,
                            form2_options, free_port, get_json, plug_images, wait_for)

assert plug_images  # a fixture, used by name

FORMS = ["form1", "form2"]
OPTIONS = {"form1": form1_options, "form2": form2_options}

# What the app of these tests reports: ids and groups, its own pid, the pids it can see, and
# what it can reach of another process (?probe=PID) through /proc.
SECAPP = r'''
import json
import os
import socket
from urllib.parse import parse_qs


def _try(fn):
    try:
        r = fn()
        return "ok:" + (r if isinstance(r, str) else repr(r))
    except OSError as e:
        return "ERR:" + type(e).__name__


def application(environ, start_response):
    q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    info = {
        "uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()),
        "pid": os.getpid(),
        "procs": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "environ": dict(os.environ),
    }
    if "abstract" in q:
        def connect():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect("\0" + q["abstract"])
                return s.recv(64).decode()
            finally:
                s.close()
        info["abstract"] = _try(connect)
    with open("/proc/self/status") as f:
        info["status"] = dict(l.rstrip("\n").split(":\t", 1) for l in f if ":\t" in l)
    info["keys"] = _try(lambda: open("/proc/keys").read()[:20])
    if "probe" in q:
        pid = int(q["probe"])
        canary = q.get("canary", "canary")
        info["probe"] = {
            "cwd": _try(lambda: open(f"/proc/{pid}/cwd/{canary}").read()),
            "root": _try(lambda: sorted(os.listdir(f"/proc/{pid}/root/"))[:5]),
            "environ": _try(lambda: open(f"/proc/{pid}/environ").read()[:50]),
            "cmdline": _try(lambda: open(f"/proc/{pid}/cmdline").read()),
            "kill": _try(lambda: os.kill(pid, 0)),
        }
    body = json.dumps(info).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''

# An /etc/group that puts nobody in root, shadow and docker.
HOSTILE_GROUP = "root:x:0:nobody\nshadow:x:42:nobody\ndocker:x:105:nobody\nnogroup:x:65534:\n"


@pytest.fixture
def plug(scratch, plug_images):
    h = Harness(scratch, plug_images)
    yield h
    h.cleanup()


def _build(plug, name, dockerfile, files=None):
    ctx = plug.path(name)
    os.mkdir(ctx)
    for rel, text in (files or {}).items():
        p = os.path.join(ctx, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write(dockerfile)
    tag = f"{PREFIX}{name}-{os.getpid()}:latest"
    plug.images.extra_tags.append(tag)
    udlib.docker("build", "-q", "--network", "none", "-t", tag, ctx,
                 env=dict(os.environ, DOCKER_BUILDKIT="0"))
    return tag


def _secapp_image(plug):
    return _build(plug, "secapp",
                  f"FROM {plug.images.v1}\nCOPY secapp.py /srv/secapp.py\nCOPY group /etc/group\n",
                  {"secapp.py": SECAPP, "group": HOSTILE_GROUP})


def _options(form, plug, port, image):
    return [(k, image if k == "docker-image" else ("/srv/secapp.py" if k == "wsgi-file" else v))
            for k, v in OPTIONS[form](plug.workdir, port, image)
            if not (form == "form2" and k == "exec-as-root")] + \
        ([("exec-as-root", f"{HELPER} {image}")] if form == "form2" else [])


def _host_groups_of_nobody():
    return sorted(set(os.getgrouplist("nobody", NOGROUP)))


# ---------------------------------------------------------------- finding 2: groups

@pytest.mark.parametrize("form", FORMS)
def test_groups_come_from_the_host_not_the_image(plug, form):
    """The image's /etc/group lists nobody in root, shadow and docker: uWSGI's initgroups()
    inside the image gave the workers groups 0, 42 and 105. They must get the host's."""
    image = _secapp_image(plug)
    port = free_port()
    u = plug.start(_options(form, plug, port, image), name=form)
    d = u.wait_ready(port)
    assert (d["uid"], d["gid"]) == (NOBODY, NOGROUP)
    assert d["groups"] == _host_groups_of_nobody(), d["groups"]
    for g in (0, 42, 105):
        assert g not in d["groups"]
    plug.stop_and_check(u, lazy=(form == "form1"))


# ---------------------------------------------------------------- finding 3: the PID namespace

@pytest.fixture
def host_victim(scratch):
    """A dumpable host process with the workers' uid (as an nginx worker would be), its cwd a
    host directory with a canary in it."""
    d = os.path.join(scratch, "victim-cwd")
    os.mkdir(d)
    os.chmod(d, 0o755)
    with open(os.path.join(d, "canary"), "w") as f:
        f.write("host-secret\n")
    p = subprocess.Popen(["setpriv", f"--reuid={NOBODY}", f"--regid={NOGROUP}", "--clear-groups",
                          "sleep", "600"], cwd=d, stdin=subprocess.DEVNULL)
    try:
        time.sleep(0.2)
        yield p.pid
    finally:
        p.kill()
        p.wait(timeout=10)


@pytest.mark.parametrize("form", FORMS)
def test_workers_cannot_reach_host_processes(plug, host_victim, form):
    """In the host's PID namespace a worker opened /proc/<pid>/cwd and root of a same-uid host
    process (the host's files), read its environ and cmdline, and could signal it."""
    image = _secapp_image(plug)
    port = free_port()
    u = plug.start(_options(form, plug, port, image), name=form)
    u.wait_ready(port)
    d = get_json(port, f"/?probe={host_victim}")
    probe = d["probe"]
    for what in ("cwd", "root", "environ", "cmdline", "kill"):
        assert probe[what].startswith("ERR:"), (what, probe)
    # it sees its own instance only: a handful of small pids, none of the host's
    assert host_victim not in d["procs"]
    assert len(d["procs"]) <= 8, d["procs"]
    assert d["pid"] in d["procs"] and d["pid"] < 100
    host_pids = set(all_pids())
    assert len(host_pids) > len(d["procs"])
    plug.stop_and_check(u, lazy=(form == "form1"))


def test_form1_gateways_and_master_stay_out_of_the_workers_pid_namespace(plug):
    """Only workers go in: the http router (a gateway forked by the master, on the host's
    filesystem, with the workers' uid) must not be visible to them."""
    image = _secapp_image(plug)
    port, router_port = free_port(), free_port()
    opts = _options("form1", plug, port, image) + [
        ("plugin", "http"), ("http", f"127.0.0.1:{router_port}"),
        ("http-to", plug.path("app.sock"))]
    u = plug.start(opts, name="form1")
    u.wait_ready(port)
    u.wait_ready(router_port)
    d = get_json(port)
    # init, the two workers, maybe a subprocess: nothing else; the router is not there
    visible = set(d["procs"])
    assert len(visible) == 3, visible
    for p in u.pids():
        with open(f"/proc/{p}/status") as f:
            nspid = [line.split()[1:] for line in f if line.startswith("NSpid:")][0]
        if len(nspid) == 1:  # in the host's PID namespace: master, router
            assert p not in visible
    plug.stop_and_check(u)


# ---------------------------------------------------------------- finding 1: Env and the master

def test_image_home_cannot_run_code_as_root_on_the_host(plug, scratch):
    """The image's Env set HOME to its own layer in the cache (a predictable path): Python's
    site module, starting in the form 1 master (root, on the host), ran the .pth files of that
    layer's ~/.local. The master never sees the image's Env now; the app still gets HOME."""
    cache = f"/run/udtest-cache-{os.getpid()}"
    marker = os.path.join(scratch, "pwned")
    os.mkdir(cache, 0o700)
    try:
        pth = f"import os; open({marker!r}, 'w').write(str(os.getuid()))\n"
        site = "home/evil/.local/lib/python3.11/site-packages"
        base = _build(plug, "evilhome-layer", f"FROM {plug.images.v1}\nCOPY home /home\n",
                      {f"{site}/evil.pth": pth})
        diff_id = udlib.inspect(base)["RootFS"]["Layers"][-1]
        home = f"{cache}/sha256/{diff_id.split(':')[1]}/home/evil"
        image = _build(plug, "evilhome", f"FROM {base}\nENV HOME={home}\n")
        port = free_port()
        opts = form1_options(plug.workdir, port, image) + [
            ("docker-layers", "export"), ("docker-cache-dir", cache)]
        u = plug.start(opts, name="form1")
        d = u.wait_ready(port)
        assert os.path.isdir(os.path.join(cache, "sha256", diff_id.split(":")[1], site))
        assert not os.path.exists(marker), \
            f"the image's .pth ran on the host as uid {open(marker).read()}"
        assert d["environ"].get("HOME") == home, d["environ"].get("HOME")
        plug.stop_and_check(u)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


# ---------------------------------------------------------------- the helper's answer

FAKE_OWN_NS = r'''#!/usr/bin/python3
# Hands back its own (the host's) mount namespace as if it were the image's.
import array, os, socket, struct, sys
fd = int(os.environ["UWSGI_DOCKER_FD"])
s = socket.socket(fileno=fd)
payload = b"image=fake\0id=sha256:" + b"0" * 64 + b"\0layers=1\0workdir=/\0"
hdr = b"UDNS" + struct.pack("<HHII", 1, 1, len(payload), 0) + struct.pack("<I", 0x00020000)
ns = os.open("/proc/self/ns/mnt", os.O_RDONLY)
s.sendmsg([hdr + payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [ns]))])
'''


def _fake_helper(plug, text):
    d = plug.path("fakebin")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "uwsgi-docker-rootfs")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)
    return path


def _expect_refusal(u, needle, within):
    rc = u.wait_exit(within)
    log = u.log()
    assert rc is not None, f"still running after {within} s:\n{log[-3000:]}"
    assert rc != 0, log
    assert "WSGI app 0" not in log, log
    lines = [l for l in log.splitlines() if l.startswith("[docker] ")
             and not l.startswith(("[docker] the whole instance", "[docker] enabling"))]
    assert len(lines) == 1 and needle in lines[0], lines
    return rc


@pytest.mark.parametrize("form", FORMS)
def test_helper_handing_back_our_own_namespace_is_refused(plug, form):
    fake = _fake_helper(plug, FAKE_OWN_NS)
    port = free_port()
    opts = [(k, v) for k, v in OPTIONS[form](plug.workdir, port, plug.images.v1)
            if k not in ("docker-helper", "exec-as-root")]
    opts += [("docker-helper", fake)] if form == "form1" else [("exec-as-root", fake)]
    u = plug.start(opts, name=form)
    _expect_refusal(u, "own mount namespace", 60)
    plug.stop_and_check(u, expect_rc=None, lazy=False)


FAKE_HANGS = "#!/bin/sh\nexec sleep 1000\n"


@pytest.mark.parametrize("form", FORMS)
def test_a_hanging_helper_is_bounded(plug, form):
    """Form 2's exec-as-root hook had no limit (uWSGI waits forever); form 1 waited up to
    630 s by default. With docker-timeout = 1 and direct layers both end within 4 × 1 + 5 s,
    with one line, and leave no helper behind."""
    fake = _fake_helper(plug, FAKE_HANGS)
    port = free_port()
    opts = [(k, v) for k, v in OPTIONS[form](plug.workdir, port, plug.images.v1)
            if k not in ("docker-helper", "exec-as-root")]
    opts += [("docker-timeout", "1"), ("docker-layers", "direct")]
    opts += [("docker-helper", fake)] if form == "form1" else [("exec-as-root", fake)]
    t0 = time.monotonic()
    u = plug.start(opts, name=form)
    _expect_refusal(u, "time" if form == "form2" else "timed out", 30)
    assert time.monotonic() - t0 < 20
    assert wait_for(lambda: not [p for p in u.pids() if p != u.pid], timeout=5), u.pids()
    plug.stop_and_check(u, expect_rc=None, lazy=False)


# ---------------------------------------------------------------- abstract sockets, root inside

@pytest.fixture
def abstract_listener():
    """A root service on the host listening on an abstract unix socket (the host's network
    namespace, which the workers share): it answers every connection with a secret."""
    name = f"udtest-abstract-{os.getpid()}-{os.urandom(3).hex()}"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind("\0" + name)
    srv.listen(8)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                continue
            with c:
                c.sendall(b"host-secret")
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield name
    stop.set()
    t.join(timeout=5)
    srv.close()


@pytest.mark.parametrize("form", FORMS)
def test_workers_cannot_reach_host_abstract_sockets(plug, abstract_listener, form):
    """Mount namespaces do not cover abstract unix sockets: a worker as nobody connected to a
    root service's abstract socket on the host and read its data. Landlock's scoping (Linux
    6.12, this machine's kernel has it) closes that."""
    image = _secapp_image(plug)
    port = free_port()
    u = plug.start(_options(form, plug, port, image), name=form)
    u.wait_ready(port)
    # the listener answers on the host
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect("\0" + abstract_listener)
    assert c.recv(64) == b"host-secret"
    c.close()
    d = get_json(port, f"/?abstract={abstract_listener}")
    assert d["abstract"].startswith("ERR:"), d["abstract"]
    plug.stop_and_check(u, lazy=(form == "form1"))


DOCKER_CAPBND = "00000000a80425fb"


@pytest.mark.parametrize("form", FORMS)
def test_root_inside_gets_what_docker_run_gives(plug, form):
    """docker-allow-root = true: the app runs as root inside, but with Docker's default
    capability set and its masked /proc paths, not every capability of the host's root."""
    image = _secapp_image(plug)
    port = free_port()
    opts = [(k, v) for k, v in _options(form, plug, port, image) if k not in ("uid", "gid")]
    opts += [("docker-allow-root", "true")]
    u = plug.start(opts, name=form)
    d = u.wait_ready(port)
    assert d["uid"] == 0
    st = d["status"]
    assert st["CapBnd"] == DOCKER_CAPBND, st["CapBnd"]
    assert st["CapEff"] == DOCKER_CAPBND, st["CapEff"]
    assert st["NoNewPrivs"] == "1"
    assert d["keys"] == "ok:" or d["keys"].startswith("ERR:"), d["keys"]
    plug.stop_and_check(u, lazy=(form == "form1"))
