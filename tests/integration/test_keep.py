"""Image files never vanish under a live namespace (issue 10): the helper keeps the daemon's layer
directories as hard links in a snapshot store of its own (<storage root>/uwsgi-docker), so that
`docker rmi -f`, `image prune -a`, `container prune` and `system prune -a -f` take no file from a
namespace it prepared; --gc and the background collection release what only dead namespaces
held; with the daemon stopped by pid, a full reload and a fresh start use the last good
resolution. Every test shows first that what it guards against is real: the same step with
`--layers direct` (the daemon's own directories, what 0.1 did) loses the file.

What must not happen to the shared dockerd (a system prune, a stop) happens to a second dockerd
of the session's own (daemon2.py).
"""
import json
import os
import re
import subprocess
import time

import pytest

import archives as A
import udlib
from daemon2 import SecondDaemon
from plugin_support import (HELPER, PREFIX, Harness, RequestLoop, form1_options, free_port,
                            get_json, plug_images, touch, wait_for)

assert plug_images  # a fixture, used by name

_TOKEN = f"{os.getpid()}-{os.urandom(3).hex()}"
STORE = udlib.STORAGE + "/uwsgi-docker"
GC_REPORT = "/var/lib/uwsgi-docker/gc.last"
GC_STAMP = "/var/lib/uwsgi-docker/gc.stamp"
REMOVED = re.compile(r"^removed sha256:([0-9a-f]{64}) \(([0-9]+) bytes\) from (/\S+)$")
FREED = re.compile(r"^freed ([0-9]+) bytes in ([0-9]+) layers?$")


def _run(args, timeout=120, **kw):
    return subprocess.run([HELPER, *args], capture_output=True, text=True, timeout=timeout,
                          env=udlib.helper_env(), **kw)


def _load(archive, host=None):
    cmd = [udlib.DOCKER] + (["-H", host] if host else []) + ["load", "-q"]
    p = subprocess.run(cmd, input=archive, capture_output=True, timeout=300)
    assert p.returncode == 0, p.stderr.decode(errors="replace")


def _image(name, files, host=None, base=None):
    """A loaded image: the busybox layer, then one layer with files {path: content}. Returns
    (tag, diffID hex of the top layer)."""
    top = A.LayerBuilder()
    made = set()
    for path, content in files.items():
        parts = path.split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if d not in made:
                top.dir(d)
                made.add(d)
        top.file(path, content)
    top_bytes = top.bytes()
    img = A.Image([base or A.LayerBuilder().busybox().bytes(), top_bytes],
                  f"udktest-{_TOKEN}-{name}:latest")
    _load(A.docker_archive(img), host)
    return img.tag, A.sha256(top_bytes)


def _gc(*opts):
    p = _run(["--gc", *opts])
    assert p.returncode == 0, udlib.describe(p)
    lines = p.stdout.splitlines()
    m = FREED.match(lines[-1]) if lines else None
    assert m, f"no summary line: {udlib.describe(p)}"
    removed = {}
    for line in lines[:-1]:
        r = REMOVED.match(line)
        assert r, f"unexpected --gc line {line!r}: {udlib.describe(p)}"
        removed[r.group(1)] = (int(r.group(2)), r.group(3))
    assert int(m.group(2)) == len(removed), udlib.describe(p)
    assert int(m.group(1)) == sum(b for b, _ in removed.values()), udlib.describe(p)
    return removed


def _store_layers(store):
    try:
        return set(os.listdir(os.path.join(store, "sha256")))
    except FileNotFoundError:
        return set()


def _store_tmp(store):
    try:
        return os.listdir(os.path.join(store, "tmp"))
    except FileNotFoundError:
        return []


def _nsenter_cat(pin, path):
    return subprocess.run(["nsenter", f"--mount={pin}", "/bin/cat", path], capture_output=True,
                          text=True, timeout=30)


def _lowers(pin):
    with open(pin + ".mountinfo", "w") as out:
        subprocess.run(["nsenter", f"--mount={pin}", "/bin/cat", "/proc/self/mountinfo"],
                       stdout=out, timeout=30, check=True)
    with open(pin + ".mountinfo") as f:
        root = [l for l in f if l.split()[4] == "/"][0]
    os.unlink(pin + ".mountinfo")
    return root


# ---------------------------------------------------------------- the helper alone

def test_rmi_takes_no_file_from_a_pinned_namespace_and_gc_frees_it_after(scratch, docker_ready):
    content = f"kept {_TOKEN}\n"
    tag, top = _image("rmi", {"keep/file": content, "keep/dir/f": "f\n"})
    kept, direct = os.path.join(scratch, "kept"), os.path.join(scratch, "direct")
    for pin in (kept, direct):
        open(pin, "w").close()
    pinned = []
    try:
        p = _run(["--pin", kept, tag])
        assert p.returncode == 0 and p.stderr == "", udlib.describe(p)
        pinned.append(kept)
        p = _run(["--layers", "direct", "--pin", direct, tag])
        assert p.returncode == 0, udlib.describe(p)
        pinned.append(direct)
        assert f"{STORE}/sha256/{top}" in _lowers(kept)
        assert top in _store_layers(STORE)
        udlib.docker("rmi", "-f", tag)
        # What 0.1 did: the daemon's own directories lose their files with the image.
        lost = _nsenter_cat(direct, "/keep/file")
        assert lost.returncode != 0 and "No such file" in lost.stderr, lost
        got = _nsenter_cat(kept, "/keep/file")
        assert got.returncode == 0 and got.stdout == content, got
        assert _nsenter_cat(kept, "/keep/dir/f").stdout == "f\n"
        # Alive (pinned): --gc keeps it.
        assert top not in _gc()
        assert top in _store_layers(STORE)
    finally:
        for pin in pinned:
            subprocess.run(["umount", pin], check=True)
    removed = _gc()
    assert removed.get(top, (0, None))[1] == STORE, removed
    assert removed[top][0] >= len(content), removed
    assert top not in _store_layers(STORE)
    assert not any(n.endswith(top) for n in _store_tmp(STORE))


def test_print_shows_the_store_and_changes_nothing(docker_ready):
    tag, top = _image("print", {"p/f": "p\n"})
    try:
        p = _run(["--print", tag])
        assert p.returncode == 0, udlib.describe(p)
        plan = json.loads(p.stdout)
        assert plan["layers_mode"] == "snapshot" and plan["driver"] == "overlay2", plan
        assert plan["storage_root"] == STORE, plan
        assert plan["layers"][0] == f"{STORE}/sha256/{top}", plan
        assert top not in _store_layers(STORE), "--print made a snapshot"
        p = _run(["--layers", "direct", "--print", tag])
        assert json.loads(p.stdout)["layers_mode"] == "direct"
    finally:
        udlib.docker("rmi", "-f", tag)


def test_a_layer_that_cannot_be_kept_is_served_with_one_warning(docker_ready):
    """Nested deeper than the snapshot walks (512 levels): served from the daemon's directory,
    one line says what is at stake, nothing is left in the store."""
    deep = "/".join(["d"] * 600) + "/bottom"
    tag, top = _image("deep", {deep: "bottom\n"})
    try:
        p = _run([tag, "--", "/bin/cat", "/" + deep])
        assert p.returncode == 0 and p.stdout == "bottom\n", udlib.describe(p)
        lines = p.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(udlib.PREFIX + "warning: ") and \
            "deeper than 512 levels" in lines[0] and "docker rmi" in lines[0], p.stderr
        assert top not in _store_layers(STORE)
        assert not any(n.endswith(top) or ".gc-" not in n for n in _store_tmp(STORE)), \
            _store_tmp(STORE)
    finally:
        udlib.docker("rmi", "-f", tag)


def test_background_collection_runs_after_the_run_and_frees_what_is_dead(scratch, docker_ready):
    tag, top = _image("bg", {"bg/f": f"bg {_TOKEN}\n"})
    other, _ = _image("bg-other", {"o/f": "o\n"})
    try:
        assert _run([tag, "--", "/bin/true"]).returncode == 0
        assert top in _store_layers(STORE)
        udlib.docker("rmi", "-f", tag)
        before = os.stat(GC_STAMP).st_mtime if os.path.exists(GC_STAMP) else 0
        # The command runs while the collection waits for it (the run's end: exec here).
        p = _run(["--gc-interval", "0", other, "--", "/bin/sh", "-c",
                  "sleep 0.5; echo done"])
        assert p.returncode == 0 and p.stdout == "done\n" and p.stderr == "", udlib.describe(p)

        def report():
            try:
                with open(GC_REPORT) as f:
                    text = f.read()
            except FileNotFoundError:
                return None
            return text if top in text else None

        # at the lowest CPU and I/O priority: a busy machine makes it wait
        text = wait_for(report, timeout=240)
        assert text, f"no background collection report naming {top}"
        assert f"removed sha256:{top} " in text and FREED.match(text.splitlines()[-1]), text
        assert top not in _store_layers(STORE)
        assert os.stat(GC_STAMP).st_mtime > before
        st = os.stat(GC_REPORT)
        assert st.st_uid == 0 and st.st_mode & 0o077 == 0, oct(st.st_mode)
    finally:
        udlib.docker("rmi", "-f", tag, check=False)
        udlib.docker("rmi", "-f", other, check=False)
        os.utime(GC_STAMP)  # the rest of the session runs without background collections


# ---------------------------------------------------------------- a second dockerd

@pytest.fixture(scope="module")
def d2(canary_root, plug_images):
    d = SecondDaemon(os.path.join(canary_root, "dockerd2"), _TOKEN)
    d.start()
    try:
        d.load_from_shared(plug_images.v1, plug_images.v2)
        yield d
    finally:
        d.cleanup()


@pytest.fixture
def plug(scratch, plug_images, d2):
    """Each test finds the second daemon running with both images (a failed test may have
    stopped it or pruned them)."""
    if not d2.pid:
        d2.start()
    if d2.docker("image", "inspect", plug_images.v1, plug_images.v2, check=False).returncode:
        d2.load_from_shared(plug_images.v1, plug_images.v2)
    h = Harness(scratch, plug_images)
    yield h
    h.cleanup()


def _options(plug, port, tag, d2):
    opts = form1_options(plug.workdir, port, tag) + [
        ("docker-host", d2.host), ("touch-chain-reload", plug.path("chain")),
        ("docker-canary-timeout", "20")]
    for name in ("reload", "workers-reload", "chain"):
        touch(plug.path(name), time.time() - 100)
    return opts


def _docker_lines(log, what):
    return [l for l in log.splitlines() if l.startswith("[docker] ") and what in l]


def _read_inside(port, path, expect):
    got = get_json(port, "/?read=" + path)
    assert expect in got["read"] and got["version"] == "v1", got["read"][:200]
    return True


def _layer_dirs(d2, tag):
    info = d2.docker("image", "inspect", tag).stdout
    return udlib.layer_dirs(json.loads(info)[0])


def test_system_prune_under_a_running_instance_takes_no_file(plug, plug_images, d2):
    tag = PREFIX + "prune:live"
    d2.docker("tag", plug_images.v1, tag)
    dirs = _layer_dirs(d2, tag)
    store = os.path.join(d2.root, "overlay2", "uwsgi-docker")
    port = free_port()
    u = plug.start(_options(plug, port, tag, d2), name="prune")
    first = u.wait_ready(port)
    assert first["version"] == "v1"
    loop = RequestLoop(port, max_seconds=150)
    loop.start()
    try:
        for args in (["rmi", "-f", tag, plug_images.v1, plug_images.v2],
                     ["image", "prune", "-a", "-f"], ["container", "prune", "-f"],
                     ["system", "prune", "-a", "-f"]):
            d2.docker(*args)
        assert d2.docker("images", "-q").stdout.strip() == ""
        assert not any(os.path.exists(d) for d in dirs), "the daemon kept its layer dirs"
        n = len(loop.versions())
        assert wait_for(lambda: len(loop.versions()) >= n + 50, timeout=30)
        # A file nobody opened before the prune (no dentry of it cached in the overlay).
        assert _read_inside(port, "/usr/lib/python3.11/antigravity.py", "webbrowser")
        # Worker reloads: new workers enter the namespace whose image is gone, and import.
        old_pids = {get_json(port)["pid"] for _ in range(8)}
        touch(plug.path("workers-reload"))
        assert wait_for(lambda: u.log().count("Respawned uWSGI worker") >= 2, timeout=30)
        assert wait_for(lambda: {get_json(port)["pid"] for _ in range(8)} - old_pids, timeout=30)
        u.wait_apps_loaded()
        assert "unable to load app" not in u.log(), u.tail()
        assert _read_inside(port, "/usr/lib/python3.11/this.py", "Gur Mra")
        # A rollout whose tag is gone: its canary comes back on the serving namespace.
        touch(plug.path("chain"), time.time() + 10)
        assert wait_for(lambda: _docker_lines(u.log(), "rollout of image"), timeout=60), \
            u.tail()
        # A full reload that cannot resolve keeps serving the namespace it has.
        touch(plug.path("reload"), time.time() + 20)
        assert wait_for(lambda: get_json(port)["environ"].get("UWSGI_RELOADS") == "1",
                        timeout=90), u.tail()
        n = len(loop.versions())
        assert wait_for(lambda: len(loop.versions()) >= n + 50, timeout=30)
        got = get_json(port, "/?read=/srv/only-in-image")
        assert got["read"] == "image-only-content\n" and got["version"] == "v1", got
    finally:
        loop.finish()
    assert loop.failures == [], loop.failures[:5]
    assert set(loop.versions()) == {"v1"}
    assert f"{store}/sha256/" in first["root_mount"], first["root_mount"]
    plug.stop_and_check(u)
    assert d2.docker("ps", "-a", "-q").stdout.strip() == "", "a container of ours is left"
    kept = _store_layers(store)
    removed = _gc("-H", d2.host)
    assert set(removed) == kept and all(w == store for _, w in removed.values()), removed
    assert _store_layers(store) == set(), f"snapshots left: {_store_layers(store)}"
    os.unlink(udlib.lastgood_record(d2.sock, tag))


def test_daemon_stopped_by_pid_during_a_full_reload_and_a_fresh_start(plug, plug_images, d2):
    tag = PREFIX + "stopped:live"
    d2.docker("tag", plug_images.v1, tag)
    port = free_port()
    opts = _options(plug, port, tag, d2)
    u = plug.start(opts, name="stopped")
    assert u.wait_ready(port)["version"] == "v1"
    loop = RequestLoop(port, max_seconds=90)
    loop.start()
    try:
        d2.stop()
        assert d2.pid is None and not d2.answers()
        touch(plug.path("reload"), time.time() + 10)
        assert wait_for(lambda: get_json(port)["environ"].get("UWSGI_RELOADS") == "1",
                        timeout=60), u.tail()
        n = len(loop.versions())
        assert wait_for(lambda: len(loop.versions()) >= n + 20, timeout=20)
    finally:
        loop.finish()
    assert loop.failures == [], loop.failures[:5]
    assert set(loop.versions()) == {"v1"}
    lines = _docker_lines(u.log(), "using the last good resolution")
    assert len(lines) == 1, u.tail()
    plug.stop_and_check(u)
    # a fresh start, the daemon still stopped
    u = plug.start(opts, name="stopped-fresh")
    assert u.wait_ready(port)["version"] == "v1"
    assert len(_docker_lines(u.log(), "using the last good resolution")) == 1, u.tail()
    plug.stop_and_check(u)
    # the daemon back, the tag moved: the next start serves the new image
    d2.start()
    d2.docker("tag", plug_images.v2, tag)
    u = plug.start(opts, name="stopped-back")
    assert u.wait_ready(port)["version"] == "v2"
    assert _docker_lines(u.log(), "last good") == [], u.tail()
    plug.stop_and_check(u)
    d2.docker("rmi", tag)
    os.unlink(udlib.lastgood_record(d2.sock, tag))
