"""What `docker run` gives an app, the plugin gives it too (issue 12), in both forms: the network
files (localhost resolves, the host's nameservers), the image's User when the ini sets no uid
(numbers resolved by the helper inside the image; the image's primary gid only), docker-env =
KEY=VALUE over the image's Env, docker-tmpfs with docker run's options, docker-shm-size; and
boolean options that refuse what is not a boolean."""
import os

import pytest

import udlib
from plugin_support import (HELPER, NOBODY, NOGROUP, PREFIX, Harness, form1_options, form2_options,
                            free_port, plug_images)

assert plug_images  # a fixture, used by name

FORMS = ["form1", "form2"]

DRAPP = r'''
import json
import os
import socket


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        return "ERR:" + type(e).__name__


def application(environ, start_response):
    try:
        local = sorted({a[4][0] for a in socket.getaddrinfo("localhost", 80)})
    except OSError as e:
        local = "ERR:" + repr(e)
    info = {
        "uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()),
        "environ": dict(os.environ),
        "hosts": _read("/etc/hosts"), "resolv": _read("/etc/resolv.conf"),
        "hostname_file": _read("/etc/hostname"), "localhost": local,
        "mountinfo": _read("/proc/self/mountinfo"),
    }
    body = json.dumps(info).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''

PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
          "app:x:1234:2345:the app:/home/app:/bin/sh\n")
# The image puts its user in groups that would be privileges on the host (root, disk, docker).
GROUP = "root:x:0:app\ndisk:x:6:app\napp:x:2345:\nextra:x:3456:app\ndocker:x:105:app\n"
HOST_RESOLV = open("/etc/resolv.conf").read()


@pytest.fixture(scope="module")
def dr(plug_images, session_dir):
    """name -> tag: the drapp image without User, with User app's uid, with a numeric User that
    has no entry (gid 0), and with a User the image does not have."""
    ctx = os.path.join(session_dir, "plug-docker-run")
    os.makedirs(ctx, exist_ok=True)
    for name, text in {"drapp.py": DRAPP, "passwd": PASSWD, "group": GROUP}.items():
        with open(os.path.join(ctx, name), "w") as f:
            f.write(text)
    tags = {}
    for name, user in {"plain": None, "user": "1234", "gid0": "4321", "ghost": "ghost"}.items():
        df = os.path.join(ctx, f"Dockerfile.{name}")
        with open(df, "w") as f:
            f.write(f"FROM {plug_images.v1}\nCOPY drapp.py /srv/drapp.py\n"
                    "COPY passwd /etc/passwd\nCOPY group /etc/group\n"
                    + (f"USER {user}\n" if user else ""))
        tag = f"{PREFIX}dr-{name}:latest"
        plug_images.extra_tags.append(tag)
        udlib.docker("build", "-q", "--network", "none", "-f", df, "-t", tag, ctx,
                     env=dict(os.environ, DOCKER_BUILDKIT="0"))
        tags[name] = tag
    return tags


@pytest.fixture
def plug(scratch, plug_images):
    h = Harness(scratch, plug_images)
    yield h
    h.cleanup()


def _options(form, plug, port, image, drop=(), extra=()):
    make = {"form1": form1_options, "form2": form2_options}[form]
    opts = []
    for k, v in make(plug.workdir, port, image):
        if k in drop:
            continue
        if k == "wsgi-file":
            v = "/srv/drapp.py"
        opts.append((k, v))
    return opts + list(extra)


def _docker_lines(log):
    return [l for l in log.splitlines() if l.startswith("[docker] ")]


def _refused(plug, opts, word):
    """uWSGI stops before any worker with one [docker] line that says word."""
    u = plug.start(opts, name="refused")
    rc = u.wait_exit(60)
    log = u.log()
    assert rc is not None and rc != 0, log
    assert "spawned uWSGI worker" not in log and "WSGI app 0" not in log, log
    lines = [l for l in _docker_lines(log)
             if not l.startswith(("[docker] enabling master-as-root", "[docker] the whole"))]
    assert len(lines) == 1 and word in lines[0], lines
    plug.stop_and_check(u, expect_rc=None, lazy=False)
    return lines[0]


def _serve(plug, form, opts):
    port = dict(opts).get("http-socket").split(":")[1]
    u = plug.start(opts, name=form)
    d = u.wait_ready(int(port))
    return u, d


# ---------------------------------------------------------------- network files

@pytest.mark.parametrize("form", FORMS)
def test_network_files_reach_the_app(plug, dr, form):
    port = free_port()
    u, d = _serve(plug, form, _options(form, plug, port, dr["plain"]))
    assert "127.0.0.1\tlocalhost" in d["hosts"].splitlines(), d["hosts"]
    assert d["resolv"] == HOST_RESOLV, d["resolv"]
    assert d["hostname_file"] == os.uname().nodename + "\n", d["hostname_file"]
    assert "127.0.0.1" in d["localhost"], d["localhost"]
    points = {l.split(" - ")[0].split()[4]: l for l in d["mountinfo"].splitlines()}
    for f in ("/etc/hosts", "/etc/resolv.conf", "/etc/hostname"):
        assert points[f].split()[5].startswith("ro,"), points[f]
    plug.stop_and_check(u, lazy=(form == "form1"))


def test_no_network_files(plug, dr):
    port = free_port()
    u, d = _serve(plug, "form1", _options("form1", plug, port, dr["plain"],
                                          extra=[("docker-no-network-files", "true")]))
    assert d["hosts"] == "ERR:FileNotFoundError", d["hosts"]
    plug.stop_and_check(u)


# ---------------------------------------------------------------- the image's User

@pytest.mark.parametrize("form", FORMS)
def test_the_images_user_when_the_ini_sets_no_uid(plug, dr, form):
    """The image's User 1234 (app in its passwd, listed in root, disk, docker and extra in its
    group): the workers run as 1234 with the image's primary gid and no supplementary group at
    all; one line says so."""
    port = free_port()
    u, d = _serve(plug, form, _options(form, plug, port, dr["user"], drop=("uid", "gid")))
    assert (d["uid"], d["gid"]) == (1234, 2345), d
    assert d["groups"] == [], d["groups"]
    plug.stop_and_check(u, lazy=(form == "form1"))
    lines = [l for l in _docker_lines(u.log()) if "runs as its User" in l]
    assert len(lines) == 1 and "uid 1234, gid 2345" in lines[0], lines


@pytest.mark.parametrize("form", FORMS)
def test_the_ini_uid_wins(plug, dr, form):
    port = free_port()
    u, d = _serve(plug, form, _options(form, plug, port, dr["user"]))
    assert (d["uid"], d["gid"]) == (NOBODY, NOGROUP), d
    assert 1234 not in d["groups"] and 2345 not in d["groups"], d
    plug.stop_and_check(u, lazy=(form == "form1"))
    assert not [l for l in _docker_lines(u.log()) if "runs as its User" in l]


def test_the_ini_gid_with_the_images_uid(plug, dr):
    port = free_port()
    u, d = _serve(plug, "form1", _options("form1", plug, port, dr["user"], drop=("uid",)))
    assert (d["uid"], d["gid"]) == (1234, NOGROUP), d
    assert d["groups"] == [], d
    plug.stop_and_check(u)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("image,word", [("plain", "names no User"), ("gid0", "gid 0"),
                                        ("ghost", "its User does not resolve")])
def test_no_uid_and_no_usable_user_is_refused(plug, dr, form, image, word):
    port = free_port()
    line = _refused(plug, _options(form, plug, port, dr[image], drop=("uid", "gid")), word)
    if image == "ghost":
        assert "ghost" in line and "/etc/passwd" in line, line


def test_an_unresolvable_user_does_not_matter_when_the_ini_sets_uid(plug, dr):
    port = free_port()
    u, d = _serve(plug, "form1", _options("form1", plug, port, dr["ghost"]))
    assert d["uid"] == NOBODY, d
    plug.stop_and_check(u)


def test_docker_user(plug, dr):
    """docker-user: the helper's --user, resolved in the image; an explicit group gives that
    gid."""
    port = free_port()
    u, d = _serve(plug, "form1", _options("form1", plug, port, dr["plain"], drop=("uid", "gid"),
                                          extra=[("docker-user", "app:extra")]))
    assert (d["uid"], d["gid"], d["groups"]) == (1234, 3456, []), d
    plug.stop_and_check(u)


# ---------------------------------------------------------------- environment

@pytest.mark.parametrize("form", FORMS)
def test_docker_env_over_the_images_env(plug, dr, form, plug_images):
    port = free_port()
    opts = _options(form, plug, port, dr["plain"],
                    extra=[("docker-env", "GREETING=from-the-ini"), ("docker-env", "NEW=a=b"),
                           ("docker-env", "EMPTY=")])
    u, d = _serve(plug, form, opts)
    env = d["environ"]
    assert env["GREETING"] == "from-the-ini", env
    assert env["NEW"] == "a=b" and env["EMPTY"] == "", env
    assert env["UDPLUG_ONLY_V1"] == "present-in-v1", env
    plug.stop_and_check(u, lazy=(form == "form1"))


def test_docker_image_env_off_keeps_docker_env(plug, dr, plug_images):
    port = free_port()
    u, d = _serve(plug, "form1", _options("form1", plug, port, dr["plain"], extra=[
        ("docker-image-env", "false"), ("docker-env", "ONLY=mine")]))
    env = d["environ"]
    assert env["ONLY"] == "mine", env
    for k in plug_images.env[plug_images.v1]:
        assert k not in env, (k, env)
    plug.stop_and_check(u)


def test_docker_env_false_is_the_old_switch(plug, dr, plug_images):
    """docker-env = false, from before docker-image-env: still keeps the image's Env out, with
    one line saying what to write now."""
    port = free_port()
    u, d = _serve(plug, "form1", _options("form1", plug, port, dr["plain"],
                                          extra=[("docker-env", "false")]))
    for k in plug_images.env[plug_images.v1]:
        assert k not in d["environ"], (k, d["environ"])
    plug.stop_and_check(u)
    lines = [l for l in _docker_lines(u.log()) if "deprecated" in l]
    assert len(lines) == 1 and "docker-image-env = false" in lines[0], lines


@pytest.mark.parametrize("key,value,word", [
    ("docker-env", "NOVALUE", "expected KEY=VALUE"),
    ("docker-env", "=x", "expected KEY=VALUE"),
    ("docker-read-only", "maybe", "expected true or false"),
    ("docker-allow-root", "sure", "expected true or false"),
    ("docker-no-confine", "2", "expected true or false"),
    ("docker-image-env", "nope", "expected true or false"),
    ("docker-no-network-files", "tru", "expected true or false"),
])
def test_bad_values_are_one_line(plug, dr, key, value, word):
    port = free_port()
    line = _refused(plug, _options("form1", plug, port, dr["plain"], extra=[(key, value)]), word)
    assert key in line and value in line, line


def test_boolean_spellings(plug, dr):
    """uWSGI's own spellings stay booleans: docker-read-only = off is false."""
    port = free_port()
    u, d = _serve(plug, "form1", _options("form1", plug, port, dr["plain"], extra=[
        ("docker-read-only", "off"), ("docker-allow-root", "No")]))
    root = [l for l in d["mountinfo"].splitlines() if l.split(" - ")[0].split()[4] == "/"][-1]
    assert root.split()[5].startswith("rw"), root
    plug.stop_and_check(u)


# ---------------------------------------------------------------- tmpfs, /dev/shm

def test_docker_tmpfs_options_and_shm_size(plug, dr):
    port = free_port()
    u, d = _serve(plug, "form1", _options("form1", plug, port, dr["plain"], extra=[
        ("docker-tmpfs", "/mnt/t:size=1m,mode=700"), ("docker-shm-size", "8m")]))
    mi = {l.split(" - ")[0].split()[4]: l for l in d["mountinfo"].splitlines()}
    assert "size=1024k" in mi["/mnt/t"] and "mode=700" in mi["/mnt/t"], mi["/mnt/t"]
    assert "noexec" in mi["/mnt/t"].split(" - ")[0], mi["/mnt/t"]
    assert "size=8192k" in mi["/dev/shm"], mi["/dev/shm"]
    plug.stop_and_check(u)


def test_bad_docker_tmpfs_is_one_line(plug, dr):
    """The helper refuses it; its one line is the plugin's one line."""
    port = free_port()
    _refused(plug, _options("form1", plug, port, dr["plain"],
                            extra=[("docker-tmpfs", "/mnt/t:dev")]), "refusing 'dev'")


assert HELPER


def test_a_rollout_onto_an_image_that_would_run_as_root_stops(plug, dr, plug_images):
    """No uid in the ini: a chain reload onto an image without User would run the app as root;
    the rollout stops with one line and the workers keep the image's User they had."""
    import time
    from plugin_support import get_json, wait_for
    tag = PREFIX + "dr-rollout:live"
    plug_images.extra_tags.append(tag)
    udlib.docker("tag", dr["user"], tag)
    chain = plug.path("chain")
    with open(chain, "w"):
        pass
    os.utime(chain, (time.time() - 100, time.time() - 100))
    port = free_port()
    opts = _options("form1", plug, port, tag, drop=("uid", "gid"),
                    extra=[("touch-chain-reload", chain), ("docker-canary-timeout", "20")])
    u, d = _serve(plug, "form1", opts)
    assert d["uid"] == 1234, d
    udlib.docker("tag", dr["plain"], tag)
    os.utime(chain, (time.time() + 10, time.time() + 10))
    assert wait_for(lambda: "[docker] rollout of image" in u.log(), timeout=60), u.tail()
    stopped = [l for l in _docker_lines(u.log()) if "rollout of image" in l]
    assert len(stopped) == 1 and "stopped" in stopped[0] and "names no User" in stopped[0], stopped
    for _ in range(4):
        assert get_json(port)["uid"] == 1234
    plug.stop_and_check(u)
