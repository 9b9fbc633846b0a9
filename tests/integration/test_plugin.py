"""End to end: the uWSGI `docker` plugin with the real Debian uWSGI (python3 plugin) and dockerd.

The app inside the test image (plugin_support.APP) reports what it sees; every assertion is about
what the app really sees, or about the host after the instance stopped: no process of the test
left (in any namespace), the host mount table as before (points and types; the autouse fixture of
conftest.py checks it more strictly as well), the image's layer directories untouched.

Form 1: `docker-image = IMAGE` (master on the host, workers in the image).
Form 2: `exec-as-root = uwsgi-docker-rootfs IMAGE` (the whole instance enters).
"""
import json
import os
import signal
import socket
import stat
import time

import pytest

import udlib
from plugin_support import (HELPER, NOBODY, NOGROUP, PREFIX, TEST_MNT_NS, Harness, RequestLoop,
                            INIT_COMM, all_pids, cmdline, comm, form1_options, inner_pid, form2_options, free_port,
                            get_json, mounts_of_type, ns_fds, ns_of, parse_http,
                            plug_images, uwsgi_request, wait_for)

assert plug_images  # a fixture, used by name

FORMS = ["form1", "form2"]
OPTIONS = {"form1": form1_options, "form2": form2_options}
SPECIALS = {"proc", "dev", "sys"}


@pytest.fixture
def plug(scratch, plug_images):
    h = Harness(scratch, plug_images)
    yield h
    h.cleanup()


def _touch(path, mtime=None):
    """Creates or touches path; an explicit mtime (uWSGI compares whole seconds)."""
    with open(path, "a"):
        pass
    t = time.time() if mtime is None else mtime
    os.utime(path, (t, t))


def _workers(u):
    """Live worker pids of a plain (non-Emperor) instance: its master's children that are
    uWSGI processes (the helper, while it runs, is a child too, and so is the init of the
    workers' PID namespace)."""
    out = []
    for p in u.pids():
        try:
            with open(f"/proc/{p}/stat") as f:
                s = f.read()
            rest = s[s.rindex(")") + 2:].split()
        except OSError:
            continue
        if int(rest[1]) == u.pid and rest[0] != "Z" and "uwsgi" in cmdline(p) \
                and "uwsgi-docker-rootfs" not in cmdline(p) and comm(p) != INIT_COMM:
            out.append(p)
    return sorted(out)


def _docker_lines(log):
    return [l for l in log.splitlines() if l.startswith("[docker] ")]


# Lines the plugin logs on every successful start of each form (not failure reports).
INFO_LINES = ("[docker] enabling master-as-root and lazy-apps",
              "[docker] image ",
              "[docker] the whole instance enters the image",
              "[docker] entered image ")


def _failure_lines(log):
    return [l for l in _docker_lines(log) if not l.startswith(INFO_LINES)]


# ---------------------------------------------------------------- both forms: what the app sees

@pytest.mark.parametrize("form", FORMS)
def test_serves_from_the_image(plug, plug_images, form):
    img = plug_images.v1
    info = plug_images.info[img]
    layers_before = udlib.layers_snapshot(info)
    marker = plug.path("host-marker")
    _touch(marker)
    port = free_port()
    u = plug.start(OPTIONS[form](plug.workdir, port, img), name=form)
    u.wait_ready(port)
    d = get_json(port, f"/?marker={marker}&write=/srv/written")

    # files only in the image, the whiteout applied
    assert d["version"] == "v1"
    assert d["only_in_image"] == "image-only-content"
    assert not os.path.exists("/srv/only-in-image")
    assert d["gone_exists"] is False, "/srv/gone was deleted by a later layer (whiteout)"
    # the image's root, nothing of the host's
    expected_root = udlib.image_top_level(info) | SPECIALS
    assert set(d["root_listing"]) == expected_root, d["root_listing"]
    assert " - overlay " in d["root_mount"], d["root_mount"]
    assert d["marker_exists"] is False, f"host file {marker} is visible inside"
    assert os.path.exists(marker)
    assert d["mnt_ns"] != TEST_MNT_NS
    # image Env (and the default PATH of the image config), uid/gid, WorkingDir
    for k, v in plug_images.env[img].items():
        assert d["environ"].get(k) == v, (k, d["environ"])
    assert (d["uid"], d["euid"], d["gid"], d["egid"]) == (NOBODY, NOBODY, NOGROUP, NOGROUP)
    assert d["cwd"] == info["Config"]["WorkingDir"] == "/srv"
    # the rw layer takes writes
    assert d["write"] == "ok:written from inside", d["write"]

    # where the processes are: form 1 keeps the master on the host, form 2 moves it in
    master_ns = ns_of(u.pid)
    if form == "form1":
        assert master_ns == TEST_MNT_NS, "form 1: the master must stay on the host"
        workers = _workers(u)
        assert len(workers) == 2, workers
        assert {ns_of(w) for w in workers} == {d["mnt_ns"]}
        assert os.path.exists(plug.path("pid"))
        with open(plug.path("pid")) as f:
            assert int(f.read().strip()) == u.pid
    else:
        assert master_ns == d["mnt_ns"], "form 2: the master enters the image too"

    rc = plug.stop_and_check(u, lazy=(form == "form1"))
    assert rc == 0
    # one log line per entry: image, id, layer count, namespaces
    entry = f"{img} ({info['Id']}), {len(udlib.layer_dirs(info))} layers, namespaces mnt,pid"
    if form == "form1":
        lines = [l for l in _docker_lines(u.log()) if l.startswith("[docker] image ")]
        assert lines == [f"[docker] image {entry} ready for the workers"], lines
    else:
        lines = [l for l in _docker_lines(u.log()) if l.startswith("[docker] entered image ")]
        assert lines == [f"[docker] entered image {entry}"], lines
    # the write never reached the image's layers on the host
    for diff in udlib.layer_dirs(info):
        assert not os.path.lexists(os.path.join(diff, "srv", "written")), diff
    udlib.assert_layers_unchanged(layers_before, udlib.layers_snapshot(info))
    log = u.log()
    assert "WSGI app 0" in log


@pytest.mark.parametrize("form", FORMS)
def test_unix_socket_from_the_ini_on_the_host(plug, plug_images, form):
    port = free_port()
    u = plug.start(OPTIONS[form](plug.workdir, port, plug_images.v1), name=form)
    u.wait_ready(port)
    sock = plug.path("app.sock")
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert (st.st_uid, st.st_gid) == (NOBODY, NOGROUP), (st.st_uid, st.st_gid)
    status_line, body = parse_http(uwsgi_request(sock, "/?marker=/srv/app.py"))
    assert " 200 " in status_line + " ", status_line
    d = json.loads(body)
    assert d["version"] == "v1"
    assert d["uid"] == NOBODY
    assert d["marker_exists"] is True  # an image path, seen from inside
    plug.stop_and_check(u, lazy=(form == "form1"))


# ---------------------------------------------------------------- form 1: reloads

def test_form1_touch_workers_reload(plug, plug_images):
    port = free_port()
    opts = form1_options(plug.workdir, port, plug_images.v1)
    trigger = plug.path("workers-reload")
    _touch(trigger, time.time() - 100)
    _touch(plug.path("reload"), time.time() - 100)
    u = plug.start(opts, name="form1")
    u.wait_ready(port)
    old = _workers(u)
    assert len(old) == 2, old
    old_ns = {ns_of(p) for p in old}
    assert len(old_ns) == 1 and TEST_MNT_NS not in old_ns

    _touch(trigger)
    new = wait_for(lambda: (lambda w: w if len(w) == 2 and not set(w) & set(old) else None)(
        _workers(u)), timeout=30)
    assert new, f"workers were not replaced after touching {trigger}: {old} -> {_workers(u)}\n" \
                f"{u.tail()}"
    # the new workers enter the same namespace (a worker just forked is still in the master's
    # until its post-fork hook) and serve from the image
    entered = wait_for(lambda: {ns_of(p) for p in new} == old_ns, timeout=10)
    assert entered, {p: ns_of(p) for p in new}
    for _ in range(20):
        d = get_json(port)
        assert d["version"] == "v1" and d["uid"] == NOBODY
        assert d["pid"] in {inner_pid(p) for p in new}
    assert ns_of(u.pid) == TEST_MNT_NS
    assert "UWSGI_RELOADS" in d["environ"] and d["environ"]["UWSGI_RELOADS"] == "0", \
        "a workers reload must not re-exec the master"
    plug.stop_and_check(u)


def test_form1_reload_onto_retagged_image_without_failed_requests(plug, plug_images):
    tag = PREFIX + "reload:latest"
    plug_images.extra_tags.append(tag)
    udlib.docker("tag", plug_images.v1, tag)
    overlay_nsfs_before = mounts_of_type({"overlay", "nsfs"})
    port = free_port()
    reload_file = plug.path("reload")
    _touch(reload_file, time.time() - 100)
    _touch(plug.path("workers-reload"), time.time() - 100)
    u = plug.start(form1_options(plug.workdir, port, tag), name="form1")
    d = u.wait_ready(port)
    assert d["version"] == "v1"
    assert d["environ"].get("UDPLUG_ONLY_V1") == "present-in-v1"
    assert d["environ"].get("GREETING") == "hello-v1"
    generations = {d["mnt_ns"]}

    loop = RequestLoop(port, max_seconds=60)
    loop.start()
    try:
        assert wait_for(lambda: len(loop.versions()) >= 20, timeout=20), "request loop stalled"
        udlib.docker("tag", plug_images.v2, tag)
        _touch(reload_file, time.time() + 10)
        switched = wait_for(lambda: "v2" in loop.versions(), timeout=40)
        if switched:
            n = len(loop.versions())
            wait_for(lambda: len(loop.versions()) >= n + 20, timeout=20)
    finally:
        loop.finish()
    versions = loop.versions()
    print(f"request loop: {len(versions)} answers, {len(loop.failures)} failures, "
          f"{versions.count('v1')} from v1, {versions.count('v2')} from v2")
    assert loop.failures == [], \
        f"{len(loop.failures)} failed requests of {len(versions) + len(loop.failures)} " \
        f"during the reload, first: {loop.failures[:5]}\n{u.tail()}"
    assert "v2" in versions, f"answers never switched to v2 ({len(versions)} requests, all " \
                             f"{set(versions)})\n{u.tail()}"
    first_v2 = versions.index("v2")
    assert first_v2 > 0 and set(versions[:first_v2]) == {"v1"}
    assert set(versions[first_v2:]) == {"v2"}, "v1 answered after the reload onto v2"

    d = get_json(port)
    assert d["version"] == "v2"
    assert d["environ"].get("UWSGI_RELOADS") == "1"
    assert d["environ"].get("GREETING") == "hello-v2"
    assert "UDPLUG_ONLY_V1" not in d["environ"], \
        "an Env key of v1 that v2 dropped survived the reload into os.environ"
    generations.add(d["mnt_ns"])

    # five more full reloads (touch-reload, host path)
    for i in range(2, 7):
        _touch(reload_file, time.time() + 10 * i)
        got = wait_for(lambda: _reloads(port) == str(i), timeout=40)
        assert got, f"reload {i} did not happen (UWSGI_RELOADS={_reloads(port)})\n" \
                    f"{u.tail()}"
        generations.add(get_json(port)["mnt_ns"])

    # after them: the master (host), its two workers (one image namespace) and the init of
    # their PID namespace; nothing else (no earlier generation's init)
    def settled():
        w = _workers(u)
        inits = [p for p in u.pids() if comm(p) == INIT_COMM]
        return w if len(w) == 2 and len(inits) == 1 and len(u.pids()) == 4 else None
    workers = wait_for(settled, timeout=20)
    assert workers, f"expected the master and 2 workers, found {[(p, cmdline(p)) for p in u.pids()]}"
    current = ns_of(workers[0])
    namespaces = {ns_of(p) for p in u.pids()}
    assert namespaces == {TEST_MNT_NS, current}, namespaces
    held = ns_fds(u.pid)
    mnt_held = {k: v for k, v in held.items() if k.startswith("mnt:")}
    pid_held = {k: v for k, v in held.items() if k.startswith("pid:")}
    assert mnt_held == {current: 1} and len(pid_held) == 2 and \
        sum(held.values()) == 3, \
        f"the master holds these namespace fds: {dict(held)} (only the current generation's " \
        f"mnt namespace, its own PID namespace and the workers' expected)"
    assert mounts_of_type({"overlay", "nsfs"}) == overlay_nsfs_before
    old = generations - {current}
    in_old = [(p, cmdline(p), ns_of(p)) for p in all_pids() if ns_of(p) in old
              and "uwsgi" in cmdline(p)]
    assert in_old == [], f"processes left in an old generation's namespace: {in_old}"

    u.seen_mnt_ns.update(generations)
    plug.stop_and_check(u)
    # one entry line per start: v1 once, then v2 for each of the six reloads
    ids = {plug_images.info[t]["Id"]: t for t in (plug_images.v1, plug_images.v2)}
    entries = [l for l in _docker_lines(u.log()) if l.startswith("[docker] image ")]
    got = [ids.get(l.split("(", 1)[1].split(")", 1)[0]) for l in entries]
    assert got == [plug_images.v1] + [plug_images.v2] * 6, entries


def _reloads(port):
    """UWSGI_RELOADS as the app reports it, or None while the master re-execs (the connection
    refused, reset or timed out: expected for a moment during a full reload). Anything else (an
    error answer, a body that is not the app's JSON) fails the test."""
    try:
        d = get_json(port, timeout=5)
    except (ConnectionError, TimeoutError, socket.timeout):
        return None
    return d["environ"].get("UWSGI_RELOADS")


# ---------------------------------------------------------------- form 2: a full reload ends it

def test_form2_full_reload_ends_the_instance_cleanly(plug, plug_images):
    port = free_port()
    u = plug.start(form2_options(plug.workdir, port, plug_images.v1), name="form2")
    d = u.wait_ready(port)
    assert d["version"] == "v1"
    # Both workers up: uWSGI 2.0 ignores a SIGHUP that reaches a worker being spawned until
    # its mercy runs out (seen on a loaded machine: worker 2 was never killed gracefully).
    assert wait_for(lambda: len({get_json(port)["pid"] for _ in range(8)}) == 2, timeout=30)
    os.kill(u.pid, signal.SIGHUP)
    rc = u.wait_exit(30)
    log = u.log()
    assert rc is not None, f"form 2 instance still running 30 s after SIGHUP:\n{log[-3000:]}"
    assert rc == 0, f"exit status {rc} after SIGHUP:\n{log[-3000:]}"
    after_hup = log[log.index("gracefully killing workers") if "gracefully killing workers"
                    in log else 0:]
    assert "GAME OVER" in after_hup or any(l.startswith("[docker] ")
                                           for l in after_hup.splitlines()), log[-3000:]
    for bad in ("execvp", "No such file or directory", "chdir()"):
        assert bad not in after_hup, f"{bad!r} after the reload request:\n{after_hup}"
    plug.stop_and_check(u, expect_rc=0)


# ---------------------------------------------------------------- Emperor

def test_emperor_three_vassals_on_two_images_with_clone(plug, plug_images):
    vassal_dir = plug.path("vassals")
    os.mkdir(vassal_dir)
    vassals = {}
    for name, img in (("a", plug_images.v1), ("b", plug_images.v1), ("c", plug_images.v2)):
        port = free_port()
        opts = [(k, v) for k, v in form1_options(plug.workdir, port, img)
                if k not in ("pidfile", "touch-reload", "touch-workers-reload", "socket")]
        opts.append(("socket", plug.path(f"{name}.sock")))
        lines = ["[uwsgi]"] + [f"{k} = {v}" for k, v in opts]
        with open(os.path.join(vassal_dir, f"{name}.ini"), "w") as f:
            f.write("\n".join(lines) + "\n")
        vassals[name] = (port, img)
    u = plug.start_raw(["--emperor", vassal_dir, "--emperor-use-clone", "pid,uts,ipc"],
                       name="emperor")
    seen_ns = {}
    for name, (port, img) in vassals.items():
        d = u.wait_ready(port)
        version = plug_images.env[img]["GREETING"].split("-")[1]
        assert d["version"] == version, (name, d["version"])
        assert d["environ"].get("GREETING") == plug_images.env[img]["GREETING"]
        assert d["uid"] == NOBODY
        assert d["only_in_image"] == "image-only-content"
        assert d["mnt_ns"] != TEST_MNT_NS
        seen_ns[name] = d["mnt_ns"]
        st = os.stat(plug.path(f"{name}.sock"))
        assert (st.st_uid, st.st_gid) == (NOBODY, NOGROUP)
    assert len(set(seen_ns.values())) == 3, seen_ns
    # the vassals really run in their own pid/uts/ipc namespaces
    host_pidns = ns_of(os.getpid(), "pid")
    vassal_masters = [p for p in u.pids() if p != u.pid and ns_of(p) == TEST_MNT_NS
                      and "--ini" in cmdline(p) and comm(p) != INIT_COMM]
    assert len(vassal_masters) == 3, [(p, cmdline(p)) for p in u.pids()]
    for p in vassal_masters:
        for kind in ("pid", "uts", "ipc"):
            assert ns_of(p, kind) != ns_of(os.getpid(), kind), (p, kind)
    assert len({ns_of(p, "pid") for p in vassal_masters} | {host_pidns}) == 4
    rc = plug.stop_and_check(u, expect_rc=None)
    print(f"emperor exit status after SIGINT: {rc}")
    assert rc is not None
    assert "The Emperor is buried" in u.log(), u.tail()
    for name in vassals:
        assert not any(f"--ini {os.path.join(vassal_dir, name)}" in cmdline(p) for p in all_pids())


# ---------------------------------------------------------------- failures

FAILURES = {
    # name: (form, how to change the options, text the one failure line must contain)
    "form1-missing-image": ("form1", {"docker-image": PREFIX + "nonexistent:latest"},
                            PREFIX + "nonexistent"),
    "form1-missing-helper": ("form1", {"docker-helper": "/nonexistent"}, "/nonexistent"),
    "form1-no-uid": ("form1", {"uid": None, "gid": None}, "uid"),
    "form2-no-uid": ("form2", {"uid": None, "gid": None}, "uid"),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_failure_stops_before_the_app_loads(plug, plug_images, case):
    form, change, text = FAILURES[case]
    port = free_port()
    opts = []
    for k, v in OPTIONS[form](plug.workdir, port, plug_images.v1):
        if k in change:
            if change[k] is not None:
                opts.append((k, change[k]))
        else:
            opts.append((k, v))
    u = plug.start(opts, name=case)
    rc = u.wait_exit(60)
    log = u.log()
    assert rc is not None, f"uWSGI still running 60 s after start:\n{log[-3000:]}"
    assert rc != 0, log
    assert "WSGI app 0" not in log and "spawned uWSGI worker" not in log, log
    failures = _failure_lines(log)
    assert len(failures) == 1, f"expected exactly one [docker] line saying what failed, got " \
                               f"{failures}:\n{log}"
    assert text in failures[0], failures[0]
    plug.stop_and_check(u, expect_rc=None)


def test_form2_missing_image_stops_before_the_app_loads(plug, plug_images):
    """Form 2: the helper is uWSGI's own exec-as-root hook, so the one line saying what failed is
    the helper's; the plugin adds no second failure report."""
    port = free_port()
    u = plug.start(form2_options(plug.workdir, port, PREFIX + "nonexistent:latest"), name="form2")
    rc = u.wait_exit(60)
    log = u.log()
    assert rc is not None and rc != 0, log
    assert "WSGI app 0" not in log and "spawned uWSGI worker" not in log, log
    helper_lines = [l for l in log.splitlines() if l.startswith("uwsgi-docker-rootfs: ")]
    assert len(helper_lines) == 1 and PREFIX + "nonexistent" in helper_lines[0], log
    assert _failure_lines(log) == [], log
    plug.stop_and_check(u, expect_rc=None)


# ---------------------------------------------------------------- docker-image without a master

@pytest.mark.parametrize("form", FORMS)
def test_without_master_is_refused(plug, plug_images, form):
    """With no master the serving process is the first one, which cannot be put into a PID
    namespace (it would see the host's processes): refused before any app code, one line."""
    port = free_port()
    opts = [(k, v) for k, v in OPTIONS[form](plug.workdir, port, plug_images.v1)
            if k not in ("master", "processes", "touch-reload", "touch-workers-reload")]
    opts += [("master", "false"), ("processes", "1")]
    u = plug.start(opts, name="nomaster")
    rc = u.wait_exit(60)
    log = u.log()
    assert rc is not None and rc != 0, log
    assert "WSGI app 0" not in log and "running \"" not in log, log
    lines = _failure_lines(log)
    assert len(lines) == 1 and "master = true" in lines[0], lines
    plug.stop_and_check(u, expect_rc=None, lazy=False)


# ---------------------------------------------------------------- options mirroring the helper's

def _mount_at(d, point):
    ms = [m for m in d["mounts"] if m[0] == point]
    return ms[-1] if ms else None


def test_form1_binds_tmpfs_unshare_hostname_and_no_env(plug, plug_images):
    rw_src = plug.path("rw-src")
    ro_src = plug.path("ro-src")
    os.mkdir(rw_src)
    os.chmod(rw_src, 0o777)
    os.mkdir(ro_src)
    with open(os.path.join(ro_src, "hello"), "w") as f:
        f.write("from the host\n")
    port = free_port()
    opts = form1_options(plug.workdir, port, plug_images.v1) + [
        ("docker-bind", f"{rw_src}:/mnt/rw"),
        ("docker-ro-bind", f"{ro_src}:/mnt/ro"),
        ("docker-tmpfs", "/mnt/tmp"),
        ("docker-unshare", "uts,ipc"),
        ("docker-hostname", "udplug-inside"),
        ("docker-image-env", "false"),
    ]
    u = plug.start(opts, name="form1")
    d = u.wait_ready(port)
    assert d["version"] == "v1"
    assert d["hostname"] == "udplug-inside"
    assert os.uname().nodename != "udplug-inside"
    for point, fstype in (("/mnt/rw", None), ("/mnt/ro", None), ("/mnt/tmp", "tmpfs")):
        m = _mount_at(d, point)
        assert m, (point, d["mounts"])
        if fstype:
            assert m[1] == fstype, m
    assert "ro" in _mount_at(d, "/mnt/ro")[2].split(","), _mount_at(d, "/mnt/ro")
    # docker-image-env = false: none of the image's Env reaches the app
    for k in plug_images.env[plug_images.v1]:
        assert k not in d["environ"], (k, d["environ"])
    # the binds: a write through the rw bind lands on the host; the ro bind refuses writes
    d = get_json(port, "/?write=/mnt/rw/from-inside&read=/mnt/ro/hello")
    assert d["write"] == "ok:written from inside", d["write"]
    assert d["read"] == "from the host\n"
    with open(os.path.join(rw_src, "from-inside")) as f:
        assert f.read() == "written from inside\n"
    st = os.stat(os.path.join(rw_src, "from-inside"))
    assert (st.st_uid, st.st_gid) == (NOBODY, NOGROUP)
    d = get_json(port, "/?write=/mnt/ro/nope")
    assert d["write"].startswith("ERR:OSError") and "Read-only file system" in d["write"], d["write"]
    assert not os.path.exists(os.path.join(ro_src, "nope"))
    d = get_json(port, "/?write=/mnt/tmp/t")
    assert d["write"] == "ok:written from inside", d["write"]
    # uts and ipc namespaces of the workers are not the host's; the master's are
    workers = _workers(u)
    assert workers
    for w in workers:
        for kind in ("uts", "ipc"):
            assert ns_of(w, kind) != ns_of(os.getpid(), kind), (w, kind)
    for kind in ("mnt", "uts", "ipc"):
        assert ns_of(u.pid, kind) == ns_of(os.getpid(), kind), kind
    plug.stop_and_check(u)
    assert "namespaces mnt,ipc,uts" in u.log() or "namespaces mnt,uts,ipc" in u.log(), \
        _docker_lines(u.log())


def test_form1_read_only_root(plug, plug_images):
    port = free_port()
    opts = form1_options(plug.workdir, port, plug_images.v1) + [("docker-read-only", "true")]
    u = plug.start(opts, name="form1")
    u.wait_ready(port)
    d = get_json(port, "/?write=/srv/written")
    assert d["version"] == "v1"
    assert "ro" in _mount_at(d, "/")[2].split(","), _mount_at(d, "/")
    assert d["write"].startswith("ERR:OSError") and "Read-only file system" in d["write"], d["write"]
    plug.stop_and_check(u)


def test_form1_serves_from_the_layer_cache(plug, plug_images):
    """docker-layers = export and docker-cache-dir reach the helper: the root is stacked from the
    cache's layer directories, and the app sees the same image."""
    cache = plug.path("cache")
    port = free_port()
    opts = form1_options(plug.workdir, port, plug_images.v1) + [
        ("docker-layers", "export"), ("docker-cache-dir", cache)]
    u = plug.start(opts, name="form1")
    u.wait_ready(port)
    d = get_json(port, "/")
    assert d["version"] == "v1"
    assert os.path.join(cache, "sha256") in d["root_mount"], d["root_mount"]
    assert "/var/lib/docker" not in d["root_mount"], d["root_mount"]
    assert os.listdir(os.path.join(cache, "sha256")), "nothing in the cache"
    plug.stop_and_check(u)


def test_form1_rwpath_persists_across_a_full_reload(plug, plug_images):
    """docker-image-rwpath: writes land in DIR/upper on the host and the next generation (after
    a full reload, when the old namespace is gone) sees them."""
    rwpath = plug.path("rwlayer")
    port = free_port()
    reload_file = plug.path("reload")
    _touch(reload_file, time.time() - 100)
    opts = form1_options(plug.workdir, port, plug_images.v1) + [("docker-image-rwpath", rwpath)]
    u = plug.start(opts, name="form1")
    u.wait_ready(port)
    d = get_json(port, "/?write=/srv/persist")
    assert d["write"] == "ok:written from inside", d["write"]
    assert os.path.isfile(os.path.join(rwpath, "upper", "srv", "persist"))
    first_ns = d["mnt_ns"]
    _touch(reload_file, time.time() + 10)
    assert wait_for(lambda: _reloads(port) == "1", timeout=40), \
        f"no reload (UWSGI_RELOADS={_reloads(port)}):\n{u.tail()}"
    d = get_json(port, "/?read=/srv/persist")
    assert d["read"] == "written from inside\n", d["read"]
    u.seen_mnt_ns.add(first_ns)
    plug.stop_and_check(u)


@pytest.mark.parametrize("form", FORMS)
def test_docker_allow_root_runs_the_app_as_root_and_enters_once(plug, plug_images, form):
    """No uid but docker-allow-root = true: the app runs as root inside. In form 2 uWSGI runs
    as-root hooks several times per start without a uid: the helper still runs once."""
    port = free_port()
    opts = [(k, v) for k, v in OPTIONS[form](plug.workdir, port, plug_images.v1)
            if k not in ("uid", "gid")] + [("docker-allow-root", "true")]
    u = plug.start(opts, name=form)
    d = u.wait_ready(port)
    assert d["version"] == "v1" and d["uid"] == 0 and d["euid"] == 0
    assert d["mnt_ns"] != TEST_MNT_NS
    plug.stop_and_check(u, lazy=(form == "form1"))
    log = u.log()
    if form == "form1":
        assert len([l for l in _docker_lines(log) if l.startswith("[docker] image ")]) == 1, log
    else:
        assert len([l for l in _docker_lines(log) if l.startswith("[docker] entered image ")]) \
            == 1, log
        runs = [l for l in log.splitlines() if l.startswith(f'running "{HELPER} ')]
        assert len(runs) == 1, runs


# ---------------------------------------------------------------- the host side stays the host's

def test_image_env_never_steers_the_host_master(plug, plug_images):
    """An image's Env with UWSGI_* (an option at the master's re-exec), PYTHON* (Python's startup
    in the master, root on the host) and LD_* keys: the master never sees them, the app sees all
    of Env exactly. Nothing runs on the host, not even after a full reload."""
    marker = plug.path("pwned-on-host")
    tag = PREFIX + "hostile-env:latest"
    ctx = plug.path("hostile-env")
    os.mkdir(ctx)
    hostile = {"UWSGI_EXEC_AS_ROOT": f"touch {marker}", "PYTHONPATH": "/hostile",
               "LD_PRELOAD": "/nonexistent.so", "PYTHONUNBUFFERED": "1"}
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write(f"FROM {plug_images.v1}\n"
                f'ENV UWSGI_EXEC_AS_ROOT="touch {marker}" PYTHONPATH=/hostile '
                f"LD_PRELOAD=/nonexistent.so PYTHONUNBUFFERED=1\n")
    plug_images.extra_tags.append(tag)
    udlib.docker("build", "-q", "--network", "none", "-t", tag, ctx,
                 env=dict(os.environ, DOCKER_BUILDKIT="0"))
    port = free_port()
    reload_file = plug.path("reload")
    _touch(reload_file, time.time() - 100)
    opts = [(k, tag if k == "docker-image" else v)
            for k, v in form1_options(plug.workdir, port, plug_images.v1)
            if k != "touch-reload"] + [("touch-reload", reload_file)]
    u = plug.start(opts, name="form1")
    u.wait_ready(port)
    d = get_json(port, "/")
    env = d["environ"]
    assert env.get("GREETING") == "hello-v1", env
    for k, v in hostile.items():
        assert env.get(k) == v, (k, env)
    # the master's Python never had them: nothing was held back, nothing to log
    assert "kept out of the master" not in u.log()
    _touch(reload_file, time.time() + 10)
    assert wait_for(lambda: _reloads(port) == "1", timeout=40), u.tail()
    get_json(port, "/")
    assert not os.path.exists(marker), "the image's UWSGI_EXEC_AS_ROOT ran on the host"
    assert "touch " + marker not in u.log(), u.tail()
    plug.stop_and_check(u)


@pytest.mark.parametrize("uid", ["0", "root"])
def test_uid_naming_root_is_refused(plug, plug_images, uid):
    port = free_port()
    opts = [(k, uid if k == "uid" else v) for k, v in form1_options(plug.workdir, port, plug_images.v1)]
    u = plug.start(opts, name="form1")
    rc = u.wait_exit(60)
    log = u.log()
    assert rc is not None and rc != 0, log
    assert "spawned uWSGI worker" not in log, log
    lines = _failure_lines(log)
    assert len(lines) == 1 and "uid" in lines[0], lines
    plug.stop_and_check(u, expect_rc=None)


@pytest.mark.parametrize("kind", ["mules", "farm", "spooler"])
def test_form1_refuses_mules_farms_and_spoolers(plug, plug_images, kind):
    """Mules, farms (of mules) and spoolers skip uWSGI's privileges drop under master-as-root:
    they would run as root on the host. Refused before anything starts, with one line."""
    port = free_port()
    spool = plug.path("spool")
    os.makedirs(spool, exist_ok=True)
    extra = {"mules": [("mules", "1")],
             "farm": [("mules", "1"), ("farm", "udfarm:1")],
             "spooler": [("spooler", spool)]}[kind]
    opts = form1_options(plug.workdir, port, plug_images.v1) + extra
    u = plug.start(opts, name="form1")
    rc = u.wait_exit(60)
    log = u.log()
    assert rc is not None and rc != 0, log
    lines = _failure_lines(log)
    assert len(lines) == 1 and "cannot serve mules, farms or spoolers" in lines[0], lines
    assert "spawned uWSGI worker" not in log and "spawned the uWSGI spooler" not in log, log
    plug.stop_and_check(u, expect_rc=None)


@pytest.mark.parametrize("form", FORMS)
def test_workers_run_with_no_new_privs(plug, plug_images, form):
    """The root is nosuid but binds are not: every worker runs with NoNewPrivs set, so nothing
    it executes gains privileges (a setuid binary in a bound host directory included)."""
    port = free_port()
    u = plug.start(OPTIONS[form](plug.workdir, port, plug_images.v1), name=form)
    u.wait_ready(port)
    seen = set()
    for _ in range(8):   # several requests, to reach both workers (each answers with its pid)
        d = get_json(port, "/?read=/proc/self/status")
        nnp = [l.split(":", 1)[1].strip() for l in d["read"].splitlines()
               if l.startswith("NoNewPrivs:")]
        assert nnp == ["1"], f"worker {d['pid']}: {d['read']}"
        seen.add(d["pid"])
    assert len(seen) >= 1
    with open(f"/proc/{u.pid}/status") as f:
        master = [l.split(":", 1)[1].strip() for l in f if l.startswith("NoNewPrivs:")]
    # form 1: the master stays on the host and re-execs uwsgi on reloads: no NoNewPrivs there
    assert master == (["0"] if form == "form1" else ["1"]), (form, master)
    plug.stop_and_check(u)


def test_form1_http_gateway_stays_on_the_host(plug, plug_images):
    """A gateway (http router) forks from the master like a worker but must not enter the image:
    it keeps the host's namespace and forwards to the workers."""
    port, gw = free_port(), free_port()
    opts = form1_options(plug.workdir, port, plug_images.v1)
    sock = dict(opts)["socket"]
    opts += [("plugin", "http"), ("http", f"127.0.0.1:{gw}"), ("http-to", sock)]
    u = plug.start(opts, name="form1")
    u.wait_ready(port)
    d = get_json(gw, "/")
    assert d["version"] == "v1" and d["mnt_ns"] != TEST_MNT_NS, d["mnt_ns"]
    others = [p for p in u.pids() if p != u.pid and ns_of(p) == TEST_MNT_NS]
    assert others, "no process of the instance besides the master on the host (the gateway)"
    plug.stop_and_check(u)
