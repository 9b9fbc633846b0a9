"""Rollouts (form 1): a chain reload resolves the image again and moves the workers onto it one at
a time, the first one a canary; a broken image never takes traffic. Real uWSGI, real dockerd.

Every test runs a request loop through the rollout and asserts what the clients saw: no failed
request, the answers' image and Env, the longest gap between two answers; then what is left:
the master's fds and the live mount namespaces where they were, the host as it was.
"""
import os
import signal
import time

import pytest

import debian_image
import udlib
from plugin_support import (INIT_COMM, PREFIX, TEST_MNT_NS, Harness, RequestLoop, all_pids, form1_options,
                            free_port, get_json, ns_of, plug_images, wait_for, write_ini, _build)

assert plug_images  # a fixture, used by name

WORKERS = 4


@pytest.fixture
def plug(scratch, plug_images):
    h = Harness(scratch, plug_images)
    yield h
    h.cleanup()


@pytest.fixture(scope="module")
def broken_images(plug_images, session_dir):
    """Images built on v1 that cannot serve: the app has a syntax error; the image has no Python
    runtime (the app's imports fail)."""
    out = {"syntax": PREFIX + "broken:syntax", "noruntime": PREFIX + "broken:noruntime"}
    steps = {"syntax": "RUN echo 'def broken(:' >> /srv/app.py",
             "noruntime": "RUN rm -rf /usr/lib/python3.11"}
    ctx = os.path.join(session_dir, "broken-images")
    os.makedirs(ctx, exist_ok=True)
    for kind, tag in out.items():
        df = os.path.join(ctx, f"Dockerfile.{kind}")
        with open(df, "w") as f:
            f.write(f"FROM {plug_images.v1}\n{steps[kind]}\n")
        _build(tag, ctx, df)
    yield out
    for tag in out.values():
        udlib.docker("rmi", "-f", tag, check=False)


@pytest.fixture(scope="module")
def flask_images(docker_ready, session_dir):
    """A real Debian 12 root (mmdebstrap, cached by tag between runs) with Debian's python3-flask
    and a Flask app; v1 and v2 differ as the busybox images do (version, Env)."""
    base = debian_image.debian_flask_base(session_dir)
    tags = {"v1": PREFIX + "flask:v1", "v2": PREFIX + "flask:v2", "syntax": PREFIX + "flask:syntax"}
    envs = {"v1": {"GREETING": "hello-v1", "UDPLUG_ONLY_V1": "present-in-v1"},
            "v2": {"GREETING": "hello-v2"}}
    debian_image.flask_app_image(base, tags["v1"], "v1", envs["v1"], session_dir=session_dir)
    debian_image.flask_app_image(base, tags["v2"], "v2", envs["v2"], session_dir=session_dir)
    debian_image.flask_app_image(base, tags["syntax"], "v3", envs["v2"], broken="syntax",
                                 session_dir=session_dir)
    yield tags
    for tag in tags.values():
        udlib.docker("rmi", "-f", tag, check=False)


@pytest.fixture(params=["busybox", "debian-flask"])
def flavour(request, plug_images):
    """The images a rollout goes between: v1, v2 and a broken one (syntax error in the app)."""
    if request.param == "busybox":
        broken = request.getfixturevalue("broken_images")
        return {"v1": plug_images.v1, "v2": plug_images.v2, "syntax": broken["syntax"]}
    return request.getfixturevalue("flask_images")


def _touch(path, mtime=None):
    with open(path, "a"):
        pass
    t = time.time() if mtime is None else mtime
    os.utime(path, (t, t))


def _options(plug, port, image, workers=WORKERS):
    opts = [(k, v) for k, v in form1_options(plug.workdir, port, image) if k != "processes"]
    chain = plug.path("chain")
    _touch(chain, time.time() - 100)
    for name in ("reload", "workers-reload"):
        _touch(plug.path(name), time.time() - 100)
    return opts + [("processes", str(workers)), ("touch-chain-reload", chain),
                   ("master-fifo", plug.path("fifo")), ("docker-canary-timeout", "20")]


class Chain:
    """Asks an instance for chain reloads, each by the touch file or the master FIFO."""

    def __init__(self, plug, u):
        self.plug, self.u, self.n = plug, u, 0

    def request(self, via="touch"):
        self.n += 1
        if via == "fifo":
            with open(self.plug.path("fifo"), "w") as f:
                f.write("c")
        else:  # uWSGI compares whole seconds: a distinct mtime each time
            _touch(self.plug.path("chain"), time.time() + 10 * self.n)

    def wait(self, what, count, timeout=60):
        ok = wait_for(lambda: self.u.log().count(what) >= count, timeout=timeout)
        assert ok, f"{what!r} did not appear {count} times:\n{self.u.tail()}"


def _live_mnt_namespaces(u=None):
    """Mount namespaces some process is in, and those only fds hold (the master's): of the
    instance u's processes only, when given (other tests may run on the machine)."""
    out = set()
    for p in (u.pids() if u else all_pids()):
        out.add(ns_of(p))
        try:
            for fd in os.listdir(f"/proc/{p}/fd"):
                t = os.readlink(f"/proc/{p}/fd/{fd}")
                if t.startswith("mnt:["):
                    out.add(t)
        except OSError:
            pass
    out.discard(None)
    return out


def _fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def _gaps(loop):
    with loop.lock:
        times = [t for t, _ in loop.results]
    return max((b - a for a, b in zip(times, times[1:])), default=0.0)


def _assert_no_failures(loop, u):
    assert loop.failures == [], \
        f"{len(loop.failures)} failed requests, first: {loop.failures[:5]}\n{u.tail()}"


def _docker_lines(log, text):
    return [line for line in log.splitlines() if line.startswith("[docker] ") and text in line]


def test_rollout_moves_every_worker_onto_the_new_image_without_a_pause(plug, plug_images,
                                                                      flavour):
    tag = PREFIX + "roll:live"
    plug_images.extra_tags.append(tag)
    udlib.docker("tag", flavour["v1"], tag)
    port = free_port()
    u = plug.start(_options(plug, port, tag), name="roll")
    d = u.wait_ready(port)
    assert d["version"] == "v1" and d["environ"].get("UDPLUG_ONLY_V1") == "present-in-v1"
    old_ns = d["mnt_ns"]
    chain = Chain(plug, u)
    loop = RequestLoop(port, max_seconds=90)
    loop.start()
    try:
        assert wait_for(lambda: len(loop.versions()) >= 20, timeout=20), "request loop stalled"
        udlib.docker("tag", flavour["v2"], tag)
        chain.request()
        chain.wait("[docker] rolled out image", 1)
        done = len(loop.versions())
        wait_for(lambda: len(loop.versions()) >= done + 50, timeout=20)
    finally:
        loop.finish()
    _assert_no_failures(loop, u)
    versions = loop.versions()
    # every worker the chain took came back on v2: nothing answers from v1 once it is over
    # (one answer may have been in flight when the log line was read)
    assert set(versions[done + 1:]) == {"v2"}, "v1 still answered after the rollout"
    gap = _gaps(loop)
    print(f"rollout: {len(versions)} answers, longest gap {gap * 1000:.0f} ms")
    assert gap < 0.5, f"longest gap between answers {gap:.3f} s: a rollout must not pause"
    for _ in range(3 * WORKERS):
        d = get_json(port)
        assert d["version"] == "v2" and d["environ"].get("GREETING") == "hello-v2"
        assert "UDPLUG_ONLY_V1" not in d["environ"], "an Env key v2 dropped survived the rollout"
        assert d["environ"].get("UWSGI_RELOADS") == "0", "a rollout must not re-exec the master"
        assert d["mnt_ns"] != old_ns
    assert ns_of(u.pid) == TEST_MNT_NS
    assert old_ns not in _live_mnt_namespaces(u), "the old image's namespace outlived the rollout"
    plug.stop_and_check(u)


@pytest.mark.parametrize("kind", ["syntax", "noruntime", "tag-removed", "flask-syntax"])
def test_broken_image_never_takes_traffic_and_a_good_one_rolls_out_after(plug, plug_images,
                                                                         broken_images, kind,
                                                                         request):
    images = {"v1": plug_images.v1, "v2": plug_images.v2, **broken_images}
    if kind.startswith("flask-"):
        images = request.getfixturevalue("flask_images")
        kind = kind[len("flask-"):]
    tag = PREFIX + "canary:live"
    plug_images.extra_tags.append(tag)
    udlib.docker("tag", images["v1"], tag)
    port = free_port()
    u = plug.start(_options(plug, port, tag), name="canary")
    d = u.wait_ready(port)
    serving_ns = d["mnt_ns"]
    chain = Chain(plug, u)
    loop = RequestLoop(port, max_seconds=120)
    loop.start()
    try:
        assert wait_for(lambda: len(loop.versions()) >= 20, timeout=20), "request loop stalled"
        if kind == "tag-removed":
            udlib.docker("rmi", tag)
        else:
            udlib.docker("tag", images[kind], tag)
        chain.request("fifo" if kind == "syntax" else "touch")
        chain.wait("[docker] rollout of image", 1)
        n = len(loop.versions())
        assert wait_for(lambda: len(loop.versions()) >= n + 50, timeout=20)
        log = u.log()
        stopped = _docker_lines(log, "rollout of image")
        assert len(stopped) == 1 and "stopped" in stopped[0], stopped
        assert "need-app" not in log and "goodbye to uWSGI" not in log, log[-3000:]
        assert {v for v in loop.versions()} == {"v1"}
        # every worker still serves the image it had
        for _ in range(3 * WORKERS):
            assert get_json(port)["mnt_ns"] == serving_ns
        udlib.docker("tag", images["v2"], tag)
        chain.request()
        chain.wait("[docker] rolled out image", 1)
        n = len(loop.versions())
        wait_for(lambda: len(loop.versions()) >= n + 50, timeout=20)
    finally:
        loop.finish()
    _assert_no_failures(loop, u)
    assert loop.versions()[-1] == "v2"
    print(f"{kind}: {stopped[0]}")
    plug.stop_and_check(u)


def test_twenty_rollouts_leave_fds_and_namespaces_flat(plug, plug_images):
    tag = PREFIX + "twenty:live"
    plug_images.extra_tags.append(tag)
    udlib.docker("tag", plug_images.v1, tag)
    port = free_port()
    # 2 workers: uWSGI's chain takes about a second per worker (its master's cycle)
    u = plug.start(_options(plug, port, tag, workers=2), name="twenty")
    u.wait_ready(port)
    chain = Chain(plug, u)
    # one rollout first: the master's fds after a rollout are the baseline
    chain.request()
    chain.wait("[docker] rolled out image", 1)
    fds, nss = _fd_count(u.pid), len(_live_mnt_namespaces(u))
    loop = RequestLoop(port, max_seconds=300)
    loop.start()
    try:
        for i in range(20):
            udlib.docker("tag", plug_images.v2 if i % 2 == 0 else plug_images.v1, tag)
            chain.request("fifo" if i % 2 else "touch")
            chain.wait("[docker] rolled out image", i + 2)
    finally:
        loop.finish()
    _assert_no_failures(loop, u)
    time.sleep(1)
    assert _fd_count(u.pid) == fds, f"master fds {fds} -> {_fd_count(u.pid)}: " \
                                    f"{sorted(os.listdir(f'/proc/{u.pid}/fd'))}"
    assert len(_live_mnt_namespaces(u)) == nss, "mount namespaces accumulated over 20 rollouts"
    # the helper's exit status is ours: uWSGI's master never reaped it as a stray child
    assert "subprocess" not in u.log(), [l for l in u.log().splitlines() if "subprocess" in l]
    assert {get_json(port)["version"] for _ in range(4)} == {"v1"}
    plug.stop_and_check(u)


def test_a_workers_reload_keeps_the_image_a_chain_reload_changes(plug, plug_images):
    tag = PREFIX + "keep:live"
    plug_images.extra_tags.append(tag)
    udlib.docker("tag", plug_images.v1, tag)
    port = free_port()
    u = plug.start(_options(plug, port, tag), name="keep")
    u.wait_ready(port)
    udlib.docker("tag", plug_images.v2, tag)
    _touch(plug.path("workers-reload"))
    assert wait_for(lambda: u.log().count("Respawned uWSGI worker") >= WORKERS, timeout=30)
    time.sleep(1)
    assert {get_json(port)["version"] for _ in range(2 * WORKERS)} == {"v1"}
    Chain(plug, u).request()
    Chain(plug, u).wait("[docker] rolled out image", 1)
    assert {get_json(port)["version"] for _ in range(2 * WORKERS)} == {"v2"}
    plug.stop_and_check(u)


def test_an_app_that_does_not_load_stops_uwsgi_at_start(plug, broken_images):
    port = free_port()
    u = plug.start(_options(plug, port, broken_images["syntax"]), name="needapp")
    rc = u.wait_exit(60)
    log = u.log()
    assert rc == 22, f"exit status {rc}:\n{log[-3000:]}"
    lines = _docker_lines(log, "did not load")
    assert len(lines) == 1 and "need-app" in lines[0], log[-3000:]
    plug.stop_and_check(u, expect_rc=None, lazy=False)


def test_soak_full_reloads_and_rollouts_under_four_clients(plug, plug_images):
    """The short version of make bench's soak: full reloads and rollouts, alternating images,
    four clients on fresh connections all along; not one failed request."""
    tag = PREFIX + "soak:live"
    plug_images.extra_tags.append(tag)
    udlib.docker("tag", plug_images.v1, tag)
    port = free_port()
    u = plug.start(_options(plug, port, tag), name="soak")
    u.wait_ready(port)
    chain = Chain(plug, u)
    loops = [RequestLoop(port, max_seconds=240) for _ in range(4)]
    for loop in loops:
        loop.start()
    try:
        for i in range(4):
            udlib.docker("tag", plug_images.v2 if i % 2 == 0 else plug_images.v1, tag)
            if i % 2:
                chain.request()
                chain.wait("[docker] rolled out image", (i + 1) // 2)
            else:
                before = u.log().count("[docker] image ")
                _touch(plug.path("reload"), time.time() + 10 * (i + 1))
                # the new master's helper logs its image line once the workers may go
                assert wait_for(lambda: u.log().count("[docker] image ") > before, timeout=60)
            want = "v2" if i % 2 == 0 else "v1"
            assert wait_for(lambda: get_json(port)["version"] == want, timeout=30)
            time.sleep(1)
    finally:
        for loop in loops:
            loop.finish()
    answered = sum(len(loop.versions()) for loop in loops)
    failures = [f for loop in loops for f in loop.failures]
    print(f"soak: {answered} answers, {len(failures)} failures")
    assert failures == [], f"{len(failures)} of {answered + len(failures)} requests failed, " \
                           f"first: {failures[:5]}\n{u.tail()}"
    plug.stop_and_check(u)


@pytest.mark.parametrize("how", ["tag-removed", "helper-killed"])
def test_a_full_reload_that_cannot_resolve_keeps_serving_the_previous_image(plug, plug_images,
                                                                           how):
    """A reload never makes things worse: the tag is gone at a full reload, the re-executed master
    serves the namespace it was handed (in the PID namespace its /proc belongs to), logs one
    line, and the next reload with a tag picks up the new image."""
    tag = PREFIX + "keepserving:live"
    plug_images.extra_tags.append(tag)
    udlib.docker("tag", plug_images.v1, tag)
    port = free_port()
    opts = _options(plug, port, tag)
    u = plug.start(opts, name="keepserving")
    d = u.wait_ready(port)
    serving_ns = d["mnt_ns"]
    killer = plug.path("killed-helper.sh")
    with open(killer, "w") as f:
        f.write("#!/bin/sh\nkill -9 $$\n")
    os.chmod(killer, 0o755)
    ini = plug.path("keepserving.ini")
    loop = RequestLoop(port, max_seconds=120)
    loop.start()
    try:
        assert wait_for(lambda: len(loop.versions()) >= 20, timeout=20), "request loop stalled"
        if how == "tag-removed":
            udlib.docker("rmi", tag)
        else:  # a full reload reads the ini again
            write_ini(ini, [(k, killer if k == "docker-helper" else v) for k, v in opts])
        _touch(plug.path("reload"), time.time() + 10)
        assert wait_for(lambda: _docker_lines(u.log(), "keep serving"), timeout=60), \
            u.tail()
        assert wait_for(lambda: get_json(port)["environ"].get("UWSGI_RELOADS") == "1",
                        timeout=30), u.tail()
        n = len(loop.versions())
        assert wait_for(lambda: len(loop.versions()) >= n + 50, timeout=20)
        d = get_json(port)
        assert d["version"] == "v1" and d["mnt_ns"] == serving_ns
        assert os.path.isdir("/proc/self") and d["pid"] < 100, "the workers' /proc is not theirs"
        lines = _docker_lines(u.log(), "keep serving")
        assert len(lines) == 1, lines
        # a removed tag is pulled (docker-pull's default is missing) and not found anywhere
        why = ("not found", "pull of") if how == "tag-removed" else ("killed by signal 9",)
        assert any(w in lines[0] for w in why), lines
        write_ini(ini, opts)
        udlib.docker("tag", plug_images.v2, tag)
        _touch(plug.path("reload"), time.time() + 20)
        assert wait_for(lambda: get_json(port)["version"] == "v2", timeout=60), u.tail()
        n = len(loop.versions())
        assert wait_for(lambda: len(loop.versions()) >= n + 20, timeout=20)
    finally:
        loop.finish()
    _assert_no_failures(loop, u)
    inits = [p for p in all_pids() if ns_of(p) and _is_init_of(p, u.pid)]
    assert len(inits) == 1, f"PID namespace inits of this instance: {inits}"
    plug.stop_and_check(u)


def _is_init_of(pid, master):
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/comm") as f:
            name = f.read().strip()
    except OSError:
        return False
    return int(rest[1]) == master and name == INIT_COMM and rest[0] != "Z"
