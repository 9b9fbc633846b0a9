"""The connection reset across reloads, made deterministic.

uWSGI 2.0's worker SIGHUP handler exits at once when no request is marked in progress, and a
request is marked only after accept() returned. A SIGHUP in between ends the worker with an
accepted, unread connection: the kernel resets it. The window is a few syscalls wide, so under
load it shows up about once in tens of thousands of requests across reloads. Here strace holds
the worker right after accept4() returns (syscall fault injection, delay_exit) while the test
sends the SIGHUP: plain uWSGI resets the client every time; form 1's handler lets the worker
serve the request it accepted, then end.
"""
import http.client
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest

from plugin_support import (INIT_COMM, Harness, base_options, comm, form1_options, free_port, http_get,
                            plug_images, wait_for)

assert plug_images  # a fixture, used by name

HOST_APP = '''
def application(environ, start_response):
    body = b"served"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "6")])
    return [body]
'''


@pytest.fixture
def plug(scratch, plug_images):
    h = Harness(scratch, plug_images)
    yield h
    h.cleanup()


def _one_worker(u):
    def find():
        out = []
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                with open(f"/proc/{p}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
            if ppid == u.pid and comm(int(p)) not in (INIT_COMM, "uwsgi-docker-ro"):
                out.append(int(p))
        return out[0] if len(out) == 1 else None
    return wait_for(find, timeout=20)


def _idle_in_epoll(pid):
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return f.read() in ("do_epoll_wait", "ep_poll")
    except OSError:
        return False


def _answers(port):
    try:
        return http_get(port, timeout=2)[0] == 200
    except OSError:
        return False


def _request(port, out):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        c.request("GET", "/")
        r = c.getresponse()
        out.append((r.status, r.read()))
    except Exception as e:  # the outcome under test
        out.append(e)
    finally:
        c.close()


def _sighup_right_after_accept(u, port, workdir):
    """One request whose accept4() strace holds for a second; SIGHUP to the worker meanwhile."""
    worker = _one_worker(u)
    assert worker, f"no single worker:\n{u.log()[-2000:]}"
    assert wait_for(lambda: _idle_in_epoll(worker), timeout=20)
    trace = os.path.join(workdir, "strace.out")
    st = subprocess.Popen(["strace", "-p", str(worker), "-o", trace, "-e", "trace=accept4",
                           "-e", "inject=accept4:delay_exit=1000000"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # strace stops and restarts the tracee when it attaches: wait for it to sleep again
        time.sleep(0.5)
        assert wait_for(lambda: _idle_in_epoll(worker), timeout=10)
        out = []
        t = threading.Thread(target=_request, args=(port, out))
        t.start()
        assert wait_for(lambda: "accept4(" in open(trace).read(), timeout=10, interval=0.02), \
            "the worker never accepted the connection"
        os.kill(worker, signal.SIGHUP)
        t.join(timeout=30)
    finally:
        st.send_signal(signal.SIGINT)
        st.wait(timeout=10)
    return out[0]


def test_sighup_right_after_accept_resets_the_client_under_plain_uwsgi(plug):
    """uWSGI's own behaviour (Debian's 2.0.21, no docker plugin): the cause of the reset."""
    if not shutil.which("strace"):
        pytest.fail("strace is missing (scripts/deps.sh installs it)")
    app = plug.path("host-app.py")
    with open(app, "w") as f:
        f.write(HOST_APP)
    os.chmod(app, 0o644)
    os.chmod(plug.workdir, 0o755)
    port = free_port()
    opts = [(k, "python3" if k == "plugins" else v) for k, v in base_options(plug.workdir, port)
            if k not in ("processes", "wsgi-file", "plugin-dir", "socket")]
    u = plug.start(opts + [("processes", "1"), ("wsgi-file", app), ("lazy-apps", "true")],
                   name="plain")
    assert wait_for(lambda: _answers(port), timeout=20), u.log()[-2000:]
    outcome = _sighup_right_after_accept(u, port, plug.workdir)
    assert isinstance(outcome, (ConnectionResetError, http.client.RemoteDisconnected)), \
        f"plain uWSGI answered {outcome!r}: its handler no longer races with accept()\n" \
        f"{u.log()[-2000:]}"
    assert "Gracefully killing worker" in u.log()
    plug.stop_and_check(u, lazy=False)


def test_sighup_right_after_accept_is_served_in_form1(plug, plug_images):
    if not shutil.which("strace"):
        pytest.fail("strace is missing (scripts/deps.sh installs it)")
    port = free_port()
    opts = [(k, v) for k, v in form1_options(plug.workdir, port, plug_images.v1)
            if k != "processes"]
    u = plug.start(opts + [("processes", "1")], name="form1")
    u.wait_ready(port)
    outcome = _sighup_right_after_accept(u, port, plug.workdir)
    assert isinstance(outcome, tuple) and outcome[0] == 200, \
        f"the request accepted before SIGHUP was not served: {outcome!r}\n{u.log()[-2000:]}"
    # and the worker did go: the master respawned it
    assert wait_for(lambda: "Respawned uWSGI worker 1" in u.log(), timeout=20), u.log()[-2000:]
    plug.stop_and_check(u)
