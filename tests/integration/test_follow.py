"""Push to deploy (issue 13): `uwsgi-docker-rootfs --check IMAGE` against a real registry
(Debian's docker-registry on 127.0.0.1, registry_support.py), and instances that follow their
tag (docker-follow)."""
import re

from registry_support import _auths_config, _free_port
from udlib import describe, docker, error_line, run

DIGEST = r"sha256:[0-9a-f]{64}"


def _check(ref, cfg, *opts, images=None):
    """The check's two digests; with images=[], the two image ids (None where none) too."""
    p = run(["--check", "--docker-config", cfg, *opts, ref], timeout=120)
    m = re.fullmatch(rf"local ({DIGEST}|none)(?: \(image ({DIGEST})\))?\n"
                     rf"registry ({DIGEST})(?: \(image ({DIGEST})\))?\n", p.stdout)
    if m and images is not None:
        images[:] = [m.group(2), m.group(4)]
    return p, (m.group(1), m.group(3)) if m else None


def test_check_says_whether_the_tag_moved(registry, scratch, pulled):
    cfg = _auths_config(scratch, registry.addr)
    repo = "udfollow/check"
    ref = f"{registry.addr}/{repo}:live"
    pulled.append(ref)
    first = registry.push(f"{repo}:live", "check-1\n")
    # Not on this machine yet: the registry has what the daemon does not.
    ids = []
    p, got = _check(ref, cfg, images=ids)
    assert p.returncode == 1 and got == ("none", first) and ids == [None, None], describe(p)
    assert run(["--docker-config", cfg, ref, "--", "/bin/cat", "/marker"],
               timeout=120).stdout == "check-1\n"
    p, got = _check(ref, cfg, images=ids)
    assert p.returncode == 0 and got == (first, first) and p.stderr == "", describe(p)
    assert ids[0] and ids[0] == ids[1] == docker("image", "inspect", "-f", "{{.Id}}",
                                                 ref).stdout.strip(), describe(p)
    # Someone pushes: the registry moved, the daemon's image did not (nothing is pulled).
    keep = f"{registry.addr}/{repo}:keep"
    docker("tag", ref, keep)
    try:
        second = registry.push(f"{repo}:live", "check-2\n")
        docker("tag", keep, ref)
    finally:
        docker("rmi", keep, check=False)
    ids = []
    p, got = _check(ref, cfg, images=ids)
    assert p.returncode == 1 and got == (first, second) and second != first, describe(p)
    # The image pushed is gone from the daemon: no image of the registry's digest.
    assert ids[0] and ids[1] is None, describe(p)
    p = run(["--pull", "never", ref, "--", "/bin/cat", "/marker"])
    assert p.stdout == "check-1\n", describe(p)


def test_check_failures_are_one_line_each(registry, scratch, pulled):
    cfg = _auths_config(scratch, registry.addr)
    digest = registry.push("udfollow/fail:v1", "fail\n")
    unknown = f"{registry.addr}/udfollow/fail:no-such-tag"
    pulled.append(unknown)
    line = error_line(run(["--check", "--docker-config", cfg, unknown]), 65)
    assert unknown in line and "manifest unknown" in line, line
    # No credentials: the registry's own words.
    line = error_line(run(["--check", "--docker-config", scratch,
                           f"{registry.addr}/udfollow/fail:v1"]), 65)
    assert "no basic auth credentials" in line, line
    nowhere = f"127.0.0.1:{_free_port()}/udfollow/nowhere:v1"
    line = error_line(run(["--check", "--docker-config", cfg, nowhere]), 66)
    assert nowhere in line and "connection refused" in line, line
    pinned = f"{registry.addr}/udfollow/fail@{digest}"
    line = error_line(run(["--check", pinned]), 64)
    assert "digest" in line and "cannot move" in line, line
    line = error_line(run(["--check", "--print", pinned]), 64)


# ---------------------------------------------------------------- docker-follow (form 1)

import os  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402

from plugin_support import (PREFIX, Harness, RequestLoop, _build, form1_options,  # noqa: E402
                            form2_options, free_port, get_json, plug_images, wait_for)
from registry_support import Registry  # noqa: E402

assert plug_images  # a fixture, used by name
INTERVAL = "2s"


@pytest.fixture(scope="module")
def broken(plug_images, session_dir):
    """v1 with a syntax error in the app: its canary never loads."""
    tag = PREFIX + "follow-broken:syntax"
    ctx = os.path.join(session_dir, "follow-broken")
    os.makedirs(ctx, exist_ok=True)
    df = os.path.join(ctx, "Dockerfile")
    with open(df, "w") as f:
        f.write(f"FROM {plug_images.v1}\nRUN echo 'def broken(:' >> /srv/app.py\n")
    _build(tag, ctx, df)
    yield tag
    docker("rmi", "-f", tag, check=False)


@pytest.fixture
def plug(scratch, plug_images):
    h = Harness(scratch, plug_images)
    yield h
    h.cleanup()


def _lines(u, what):
    return [l for l in u.log().splitlines() if l.startswith("[docker] ") and what in l]


def _follow(plug, reg, ref, port, interval=INTERVAL, **extra):
    cfg = _auths_config(plug.workdir, reg.addr)
    opts = form1_options(plug.workdir, port, ref) + [
        ("docker-follow", interval), ("docker-canary-timeout", "20"),
        ("env", f"DOCKER_CONFIG={cfg}")] + list(extra.items())
    return plug.start(opts, name="follow")


def _assert_canary_first(log):
    """uWSGI's own chain takes no worker of a followed rollout before its canary serves."""
    state = None
    for line in log.splitlines():
        if "moved in its registry" in line:
            state = "resolving"
        elif state and "tries it first" in line:
            state = "canary"
        elif state and ("the other workers follow" in line or "rollout of image" in line):
            state = None
        elif state and "chain next victim" in line:
            raise AssertionError(f"uWSGI's chain took a worker while the rollout was {state}:"
                                 f"\n{log[-4000:]}")


def _forget(ref):
    """Takes ref's tag and every digest reference of its repository off the daemon (a pull or
    a push leaves repo@digest behind): the images stay only if something else names them."""
    p = docker("image", "inspect", "-f", "{{.Id}}", ref, check=False)
    docker("rmi", ref, check=False)
    repo = ref.rsplit(":", 1)[0]
    refs = docker("images", "--digests", "--format", "{{.Repository}}@{{.Digest}}",
                  repo).stdout.split()
    for r in refs:
        if not r.endswith("@<none>"):
            docker("rmi", r, check=False)
    left = docker("images", "-q", repo).stdout.strip()
    assert left == "", f"{repo} left behind: {left}"
    return p


def test_follow_rolls_out_each_push_and_never_a_broken_one(plug, plug_images, broken,
                                                           registry):
    repo = f"udfollow/app-{os.getpid()}:live"
    ref = f"{registry.addr}/{repo}"
    registry.push_tag(plug_images.v1, repo)
    port = free_port()
    u = _follow(plug, registry, ref, port)
    try:
        assert u.wait_ready(port)["version"] == "v1"
        loop = RequestLoop(port, max_seconds=240)
        loop.start()
        try:
            registry.push_tag(plug_images.v2, repo)
            assert wait_for(lambda: loop.versions()[-1:] == ["v2"], timeout=90), \
                u.tail()
            assert wait_for(lambda: _lines(u, "is now"), timeout=60), u.tail()
            done = _lines(u, "is now")
            assert len(done) == 1 and "pulled and prepared in" in done[0], u.tail()
            # A broken image: its canary fails, the workers stay, and it is not tried again.
            registry.push_tag(broken, repo)
            assert wait_for(lambda: _lines(u, "was not rolled out"), timeout=90), \
                u.tail()
            moved = len(_lines(u, "moved in its registry"))
            time.sleep(8)  # four intervals
            assert len(_lines(u, "moved in its registry")) == moved, u.tail()
            assert set(loop.versions()[-20:]) == {"v2"}
            # A good push after it rolls out.
            registry.push_tag(plug_images.v1, repo)
            assert wait_for(lambda: loop.versions()[-1:] == ["v1"], timeout=90), \
                u.tail()
        finally:
            loop.finish()
        assert loop.failures == [], loop.failures[:5]
        assert len(_lines(u, "rollout of image")) == 1, u.tail()
        _assert_canary_first(u.log())
        plug.stop_and_check(u)
    finally:
        _forget(ref)


def test_follow_moves_with_the_registry_not_with_the_daemons_tag(plug, plug_images, scratch):
    """Someone on the host tags another image under the followed name (to push it), or untags
    it: the registry still serves the instance's image, so nothing moves until the push lands,
    and then one rollout with one pull. (CI caught an instance that rolled out, and pulled, on
    the daemon's tag in the middle of a push.)"""
    reg = Registry(os.path.join(scratch, "registry"), log_level="info").start()
    repo = "udfollow/retag:live"
    ref = f"{reg.addr}/{repo}"
    try:
        reg.push_tag(plug_images.v1, repo)
        port = free_port()
        u = _follow(plug, reg, ref, port)
        assert u.wait_ready(port)["version"] == "v1"
        checks = lambda: reg.requests(f"/{repo.split(':')[0]}/manifests/live")  # noqa: E731
        for step in (("tag", plug_images.v2, ref), ("rmi", ref)):
            docker(*step)
            before = checks()
            assert wait_for(lambda: checks() >= before + 3, timeout=60), u.tail()
            assert _lines(u, "moved in its registry") == [], (step, u.tail())
            assert get_json(port)["version"] == "v1"
        pulled = u.log().count("[docker] pulled ")
        reg.push_tag(plug_images.v2, repo)
        assert wait_for(lambda: _lines(u, "is now"), timeout=90), u.tail()
        assert get_json(port)["version"] == "v2"
        assert len(_lines(u, "moved in its registry")) == 1, u.tail()
        assert u.log().count("[docker] pulled ") - pulled == 1, u.tail()
        plug.stop_and_check(u)
    finally:
        _forget(ref)
        reg.close()


def test_follow_tries_again_a_push_it_could_not_pull(plug, plug_images, scratch):
    """The registry serves a pushed manifest whose config blob it cannot serve intact yet (a
    registry on object storage that has not caught up): the rollout's pull fails, the instance
    keeps serving, and later checks try the same digest again until it rolls out. (Only an
    image refused, its canary or its files, is not tried again: the test above.)"""
    reg = Registry(os.path.join(scratch, "registry")).start()
    repo = "udfollow/late"
    ref = f"{reg.addr}/{repo}:live"
    v3 = f"{PREFIX}follow-v3-{os.getpid()}:v3"
    ctx = os.path.join(scratch, "v3")
    os.mkdir(ctx)
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write(f"FROM {plug_images.v1}\nRUN echo v3 > /srv/version\n")
    _build(v3, ctx, os.path.join(ctx, "Dockerfile"))
    try:
        reg.push_tag(plug_images.v1, f"{repo}:live")
        reg.push_tag(v3, f"{repo}:staging")
        docker("rmi", v3)  # the daemon must fetch the config again
        config_digest = reg.retag(repo, "staging", "staging")["config"]["digest"]
        config = reg.blob_data(config_digest)
        gone = docker("image", "inspect", config_digest, check=False)
        assert gone.returncode != 0, f"the daemon still has {config_digest}: {gone.stdout}"
        with open(config, "rb") as f:
            good = f.read()
        with open(config, "wb") as f:
            f.write(bytes(len(good)))  # the size it claims, not the bytes
        port = free_port()
        u = _follow(plug, reg, ref, port)
        assert u.wait_ready(port)["version"] == "v1"
        assert reg.retag(repo, "staging", "live")["config"]["digest"] == config_digest
        assert wait_for(lambda: _lines(u, "rollout of image"), timeout=60), u.tail()
        assert wait_for(lambda: len(_lines(u, "rollout of image")) >= 2, timeout=60), \
            u.tail()
        assert get_json(port)["version"] == "v1"
        with open(config, "wb") as f:
            f.write(good)
        assert wait_for(lambda: _lines(u, "is now"), timeout=120), u.tail()
        assert get_json(port)["version"] == "v3"
        assert _lines(u, f"serves {config_digest}"), u.tail()
        stopped = _lines(u, "rollout of image")
        assert all("exit status 66" in l and "config verification" in l for l in stopped), \
            stopped
        again = _lines(u, "try it again")
        assert len(again) == 1 and _lines(u, "was not rolled out") == [], u.tail()
        assert len(_lines(u, "is now")) == 1, u.tail()
        plug.stop_and_check(u)
    finally:
        _forget(ref)
        docker("rmi", v3, check=False)
        reg.close()


def test_follow_keeps_serving_while_the_registry_is_away(plug, plug_images, scratch):
    reg = Registry(os.path.join(scratch, "registry")).start()
    repo = "udfollow/away:live"
    ref = f"{reg.addr}/{repo}"
    try:
        reg.push_tag(plug_images.v1, repo)
        port = free_port()
        u = _follow(plug, reg, ref, port, interval="1s")
        assert u.wait_ready(port)["version"] == "v1"
        loop = RequestLoop(port, max_seconds=180)
        loop.start()
        try:
            reg.stop()
            assert wait_for(lambda: _lines(u, "follow: checking image"), timeout=30)
            time.sleep(6)
            failed = _lines(u, "follow: checking image")
            assert len(failed) == 1 and "back off" in failed[0], u.tail()
            reg.start()
            reg.push_tag(plug_images.v2, repo)
            # backed off: up to 16 intervals
            assert wait_for(lambda: loop.versions()[-1:] == ["v2"], timeout=120), \
                u.tail()
            assert _lines(u, "can be checked again"), u.tail()
        finally:
            loop.finish()
        assert loop.failures == [], loop.failures[:5]
        plug.stop_and_check(u)
    finally:
        _forget(ref)
        reg.close()


def test_follow_refuses_what_cannot_move(plug, plug_images, registry):
    repo = f"udfollow/pinned-{os.getpid()}:v1"
    digest = registry.push_tag(plug_images.v1, repo)
    assert digest
    pinned = f"{registry.addr}/{repo.split(':')[0]}@{digest}"
    port = free_port()
    for opts, what in ((form1_options(plug.workdir, port, pinned), "names a digest"),
                       (form2_options(plug.workdir, port, plug_images.v1), "needs docker-image")):
        u = plug.start(opts + [("docker-follow", "5s")], name="refused")
        rc = u.wait_exit(30)
        lines = _lines(u, "docker-follow")
        assert rc not in (None, 0) and len(lines) == 1 and what in lines[0], u.tail()
        plug.stop_and_check(u, expect_rc=None, lazy=False)
    line = error_line(run(["--check", pinned]), 64)
    assert "cannot move" in line


def test_vassals_following_one_tag_share_checks_and_one_pull(plug, plug_images, scratch):
    """Three vassals of an Emperor follow one tag: the registry is asked about once per interval
    (not three times), and a push is pulled once."""
    reg = Registry(os.path.join(scratch, "registry"), log_level="info").start()
    repo = "udfollow/shared:live"
    ref = f"{reg.addr}/{repo}"
    cfg = _auths_config(plug.workdir, reg.addr)
    try:
        reg.push_tag(plug_images.v1, repo)
        vassal_dir = plug.path("vassals")
        os.mkdir(vassal_dir)
        ports = []
        for name in "abc":
            port = free_port()
            ports.append(port)
            opts = [(k, v) for k, v in form1_options(plug.workdir, port, ref)
                    if k not in ("pidfile", "touch-reload", "touch-workers-reload", "socket")]
            opts += [("socket", plug.path(f"{name}.sock")), ("docker-follow", INTERVAL),
                     ("env", f"DOCKER_CONFIG={cfg}"), ("docker-canary-timeout", "30")]
            with open(os.path.join(vassal_dir, f"{name}.ini"), "w") as f:
                f.write("[uwsgi]\n" + "".join(f"{k} = {v}\n" for k, v in opts))
        u = plug.start_raw(["--emperor", vassal_dir, "--emperor-use-clone", "pid,uts,ipc"],
                           name="emperor")
        for port in ports:
            assert u.wait_ready(port)["version"] == "v1"
        before = reg.requests(f"/{repo.split(':')[0]}/manifests/live")
        time.sleep(12)  # six intervals: three vassals alone asked 12 times here, sharing 4
        asked = reg.requests(f"/{repo.split(':')[0]}/manifests/live") - before
        assert 3 <= asked <= 8, f"the registry was asked {asked} times in 12 s"
        pulled_before = u.log().count("[docker] pulled ")
        reg.push_tag(plug_images.v2, repo)
        for port in ports:
            assert wait_for(lambda: get_json(port)["version"] == "v2", timeout=120), \
                u.tail()
        assert wait_for(lambda: u.log().count("follow: image") and
                        u.log().count(" is now ") >= 3, timeout=60), u.tail()
        assert u.log().count("[docker] pulled ") - pulled_before == 1, u.log()[-6000:]
        plug.stop_and_check(u, expect_rc=None)
    finally:
        _forget(ref)
        reg.close()
