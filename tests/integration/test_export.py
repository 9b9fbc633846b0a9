"""Export mode (issue 4): `--layers export` streams GET /images/{name}/get into a shared layer cache
(`--cache-dir`), and the root built from the cache must look, from inside, exactly like the root
built from the daemon's own layer directories (`--layers direct`).

Every test uses its own fresh cache directory under the session's scratch directory (never the
default /var/lib/uwsgi-docker) and removes it afterwards. Images are built offline: a busybox base
and crafted images (xattrs, file capabilities, tar whiteouts, hostile members) are docker-archive
tarballs built in Python (archives.py) and `docker load`ed; the feature image is a `docker build`
with RUN steps. Podman (Debian's 4.3) gets the same images through `docker save | podman load`,
its API service started here on a socket in the session directory. Archives that dockerd refuses
to load (a layer whose digest is not its diffID, duplicate member names) or loads but cannot
export again (`..` members, writes through symlinks: HTTP 500), truncated exports, and daemons of
the containerd-store kind are served by an in-process fake daemon (export_support.FakeDaemon).
"""
import array
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
import types

import pytest

import archives as A
import udlib
from export_support import (FakeDaemon, RecordingProxy, LIST_SCRIPT, GET_RE, cache_layers,
                            cache_tmp, diff_ids, diff_views, export_opts, finish, inside_view,
                            inside_xattrs, layer_stat, parse_listing, remove_tree, run,
                            wait_for)
from udlib import DOCKER, describe, docker, error_line, inspect, layer_dirs, stat_snapshot

_TOKEN = f"{os.getpid()}-{os.urandom(3).hex()}"
BIG_SIZE = 50 << 20
XBIN = b"\x00\x01\xfe\xff bin"
XCAPS = A.file_caps(A.CAP_NET_RAW, A.CAP_NET_BIND_SERVICE)
LONG_NAME = "data/" + "L" * 120 + "/" + "n" * 150
UNI_NAME = "data/\u00fcn\u00ef c\u00f6d\u00e9"


def _tag(name):
    return f"udxtest-{_TOKEN}-{name}:latest"


def _load(archive_bytes):
    p = subprocess.run([DOCKER, "load"], input=archive_bytes, capture_output=True, timeout=300)
    if p.returncode != 0:
        pytest.fail(f"docker load failed: {p.stderr.decode(errors='replace')}")


def _build_env():
    env = dict(os.environ)
    env["DOCKER_BUILDKIT"] = "0"
    return env


# ---------------------------------------------------------------- session: images

FEAT_DOCKERFILE = r"""
FROM {base}
LABEL udtest.session={token}
RUN mkdir -p /data/opaque/sub /data/gonedir \
 && echo old > /data/opaque/old && echo sub > /data/opaque/sub/f \
 && echo gone > /data/gone && echo x > /data/gonedir/f \
 && echo keep > /data/keep && echo meta > /data/meta \
 && echo hl > /data/hl_a && ln /data/hl_a /data/hl_b && ln /data/hl_a /data/hl_c
RUN rm /data/gone && rm -rf /data/gonedir /data/opaque \
 && mkdir /data/opaque && echo new > /data/opaque/new \
 && chmod 600 /data/meta && chown 1234:5678 /data/meta \
 && ln /data/keep /data/keep_hard \
 && ln -s /data/keep /data/sym_abs && ln -s ../data/keep /data/sym_rel \
 && ln -s nowhere /data/sym_dangling && ln -s /data/opaque /data/sym_dir \
 && mknod /data/null c 1 3 && mknod /data/loop b 7 200 && mkfifo /data/fifo \
 && cp /bin/busybox /data/suid && chmod 4755 /data/suid \
 && mkdir /data/sgid && chmod 2775 /data/sgid && mkdir /data/sticky && chmod 1777 /data/sticky \
 && touch /data/empty && chmod 0 /data/empty \
 && echo sp > '/data/with space' && echo u > /data/{uni} \
 && mkdir -p /data/deep/a/b/c && echo d > /data/deep/a/b/c/{longname}
RUN chmod 640 /data/keep && echo top > /data/top && rm /data/hl_b && chmod 700 /data/deep/a
"""


def _xattr_layers(base_layer):
    """base + a layer with the files the next one removes + a layer with tar whiteouts, an
    opaque directory, xattrs, file capabilities, devices, owners, long and non-ASCII names."""
    pre = (A.LayerBuilder().dir("data").file("data/gone", "gone\n")
           .dir("data/opq").file("data/opq/old", "old\n").dir("data/opq/olddir")
           .file("data/opq/olddir/f", "f\n").file("data/keep", "keep\n").bytes())
    top = A.LayerBuilder().dir("data")
    top.file("data/.wh.gone")
    top.dir("data/opq").file("data/opq/.wh..wh..opq").file("data/opq/new", "new\n")
    top.file("data/xfile", "x\n", xattrs={"user.foo": "bar", "user.bin": XBIN})
    top.hardlink("data/xhard", "data/xfile")
    top.file("data/capfile", "#!/bin/sh\n", mode=0o755, xattrs={"security.capability": XCAPS})
    top.file("data/suidcap", "#!/bin/sh\n", mode=0o4755, xattrs={"security.capability": XCAPS})
    top.dir("data/xdir", xattrs={"user.dirattr": "d"})
    top.file("data/owned", "o\n", mode=0o640, uid=70000, gid=70001)
    top.chardev("data/cdev", 5, 1, mode=0o620).blockdev("data/bdev", 8, 0).fifo("data/pipe")
    top.dir("data/" + "L" * 120).file(LONG_NAME, "long\n")
    top.file(UNI_NAME, "uni\n")
    top.symlink("data/xsym", "xfile")
    top.symlink("data/longsym", "/" + LONG_NAME + "/../" + "t" * 150)
    top.hardlink("data/longhard", LONG_NAME)
    top.file("data/allbits", "a\n", mode=0o7777)
    top.dir("data/locked", mode=0o000).file("data/locked/f", "f\n", mode=0o400)
    top.dir("data/rodir", mode=0o555).file("data/rodir/f", "f\n")
    top.chardev("data/bigdev", 259, 70000, mode=0o600)
    top.file("data/biguid", "u\n", uid=3000000, gid=3000001)
    top.file("data/future", "f\n", mtime=9000000000)
    return [base_layer, pre, top.bytes()]


@pytest.fixture(scope="session")
def ximages(docker_ready, session_dir):
    """base (busybox, one loaded layer), feat (docker build with RUN steps), xattr (loaded,
    3 layers), big (base + a 50 MB random file). .info[tag] = docker image inspect."""
    imgs = types.SimpleNamespace(base=_tag("base"), feat=_tag("feat"), xattr=_tag("xattr"),
                                 big=_tag("big"), info={})
    made = []
    try:
        imgs.base_layer = A.LayerBuilder().busybox().bytes()
        _load(A.docker_archive(A.Image([imgs.base_layer], imgs.base)))
        made.append(imgs.base)

        ctx = os.path.join(session_dir, "export-feat")
        os.mkdir(ctx)
        with open(os.path.join(ctx, "Dockerfile"), "w") as f:
            f.write(FEAT_DOCKERFILE.format(base=imgs.base, token=_TOKEN, longname="n" * 150,
                                           uni="\u00fcn\u00ef"))
        p = subprocess.run([DOCKER, "build", "-q", "--network", "none", "--rm", "--force-rm",
                            "-t", imgs.feat, ctx], capture_output=True, text=True,
                           env=_build_env(), timeout=600)
        if p.returncode != 0:
            pytest.fail(f"docker build of {imgs.feat} failed:\n{p.stdout}\n{p.stderr}")
        made.append(imgs.feat)

        _load(A.docker_archive(A.Image(_xattr_layers(imgs.base_layer), imgs.xattr)))
        made.append(imgs.xattr)

        data = os.urandom(BIG_SIZE)
        imgs.big_md5 = hashlib.md5(data).hexdigest()
        big = A.LayerBuilder().dir("big").file("big/random", data).bytes()
        del data
        _load(A.docker_archive(A.Image([imgs.base_layer, big], imgs.big)))
        del big
        made.append(imgs.big)

        for t in made:
            imgs.info[t] = inspect(t)
        yield imgs
    finally:
        for t in reversed(made):
            docker("rmi", "-f", t, check=False)


def _ping(sock_path, path="/_ping"):
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(sock_path)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n".encode())
        data = s.recv(4096)
        s.close()
        return data.startswith(b"HTTP/1.1 200")
    except OSError:
        return False


@pytest.fixture(scope="session")
def podman(ximages, session_dir):
    """Podman's API service on a socket of this session, with feat and xattr loaded
    (as localhost/<tag>). Stopped (by pid) and the images removed at the end."""
    sock = os.path.join(session_dir, "podman.sock")
    log = open(os.path.join(session_dir, "podman-service.log"), "w")
    proc = subprocess.Popen(["podman", "system", "service", "--time=0", "unix://" + sock],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    names = {}
    try:
        if not wait_for(lambda: os.path.exists(sock) and _ping(sock), 60, 0.1):
            pytest.fail(f"podman system service did not answer on {sock}")
        for which in ("feat", "xattr"):
            tag = getattr(ximages, which)
            save = subprocess.Popen([DOCKER, "save", tag], stdout=subprocess.PIPE)
            load = subprocess.run(["podman", "load"], stdin=save.stdout, capture_output=True,
                                  text=True, timeout=300)
            save.stdout.close()
            save.wait(60)
            if load.returncode != 0 or save.returncode != 0:
                pytest.fail(f"docker save {tag} | podman load failed: {load.stderr}")
            names[which] = "localhost/" + tag
        # The service opens its store (and makes its overlay dir a private mount) on the first
        # request that needs it: do that here, before any test snapshots the mount table.
        if not _ping(sock, "/v1.41/images/json"):
            pytest.fail("podman's service does not list images")
        yield types.SimpleNamespace(address="unix://" + sock, names=names)
    finally:
        for n in names.values():
            subprocess.run(["podman", "rmi", "-f", n], capture_output=True, timeout=120)
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def cache(scratch):
    """A fresh cache directory (not created: the helper creates it), removed after the test."""
    d = os.path.join(scratch, "cache")
    yield d
    remove_tree(d)


# ---------------------------------------------------------------- what the images must show

def _type(v, name):
    return v[name]["type"] if name in v else None


def _check_feat(v, x):
    """The feature image really has what the comparison is about (on the direct view)."""
    for gone in ["/data/gone", "/data/gonedir", "/data/gonedir/f", "/data/opaque/old",
                 "/data/opaque/sub", "/data/hl_b"]:
        assert gone not in v, f"{gone} visible (whiteout/opaque not applied)"
    assert _type(v, "/data/opaque/new") == stat.S_IFREG
    assert v["/data/hl_a"]["links"] == ("/data/hl_a", "/data/hl_c")
    assert v["/data/hl_a"]["nlink"] >= 2
    assert v["/data/sym_abs"]["target"] == "/data/keep"
    assert v["/data/sym_rel"]["target"] == "../data/keep"
    assert v["/data/sym_dangling"]["target"] == "nowhere"
    assert _type(v, "/data/null") == stat.S_IFCHR and v["/data/null"]["rdev"] == (1, 3)
    assert _type(v, "/data/loop") == stat.S_IFBLK and v["/data/loop"]["rdev"] == (7, 200)
    assert _type(v, "/data/fifo") == stat.S_IFIFO
    assert v["/data/suid"]["mode"] == "0o4755"
    assert v["/data/sgid"]["mode"] == "0o2775"
    assert v["/data/sticky"]["mode"] == "0o1777"
    assert v["/data/empty"]["mode"] == "0o0"
    assert (v["/data/meta"]["uid"], v["/data/meta"]["gid"], v["/data/meta"]["mode"]) == \
        (1234, 5678, "0o600")
    assert "/data/with space" in v
    assert "/data/\u00fcn\u00ef" in v
    assert "/data/deep/a/b/c/" + "n" * 150 in v


def _check_xattr(v, x):
    for gone in ["/data/gone", "/data/opq/old", "/data/opq/olddir", "/data/opq/olddir/f"]:
        assert gone not in v, f"{gone} visible (tar whiteout/opaque not applied)"
    assert _type(v, "/data/opq/new") == stat.S_IFREG
    assert "/data/keep" in v
    assert v["/data/xfile"]["links"] == ("/data/xfile", "/data/xhard")
    assert v["/data/cdev"]["rdev"] == (5, 1) and v["/data/cdev"]["mode"] == "0o620"
    assert v["/data/bdev"]["rdev"] == (8, 0) and _type(v, "/data/bdev") == stat.S_IFBLK
    assert _type(v, "/data/pipe") == stat.S_IFIFO
    assert (v["/data/owned"]["uid"], v["/data/owned"]["gid"]) == (70000, 70001)
    assert v["/data/suidcap"]["mode"] == "0o4755"
    assert "/" + LONG_NAME in v and "/" + UNI_NAME in v
    assert v["/data/xfile"]["mtime"] == A.MTIME
    assert v["/data/longhard"]["links"] == ("/" + LONG_NAME, "/data/longhard")
    assert v["/data/longsym"]["target"].endswith("t" * 150)
    assert v["/data/allbits"]["mode"] == "0o7777"
    assert v["/data/locked"]["mode"] == "0o0" and "/data/locked/f" in v
    assert v["/data/bigdev"]["rdev"] == (259, 70000)
    assert (v["/data/biguid"]["uid"], v["/data/biguid"]["gid"]) == (3000000, 3000001)
    assert v["/data/future"]["mtime"] == 9000000000
    assert x.get("/data/xfile") == {"user.bin": XBIN, "user.foo": b"bar"}, x
    assert x.get("/data/xhard") == {"user.bin": XBIN, "user.foo": b"bar"}, x
    assert x.get("/data/capfile") == {"security.capability": XCAPS}, x
    assert x.get("/data/suidcap") == {"security.capability": XCAPS}, x
    assert x.get("/data/xdir") == {"user.dirattr": b"d"}, x


CHECKS = {"feat": _check_feat, "xattr": _check_xattr}


# ---------------------------------------------------------------- export == direct

def _compare_export_to_direct(ximages, cache, which, pod=None):
    """Same inside view (types, modes incl. setuid/setgid/sticky, owners, link counts and
    hard-link groups, device numbers, sizes, mtimes, symlink targets, xattrs and file
    capabilities) from the cache as from the daemon's layer dirs; against Podman, both of its
    paths must also equal dockerd's direct view. The default (the daemon's directories kept by
    hard links) runs first and must equal its daemon's direct view exactly: the same inodes."""
    tag = getattr(ximages, which)
    image, host, daemon = (pod.names[which], pod.address, "podman") if pod else (tag, None, "docker")
    keep = ["-H", host] if host else []
    kept = (inside_view(image, keep), inside_xattrs(image, keep))
    baseline = inside_view(tag, ["--layers", "direct"])
    base_x = inside_xattrs(tag, ["--layers", "direct"])
    CHECKS[which](baseline, base_x)

    views = {}
    if pod:
        direct = ["-H", host, "--layers", "direct"]
        views["podman direct"] = (inside_view(image, direct), inside_xattrs(image, direct))
    exp = export_opts(cache, host)
    views[f"{daemon} export"] = (inside_view(image, exp), inside_xattrs(image, exp))

    want = set(diff_ids(ximages.info[tag]))
    assert set(cache_layers(cache)) == want, "the cache must hold exactly the image's diffIDs"
    assert cache_tmp(cache) == []
    # The kept view is its own daemon's direct view, link counts included.
    d = diff_views(views["podman direct"][0] if pod else baseline, kept[0])
    assert not d, f"{daemon} snapshot differs from its direct view:\n  " + "\n  ".join(d[:40])
    assert kept[1] == base_x, f"{daemon} snapshot: xattrs differ:\n {base_x}\n {kept[1]}"
    for label, (v, x) in views.items():
        d = diff_views(baseline, _as_if_kept(v, baseline))
        assert not d, f"{label} differs from docker direct ({len(d)}):\n  " + "\n  ".join(d[:40])
        assert x == base_x, f"{label}: xattrs differ:\n direct: {base_x}\n {label}: {x}"


def _as_if_kept(view, direct):
    """view with each non-directory's link count doubled where direct's is twice it: a daemon
    whose layer is kept in a snapshot store counts the store's names too (the same inodes),
    what the export's own copy or the other daemon's directory does not."""
    out = {}
    for name, e in view.items():
        d = direct.get(name)
        if d and e["type"] != stat.S_IFDIR and d["nlink"] == 2 * e["nlink"]:
            e = dict(e, nlink=d["nlink"])
        out[name] = e
    return out


@pytest.mark.parametrize("which", ["feat", "xattr"])
def test_export_matches_direct_docker(ximages, cache, which):
    _compare_export_to_direct(ximages, cache, which)


@pytest.mark.parametrize("which", ["feat", "xattr"])
def test_export_matches_direct_podman(ximages, podman, cache, which):
    _compare_export_to_direct(ximages, cache, which, podman)


def test_cache_layout(ximages, cache):
    """The contract's layout: DIR/sha256/<diffID hex>/, whiteouts as 0/0 character devices,
    opaque directories marked trusted.overlay.opaque=y; the cache's own directories are not
    writable by group or others even when the caller's umask is 0."""
    tag = ximages.xattr
    # umask 0: the shared root-owned cache must still not be writable by anyone else.
    p = udlib.run([*export_opts(cache), tag, "--", "/bin/true"], preexec_fn=lambda: os.umask(0))
    assert p.returncode == 0, describe(p)
    for dirpath, dirnames, _ in os.walk(cache):
        if os.path.dirname(dirpath) == os.path.join(cache, "sha256"):
            dirnames[:] = []       # inside a layer, modes are the image's
        st = os.lstat(dirpath)
        assert st.st_uid == 0 and not st.st_mode & 0o022, \
            f"{dirpath} is {oct(st.st_mode)} owned by {st.st_uid}"
    ids = diff_ids(ximages.info[tag])
    layers = cache_layers(cache)
    assert set(layers) == set(ids)
    top = layers[ids[-1]]
    st = os.lstat(os.path.join(top, "data/gone"))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, "whiteout is not a 0/0 char device"
    assert not os.path.lexists(os.path.join(top, "data/.wh.gone"))
    assert not os.path.lexists(os.path.join(top, "data/opq/.wh..wh..opq"))
    assert os.getxattr(os.path.join(top, "data/opq"), "trusted.overlay.opaque") == b"y"
    assert os.getxattr(os.path.join(top, "data/capfile"), "security.capability") == XCAPS


FS_IOC_GETFLAGS = 0x80086601
FS_TOPDIR_FL = 0x00020000


def _inode_flags(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        buf = array.array("i", [0])
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf, True)
        return buf[0]
    except OSError:
        return None
    finally:
        os.close(fd)


def test_tmp_spreads_its_layers(ximages, cache):
    """DIR/tmp carries the "T" attribute (chattr +T) where the filesystem has it: ext4 then
    places each layer being unpacked away from the ones pruned or failed before (on ext4
    without a journal, next to them every new inode first skips every inode freed there in the
    last minutes). The layers themselves and the image's files do not get it."""
    p = run([*export_opts(cache), ximages.base, "--", "/bin/true"])
    assert p.returncode == 0, describe(p)
    flags = _inode_flags(os.path.join(cache, "tmp"))
    if flags is None:
        pytest.skip("the cache's filesystem has no inode flags")
    assert flags & FS_TOPDIR_FL, f"DIR/tmp flags {flags:#x}"
    for path in cache_layers(cache).values():
        assert not (_inode_flags(path) or 0) & FS_TOPDIR_FL, f"{path} carries T"


def test_repeated_layer(ximages, cache):
    """The same layer (one diffID) twice in one image -- Docker gives each its own directory; a
    cache keyed by diffID has one: the root must still be built (topmost occurrence wins).
    Empty layers (`RUN` steps that change nothing) repeat like this in real images."""
    x = A.LayerBuilder().dir("data").file("data/f", "x\n").bytes()
    y = A.LayerBuilder().dir("data").file("data/f", "y\n").file("data/only-y", "y\n").bytes()
    empty = A.LayerBuilder().bytes()
    img = A.Image([ximages.base_layer, empty, x, y, empty, x], _tag("repeated"))
    _load(A.docker_archive(img))
    try:
        script = "cat /data/f /data/only-y"
        direct = udlib.inside(img.tag, script, "--layers", "direct")
        assert direct == "x\ny\n"
        p = run([*export_opts(cache), img.tag, "--", "/bin/sh", "-c", script])
        assert p.returncode == 0, describe(p)
        assert p.stdout == direct
        assert set(cache_layers(cache)) == set(img.diff_ids)
        direct = inside_view(img.tag, ["--layers", "direct"])
        assert _as_if_kept(inside_view(img.tag, export_opts(cache)), direct) == direct
        # Kept (the default): the store has one directory per diffID too.
        assert udlib.inside(img.tag, script) == "x\ny\n"
        assert inside_view(img.tag, []) == inside_view(img.tag, ["--layers", "direct"])
    finally:
        docker("rmi", "-f", img.tag, check=False)


def _tree_shape(view):
    return {n: (e["type"], e.get("target"), e.get("rdev")) for n, e in view.items()}


@pytest.mark.parametrize("variant", ["dot-slash", "parentless"])
def test_whiteout_name_forms(ximages, cache, variant):
    """Whiteouts and opaque markers as other tools write them: member names with a "./" prefix
    (`tar -C root -c .`, docker import), and markers whose parent directories have no entry of
    their own in the layer. Export must hide exactly what direct hides, and add nothing."""
    pre = (A.LayerBuilder().dir("a").dir("a/b").file("a/b/c", "c\n").file("a/b/d", "d\n")
           .dir("o").dir("o/p").file("o/p/old", "old\n").dir("b").file("b/keep", "k\n").bytes())
    top = A.LayerBuilder()
    if variant == "dot-slash":
        top.dir("./").dir("./a").dir("./a/b").file("./a/b/.wh.c").file("./a/b/e", "e\n")
        top.dir("./o").dir("./o/p").file("./o/p/.wh..wh..opq").file("./o/p/new", "new\n")
    else:
        top.file("a/b/.wh.c").file("a/b/e", "e\n")
        top.file("o/p/.wh..wh..opq").file("o/p/new", "new\n")
    img = A.Image([ximages.base_layer, pre, top.bytes()], _tag("wh-" + variant))
    _load(A.docker_archive(img))
    try:
        direct = _tree_shape(inside_view(img.tag, ["--layers", "direct"]))
        assert "/a/b/c" not in direct and "/o/p/old" not in direct and "/a/b/e" in direct
        export = _tree_shape(inside_view(img.tag, export_opts(cache)))
        d = diff_views(direct, export)
        assert not d, "export differs from direct:\n  " + "\n  ".join(d)
    finally:
        docker("rmi", "-f", img.tag, check=False)


WRITE_SCRIPT = """
set -e
echo changed > /data/keep; rm /data/top; chmod 777 /data/meta; chown 1:1 /data/opaque/new
rm -rf /data/opaque; mkdir /data/opaque; echo again > /data/opaque/again
ln /data/hl_a /data/hl_new; mv /data/sgid /data/sgid2; touch /data/deep/a/b/c/new
echo x > /data/null 2>/dev/null || true; rm /data/sym_abs; ln -s /etc /data/sym_abs
chmod 4700 /data/suid; rm -rf /bin/ls; echo rw > /newfile
"""


@pytest.mark.parametrize("rw", ["tmpfs", "path"])
def test_writes_never_touch_cache(ximages, cache, scratch, rw):
    """Layers in the cache are shared by every image and instance: writes inside (copy-ups,
    deletions, renames, metadata changes) go to the rw layer only."""
    tag = ximages.feat
    udlib.inside(tag, "true", *export_opts(cache))
    before = {h: udlib.tree_snapshot(d) for h, d in cache_layers(cache).items()}
    opts = export_opts(cache)
    if rw == "path":
        opts += ["--rw-path", os.path.join(scratch, "rw")]
    out = udlib.inside(tag, WRITE_SCRIPT + "cat /data/keep /newfile", *opts)
    assert out == "changed\nrw\n"
    after = {h: udlib.tree_snapshot(d) for h, d in cache_layers(cache).items()}
    assert before.keys() == after.keys()
    for h in before:
        changed = sorted(k for k in set(before[h]) | set(after[h])
                         if before[h].get(k) != after[h].get(k))
        assert not changed, f"cached layer {h} changed: {changed[:20]}"
    again = udlib.inside(tag, "cat /data/keep; test -e /newfile && echo leaked || echo clean",
                         *export_opts(cache))
    assert again == "keep\nclean\n"


# ---------------------------------------------------------------- the cache answers

def test_second_run_exports_nothing(ximages, cache, scratch):
    proxy = RecordingProxy(os.path.join(scratch, "proxy.sock"))
    try:
        args = [*export_opts(cache, proxy.address), ximages.feat, "--", "/bin/sh", "-c",
                LIST_SCRIPT]
        r1 = run(args)
        assert r1.returncode == 0, describe(r1)
        assert proxy.gets(), f"first run exported nothing?! requests: {proxy.requests()}"
        n = len(proxy.requests())
        before = {h: layer_stat(p) for h, p in cache_layers(cache).items()}
        assert set(before) == set(diff_ids(ximages.info[ximages.feat]))

        r2 = run(args)
        assert r2.returncode == 0, describe(r2)
        second = proxy.requests()[n:]
        assert any("/images/" in r and "/json" in r for r in second), \
            f"second run did not go through the proxy: {second}"
        assert not [r for r in second if GET_RE.match(r)], f"second run exported: {second}"
        assert parse_listing(r2.stdout) == parse_listing(r1.stdout)
        after = {h: layer_stat(p) for h, p in cache_layers(cache).items()}
        assert after == before, "cached layers were replaced or re-unpacked"
    finally:
        proxy.close()


# ---------------------------------------------------------------- hostile archives

ETC_NAME = f"udxtest-abs-{_TOKEN}"
UP = "../" * 16


def _dirs(b, rel):
    parts = rel.split("/")
    for i in range(1, len(parts) + 1):
        b.dir("/".join(parts[:i]))


def _hostile_layer(kind, canary):
    """Layers docker load accepts (it unpacks in a chroot, so all of these stay inside its
    own layer directory) but that would write outside the layer if followed naively."""
    rel = canary.lstrip("/")
    b = A.LayerBuilder()
    if kind == "absolute-etc":
        b.dir("etc").file(f"/etc/{ETC_NAME}", "owned\n")
    elif kind == "absolute-canary":
        b.file(f"{canary}/abs-owned", "owned\n")
    elif kind == "dotdot":
        b.file(f"{UP}{rel}/dotdot-owned", "owned\n")
    elif kind == "dotdot-inner":
        b.dir("data").file(f"data/{UP}{rel}/dotdot-owned", "owned\n")
    elif kind == "symlink-write":
        _dirs(b, rel)
        b.symlink("link", canary).file("link/owned", "owned\n")
    elif kind == "symlink-rel-write":
        _dirs(b, rel)
        b.symlink("link", UP + rel).file("link/owned", "owned\n")
    elif kind == "symlink-root-write":
        _dirs(b, rel)
        b.symlink("link", "/").file(f"link/{rel}/owned", "owned\n")
    elif kind == "symlink-chain-write":
        b.symlink("a", "b").symlink("b", canary).file("a/owned", "owned\n")
    elif kind == "symlink-mkdir":
        b.symlink("link", canary).dir("link/newdir")
    elif kind == "symlink-hardlink":
        b.symlink("link", canary).hardlink("hl", "link/keep")
    elif kind == "symlink-rel-hardlink":
        b.dir("data").symlink("data/link", UP + rel).hardlink("hl", "data/link/keep")
    elif kind == "hardlink-etc-passwd":
        b.dir("etc").file("etc/passwd", "root:x:0:0::/:/bin/sh\n").hardlink("hl", "/etc/passwd")
    elif kind == "hardlink-abs-overwrite":
        _dirs(b, rel)
        b.file(f"{rel}/keep", "inlayer\n").hardlink("hl", f"{canary}/keep")
        b.file("hl", "owned\n")
    elif kind == "hardlink-dotdot-overwrite":
        _dirs(b, rel)
        b.file(f"{rel}/keep", "inlayer\n").hardlink("hl", f"{UP}{rel}/keep")
        b.file("hl", "owned\n")
    else:
        raise ValueError(kind)
    return b.bytes()


@pytest.fixture
def canary(scratch):
    d = os.path.join(scratch, "canary")
    os.mkdir(d)
    with open(os.path.join(d, "keep"), "w") as f:
        f.write("canary\n")
    return d


@pytest.fixture
def host_guard(canary):
    dirs = ["/etc", canary]
    with open("/etc/passwd", "rb") as f:
        passwd = f.read()
    before = {d: stat_snapshot(d) for d in dirs}
    yield
    for d in dirs:
        after = stat_snapshot(d)
        changed = sorted(k for k in set(before[d]) | set(after) if before[d].get(k) != after.get(k))
        assert not changed, f"host {d} changed: {changed}"
    assert sorted(os.listdir(canary)) == ["keep"]
    with open(os.path.join(canary, "keep")) as f:
        assert f.read() == "canary\n"
    with open("/etc/passwd", "rb") as f:
        assert f.read() == passwd
    assert not os.path.lexists(f"/etc/{ETC_NAME}")


def _assert_no_half_layer(cache, bad=()):
    layers = cache_layers(cache)
    for h in bad:
        assert h not in layers, f"layer {h} is in the cache: {sorted(layers)}"
    assert cache_tmp(cache) == [], f"left in DIR/tmp: {cache_tmp(cache)}"


HOSTILE = ["absolute-etc", "absolute-canary", "dotdot", "dotdot-inner", "symlink-write",
           "symlink-rel-write", "symlink-root-write", "symlink-chain-write", "symlink-mkdir",
           "symlink-hardlink", "symlink-rel-hardlink", "hardlink-etc-passwd",
           "hardlink-abs-overwrite", "hardlink-dotdot-overwrite"]
# dockerd loads and exports these unchanged. It loads the `..` and symlink ones too (it unpacks
# in a chroot) but cannot export them (its tar-split reassembly opens the member paths outside
# the layer dir: HTTP 500), and it refuses to load duplicate member names: those come from the
# fake daemon, which streams the archive as built.
DOCKER_LOADABLE = ["absolute-etc", "absolute-canary", "hardlink-etc-passwd"]


@pytest.mark.parametrize("kind,source", [(k, "docker") for k in DOCKER_LOADABLE] +
                         [(k, "fake") for k in HOSTILE])
def test_hostile_archive(ximages, cache, scratch, canary, host_guard, kind, source):
    """The export fails with exit 67 and one line, nothing outside the cache changes, no partial
    layer stays in the cache."""
    layer = _hostile_layer(kind, canary)
    img = A.Image([layer], _tag(f"hostile-{kind}-{source}"))
    fake = None
    if source == "docker":
        _load(A.docker_archive(img))
        opts = export_opts(cache)
    else:
        fake = _fake(scratch, img, A.docker_archive(img))
        opts = export_opts(cache, fake.address)
    try:
        if source == "docker":
            assert diff_ids(inspect(img.tag)) == img.diff_ids
        p = run([*opts, img.tag, "--", "/bin/sh", "-c", "true"])
        error_line(p, 67)
        _assert_no_half_layer(cache, img.diff_ids)
        assert cache_layers(cache) == {}
    finally:
        if fake:
            fake.close()
        else:
            docker("rmi", "-f", img.tag, check=False)


def _fake(scratch, img, archive, **kw):
    return FakeDaemon(os.path.join(scratch, "fake.sock"), img.inspect(), archive, **kw)


def _archive(img, fmt):
    if fmt == "docker":
        return A.docker_archive(img)
    if fmt == "docker25":
        return A.oci_archive(img, "tar", with_docker_manifest=True)
    return A.oci_archive(img, fmt.split("-", 1)[1] if "-" in fmt else "tar")


@pytest.mark.parametrize("fmt", ["docker", "oci", "oci-gzip", "oci-zstd", "docker25"])
def test_containerd_store_daemon_exports(ximages, cache, scratch, fmt):
    """A daemon whose image inspect has no layer dirs (Docker 29, containerd store): the default
    --layers auto exports; both archive layouts, plain/gzip/zstd layers; a second run is served
    by the cache. (Also the control for the fake-daemon failure tests below.)"""
    data = A.LayerBuilder().dir("data").file("data/hello", "hello from " + fmt + "\n").bytes()
    img = A.Image([ximages.base_layer, data], _tag("fake-" + fmt))
    fake = _fake(scratch, img, _archive(img, fmt))
    try:
        args = ["-H", fake.address, "--cache-dir", cache, img.tag, "--", "/bin/sh", "-c",
                "cat /data/hello; ls /bin/busybox"]
        p = run(args)
        assert p.returncode == 0, describe(p) + f"\nrequests: {fake.requests()}"
        assert p.stdout == f"hello from {fmt}\n/bin/busybox\n", describe(p)
        assert fake.gets(), fake.requests()
        assert set(cache_layers(cache)) == set(img.diff_ids)
        n = len(fake.requests())
        p = run(args)
        assert p.returncode == 0, describe(p)
        assert not [r for r in fake.requests()[n:] if GET_RE.match(r)], fake.requests()[n:]
    finally:
        fake.close()


@pytest.mark.parametrize("fmt", ["posix", "gnu"])
def test_sparse_layer_member(ximages, cache, scratch, fmt):
    """A docker-archive written by GNU tar --sparse, whose layer.tar member has holes where the
    layer holds runs of zeros (a file of 1 MiB of them, and the tar's own end): the holes read
    as zeros, so that the layer unpacks whole and its digest is its diffID."""
    layer = (A.LayerBuilder().dir("data").file("data/zeros", bytes(1 << 20))
             .file("data/after", "after the hole\n").bytes() + bytes(64 << 10))
    img = A.Image([ximages.base_layer, layer], _tag(f"sparse-{fmt}"))
    dense = A.docker_archive(img)
    tree = os.path.join(scratch, "sparse-tree")
    os.mkdir(tree)
    subprocess.run(["tar", "-xf", "-", "-C", tree], input=dense, check=True)
    names = subprocess.run(["tar", "-tf", "-"], input=dense, check=True,
                           capture_output=True).stdout.decode().split()
    for n in names:
        if n.endswith("/layer.tar"):
            subprocess.run(["fallocate", "--dig-holes", os.path.join(tree, n)], check=True)
    archive = subprocess.run(["tar", "--sparse", f"--format={fmt}", "-C", tree, "-cf", "-",
                              "--no-recursion", *names], check=True, capture_output=True).stdout
    listed = subprocess.run(["tar", "-tvf", "-"], input=archive, capture_output=True).stdout
    assert len(archive) < len(dense) - (1 << 20), f"GNU tar wrote no holes:\n{listed.decode()}"
    fake = _fake(scratch, img, archive)
    try:
        p = run([*export_opts(cache, fake.address), img.tag, "--", "/bin/sh", "-c",
                 "wc -c < /data/zeros; cat /data/after"])
    finally:
        fake.close()
    assert p.returncode == 0, describe(p)
    assert p.stdout == f"{1 << 20}\nafter the hole\n", describe(p)
    assert set(cache_layers(cache)) == set(img.diff_ids)


def _md5(data):
    return hashlib.md5(data).hexdigest()


# Members at least this large go through the O_DIRECT writer (layer.c, directw.h), or where
# that cannot be (a sparse member), the prefault thread (prefault.h).
PREFAULT_MIN = 256 << 10
STAT_SCRIPT = "cd /data && md5sum {names} && stat -c '%n %s %a %u %g %Y %h %b' {names}"


def _inside_files(opts, tag, names):
    """{name: (md5, size, mode, uid, gid, mtime, nlink, blocks)} as a process inside sees them."""
    p = run([*opts, tag, "--", "/bin/sh", "-c", STAT_SCRIPT.format(names=" ".join(names))])
    assert p.returncode == 0, describe(p)
    lines = p.stdout.split("\n")
    sums = {ln.split()[1]: ln.split()[0] for ln in lines[:len(names)]}
    out = {}
    for ln in lines[len(names):2 * len(names)]:
        f = ln.split()
        out[f[0]] = (sums[f[0]], int(f[1]), f[2], int(f[3]), int(f[4]), int(f[5]), int(f[6]),
                     int(f[7]))
    assert set(out) == set(names), describe(p)
    return out


def test_large_members_unpack_exactly(ximages, cache):
    """Members the O_DIRECT writer works on (from 256 KiB; whole 4 KiB blocks and not, the last
    one always libarchive's): inside, through a real daemon's export, each has exactly its
    bytes, size, mode, owner and mtime (set after the writer's last write), and the hard link
    shares them. The direct view
    agrees. (The link's header repeats its target's metadata, as docker's own tars do: dockerd
    applies a hard link header's metadata to the inode, libarchive keeps the target's.)"""
    big, exact, grow = os.urandom(3 << 20), os.urandom(PREFAULT_MIN), os.urandom(40 << 20)
    odd = os.urandom((5 << 20) + 777)
    layer = (A.LayerBuilder().dir("data")
             .file("data/big", big, mode=0o600, uid=1234, gid=5678, mtime=1600000000)
             .file("data/exact", exact).file("data/grow", grow)
             .file("data/odd", odd, mode=0o4755, mtime=1500000000)
             .hardlink("data/hl", "data/big", mode=0o600, uid=1234, gid=5678, mtime=1600000000)
             .bytes())
    img = A.Image([ximages.base_layer, layer], _tag("large-members"))
    _load(A.docker_archive(img))
    names = ["big", "exact", "hl", "grow", "odd"]
    try:
        got = _inside_files(export_opts(cache), img.tag, names)
        direct = _inside_files(["--layers", "direct"], img.tag, names)
    finally:
        docker("rmi", "-f", img.tag, check=False)
    want = {"big": (_md5(big), len(big), "600", 1234, 5678, 1600000000, 2),
            "exact": (_md5(exact), len(exact), "644", 0, 0, A.MTIME, 1),
            "grow": (_md5(grow), len(grow), "644", 0, 0, A.MTIME, 1),
            "odd": (_md5(odd), len(odd), "4755", 0, 0, 1500000000, 1)}
    want["hl"] = want["big"]
    for n in names:
        assert got[n][:7] == want[n], f"export {n}: {got[n]} != {want[n]}"
        assert direct[n][:7] == want[n], f"direct {n}: {direct[n]} != {want[n]}"
    assert set(cache_layers(cache)) == set(img.diff_ids)


def test_large_members_replace_what_was_there(ximages, cache, scratch, canary, host_guard):
    """A large member whose name is already taken in its layer -- by a symlink to a host file,
    by a file with a second hard link -- replaces the name only: the host file and the other
    link keep what they had (the O_DIRECT writer opens the member again by name, after
    libarchive created it). A large sparse member keeps its hole (the prefault thread's). dockerd refuses duplicate
    names in a layer and cannot export a sparse member again: a fake daemon serves these."""
    one, two, three = os.urandom(1 << 20), os.urandom(2 << 20), os.urandom(1 << 20)
    head = os.urandom(300 << 10)
    layer = (A.LayerBuilder().dir("data").symlink("data/link", f"{canary}/keep")
             .file("data/link", one).file("data/a", two).hardlink("data/b", "data/a")
             .file("data/a", three).sparse("data/sparse", 40 << 20, head).bytes())
    img = A.Image([ximages.base_layer, layer], _tag("large-replace"))
    fake = _fake(scratch, img, A.docker_archive(img))
    try:
        got = _inside_files(export_opts(cache, fake.address), img.tag,
                            ["link", "a", "b", "sparse"])
    finally:
        fake.close()
    assert got["link"][:2] == (_md5(one), len(one)), got
    assert got["a"][:2] == (_md5(three), len(three)) and got["a"][6] == 1, got
    assert got["b"][:2] == (_md5(two), len(two)) and got["b"][6] == 1, got
    assert got["sparse"][:2] == (_md5(head + bytes((40 << 20) - len(head))), 40 << 20), got
    assert got["sparse"][7] * 512 < 2 << 20, f"the hole was filled: {got['sparse']}"
    assert set(cache_layers(cache)) == set(img.diff_ids)


@pytest.mark.parametrize("fmt", ["docker", "oci-gzip"])
def test_layer_digest_mismatch(ximages, cache, scratch, fmt):
    """dockerd refuses to load such an image ("invalid diffID"), so a fake daemon serves it:
    the config claims a diffID that the layer's content does not hash to."""
    real = A.LayerBuilder().dir("data").file("data/evil", "not what the config says\n").bytes()
    claimed = A.sha256(A.LayerBuilder().dir("data").file("data/evil", "expected\n").bytes())
    img = A.Image([ximages.base_layer, real], _tag("mismatch-" + fmt),
                  diff_ids=[A.sha256(ximages.base_layer), claimed])
    fake = _fake(scratch, img, _archive(img, fmt))
    try:
        p = run(["-H", fake.address, *export_opts(cache), img.tag, "--", "/bin/sh", "-c", "true"])
        line = error_line(p, 67)
        assert claimed[:12] in line, f"the line does not name the layer {claimed}: {line}"
        _assert_no_half_layer(cache, [claimed, A.sha256(real)])
        assert set(cache_layers(cache)) <= {A.sha256(ximages.base_layer)}
    finally:
        fake.close()


def test_config_digest_mismatch(ximages, cache, scratch):
    """The exported config must be the one inspect named (its sha256 = the image id)."""
    img = A.Image([ximages.base_layer], _tag("cfg-mismatch"))
    other = A.Image([ximages.base_layer], _tag("cfg-mismatch"), env=("PATH=/bin", "EVIL=1"))
    doc = img.inspect()
    fake = FakeDaemon(os.path.join(scratch, "fake.sock"), doc, A.docker_archive(other))
    try:
        p = run(["-H", fake.address, *export_opts(cache), img.tag, "--", "/bin/sh", "-c",
                 "echo ran: $EVIL"])
        assert p.returncode in (66, 67), describe(p)
        error_line(p, p.returncode)
        _assert_no_half_layer(cache)
    finally:
        fake.close()


def test_truncated_export_stream(ximages, cache, scratch):
    """The daemon closes the export in the middle of a layer: a stream error (66), one line,
    no partial layer in the cache."""
    layer = A.LayerBuilder().dir("r").file("r/random", os.urandom(4 << 20)).bytes()
    img = A.Image([layer], _tag("truncated"))
    archive = A.docker_archive(img)
    fake = _fake(scratch, img, archive, truncate_at=len(archive) // 2)
    try:
        p = run(["-H", fake.address, *export_opts(cache), img.tag, "--", "/bin/sh", "-c", "true"])
        error_line(p, 66)
        _assert_no_half_layer(cache, img.diff_ids)
        assert cache_layers(cache) == {}
    finally:
        fake.close()


def test_stalled_export_times_out(ximages, cache, scratch):
    """The export stops flowing (a proxy holds it after 5 MB): with -t 1 the helper gives up
    with the daemon timeout status (66), one line, no partial layer."""
    proxy = RecordingProxy(os.path.join(scratch, "proxy.sock"), hold_get_after=5 << 20)
    try:
        t0 = time.monotonic()
        p = run(["-t", "1", *export_opts(cache, proxy.address), ximages.big, "--", "/bin/true"],
                timeout=60)
        took = time.monotonic() - t0
        held = proxy.held.is_set()
    finally:
        proxy.release()
        proxy.close()
    assert held, describe(p)
    problems = []
    if took > 5:
        problems.append(f"the stall was noticed after {took:.1f} s with -t 1")
    if p.returncode != 66:
        problems.append(f"exit {p.returncode}, expected 66 (daemon timeout)")
    assert not problems, "; ".join(problems) + "\n" + describe(p)
    error_line(p, 66)
    _assert_no_half_layer(cache, [diff_ids(ximages.info[ximages.big])[-1]])


def test_failure_while_the_daemon_stalls(ximages, cache, scratch):
    """The unpacking fails (a hostile member after 4,000 small files) while the daemon, having
    sent it, has stopped sending and keeps the connection open: the reader thread waits for the
    daemon, yet the helper ends at once with the unpacker's line (67), not at -t 30."""
    b = A.LayerBuilder().dir("d")
    for i in range(4000):
        b.file(f"d/f{i}", os.urandom(300))
    layer = b.file(f"{UP}dotdot-owned", "owned\n").file("pad", os.urandom(4 << 20)).bytes()
    img = A.Image([layer], _tag("fail-in-stall"))
    archive = A.docker_archive(img)
    fake = _fake(scratch, img, archive, hold_at=len(archive) - (2 << 20))
    try:
        t0 = time.monotonic()
        p = run(["-t", "30", *export_opts(cache, fake.address), img.tag, "--", "/bin/true"],
                timeout=90)
        took = time.monotonic() - t0
        held = fake.held.is_set()
    finally:
        fake.close()
    assert held, f"the fake daemon never held the export\n{describe(p)}"
    assert took < 10, f"{took:.1f} s: the helper waited for the stalled daemon\n{describe(p)}"
    assert "hostile member" in error_line(p, 67)
    _assert_no_half_layer(cache, img.diff_ids)
    assert cache_layers(cache) == {}


def test_slow_unpack_is_no_stall(ximages, cache, scratch):
    """With -t 1, a layer of 30,000 small files keeps the unpacking behind the reader thread
    (it waits for ring space, the daemon for socket space), and the daemon pauses 20 ms after
    every 64 KiB: the export succeeds. A stall is the daemon's silence, not the time the
    unpacking takes."""
    b = A.LayerBuilder().dir("d")
    for i in range(30000):
        b.file(f"d/{i}", b"x")
    img = A.Image([ximages.base_layer, b.bytes()], _tag("slow-unpack"))
    fake = _fake(scratch, img, A.docker_archive(img), pace=0.02)
    try:
        p = run(["-t", "1", *export_opts(cache, fake.address), img.tag, "--", "/bin/sh", "-c",
                 "ls /d | wc -l"], timeout=300)
    finally:
        fake.close()
    assert p.returncode == 0, describe(p)
    assert p.stdout.strip() == "30000", describe(p)


def test_garbage_export_stream(ximages, cache, scratch):
    """The daemon answers the export with 200 and bytes that are no tar at all: one line (66)
    that says so, nothing in the cache."""
    img = A.Image([A.LayerBuilder().dir("data").bytes()], _tag("garbage"))
    fake = _fake(scratch, img, b"this is not a tar archive\n" * 40000)
    try:
        p = run([*export_opts(cache, fake.address), img.tag, "--", "/bin/true"])
    finally:
        fake.close()
    assert "export" in error_line(p, 66)
    _assert_no_half_layer(cache, img.diff_ids)
    assert cache_layers(cache) == {}


# ---------------------------------------------------------------- concurrency and crashes

def _unpack_watcher(cache, marker):
    """Polls DIR/tmp and records every entry under which `marker` (a path of the layer being
    watched) shows up, i.e. every unpack of that layer. Returns (seen set, stop event, thread)."""
    seen = set()
    stop = threading.Event()
    tmp = os.path.join(cache, "tmp")

    def has_marker(base):
        if os.path.lexists(os.path.join(base, marker)):
            return True
        try:
            for n in os.listdir(base):
                sub = os.path.join(base, n)
                if os.path.lexists(os.path.join(sub, marker)):
                    return True
                if os.path.isdir(sub) and not os.path.islink(sub):
                    for m in os.listdir(sub):
                        if os.path.lexists(os.path.join(sub, m, marker)):
                            return True
        except OSError:
            pass
        return False

    def loop():
        while not stop.is_set():
            try:
                names = os.listdir(tmp)
            except OSError:
                names = []
            for n in names:
                if n not in seen and has_marker(os.path.join(tmp, n)):
                    seen.add(n)
            time.sleep(0.001)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return seen, stop, t


def test_four_helpers_at_once(ximages, cache, scratch):
    """Four helpers on the same uncached image: all succeed and see the same complete content;
    the big layer is unpacked once; the cache has exactly one dir per diffID."""
    proxy = RecordingProxy(os.path.join(scratch, "proxy.sock"))
    seen, stop, watcher = _unpack_watcher(cache, "big/random")
    script = LIST_SCRIPT + "; md5sum /big/random"
    procs = []
    try:
        for _ in range(4):
            procs.append(subprocess.Popen(
                [udlib.HELPER, *export_opts(cache, proxy.address), ximages.big, "--",
                 "/bin/sh", "-c", script], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, env=udlib.helper_env(),
                start_new_session=True))
        results = [finish(p, timeout=150) for p in procs]
    finally:
        stop.set()
        watcher.join(10)
        proxy.close()
    for r in results:
        assert r.returncode == 0, describe(r)
    views = []
    for r in results:
        listing, _, md5 = r.stdout.rstrip("\n").rpartition("\n")
        assert md5 == f"{ximages.big_md5}  /big/random", describe(r)
        views.append(parse_listing(listing))
    for v in views[1:]:
        d = diff_views(views[0], v)
        assert not d, "the four helpers saw different roots:\n  " + "\n  ".join(d[:20])
    view = views[0]
    assert view["/big/random"]["size"] == BIG_SIZE
    assert set(cache_layers(cache)) == set(diff_ids(ximages.info[ximages.big]))
    assert cache_tmp(cache) == []
    assert 1 <= len(proxy.gets()) <= 4, proxy.requests()
    assert len(seen) == 1, f"the 50 MB layer was unpacked {len(seen)} times: {sorted(seen)}"


def test_sigkill_mid_unpack(ximages, cache, scratch):
    """A helper killed (SIGKILL) while unpacking the 50 MB layer -- the export is held by a
    proxy after 20 MB -- leaves no usable half layer; the next run succeeds with the complete,
    correct content, and the stale temporary directory does not stay."""
    proxy = RecordingProxy(os.path.join(scratch, "proxy.sock"), hold_get_after=20 << 20)
    tmp = os.path.join(cache, "tmp")
    big_id = diff_ids(ximages.info[ximages.big])[-1]
    p = subprocess.Popen([udlib.HELPER, *export_opts(cache, proxy.address), ximages.big, "--",
                          "/bin/sh", "-c", "md5sum /big/random"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=udlib.helper_env(),
                         start_new_session=True)

    def partial():
        for dirpath, _, files in os.walk(tmp):
            if "random" in files:
                try:
                    return os.lstat(os.path.join(dirpath, "random")).st_size > (1 << 20)
                except OSError:
                    return False
        return False

    try:
        held = proxy.held.wait(60)
        caught = held and wait_for(partial, 30, 0.01)
        killed = p.poll() is None
        os.killpg(p.pid, signal.SIGKILL)
        r = finish(p)
    finally:
        proxy.release()
        proxy.close()
    assert held, f"the export never reached 20 MB: {describe(r)}"
    assert killed, f"the helper ended before it was killed: {describe(r)}"
    assert caught, f"no partial big/random under {tmp}: {list(os.walk(tmp))[:5]}"
    assert r.returncode == -signal.SIGKILL
    assert big_id not in cache_layers(cache), "a half-unpacked layer is in DIR/sha256"

    good = run([*export_opts(cache), ximages.big, "--", "/bin/sh", "-c",
                "md5sum /big/random; wc -c < /big/random"])
    assert good.returncode == 0, describe(good)
    assert good.stdout.split() == [ximages.big_md5, "/big/random", str(BIG_SIZE)], describe(good)
    assert set(cache_layers(cache)) == set(diff_ids(ximages.info[ximages.big]))
    pr = run(["--cache-prune", "--cache-dir", cache])
    assert pr.returncode == 0, describe(pr)
    assert cache_tmp(cache) == [], \
        f"stale half layer still in DIR/tmp after a successful run and --cache-prune: {cache_tmp(cache)}"
    again = run([*export_opts(cache), ximages.big, "--", "/bin/sh", "-c", "md5sum /big/random"])
    assert again.returncode == 0 and again.stdout.split()[0] == ximages.big_md5, describe(again)


RSS_PROBE = ("import resource, subprocess, sys; "
             "r = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL); "
             "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
RSS_LIMIT_KB = 32 << 10


def test_export_streams_in_bounded_memory(ximages, cache):
    """The 50 MB layer is streamed, never held whole: the helper's peak RSS while exporting and
    unpacking it stays well below the layer's size."""
    p = subprocess.run(["/usr/bin/python3", "-c", RSS_PROBE, udlib.HELPER, *export_opts(cache),
                        ximages.big, "--", "/bin/true"], capture_output=True, text=True,
                       env=udlib.helper_env(), timeout=120)
    status, rss_kb = (int(x) for x in p.stdout.split()[-2:])
    assert status == 0, describe(p)
    assert diff_ids(ximages.info[ximages.big])[-1] in cache_layers(cache)
    assert rss_kb < RSS_LIMIT_KB, f"peak RSS {rss_kb} kB while unpacking a {BIG_SIZE >> 20} MB layer"


def test_prune_during_unpack(ximages, cache, scratch):
    """--cache-prune while another helper is in the middle of unpacking (its export held by a
    proxy after 20 MB). The cache also holds a stale layer (its image removed). The prune must
    overlap the unpack (shown: it ends, or sleeps on the cache's lock, while the export is still
    held and the unpacking helper still runs), remove exactly the stale layer, and leave the
    in-flight unpack alone: that helper then completes and its cached layer is complete."""
    def _sleeps_on_a_lock(pid):
        """True while pid sleeps in flock()/fcntl locking (its kernel stack names a lock wait)."""
        try:
            with open(f"/proc/{pid}/stack") as f:
                stack = f.read()
        except OSError:
            return False
        return any(w in stack for w in ("locks_lock_inode_wait", "flock_lock_inode_wait",
                                        "posix_lock_inode_wait", "__x64_sys_flock"))

    layer = A.LayerBuilder().dir("p").file("p/stale", f"stale {_TOKEN}\n" * 100).bytes()
    stale = A.Image([ximages.base_layer, layer], _tag("prune-overlap"))
    _load(A.docker_archive(stale))
    try:
        out = udlib.inside(stale.tag, "head -1 /p/stale", *export_opts(cache))
        assert out == f"stale {_TOKEN}\n"
    finally:
        docker("rmi", stale.tag)
    stale_id = A.sha256(layer)
    assert stale_id in cache_layers(cache)

    proxy = RecordingProxy(os.path.join(scratch, "proxy.sock"), hold_get_after=20 << 20)
    p = subprocess.Popen([udlib.HELPER, *export_opts(cache, proxy.address), ximages.big, "--",
                          "/bin/sh", "-c", "md5sum /big/random"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=udlib.helper_env(),
                         start_new_session=True)
    prune = None
    overlap = None
    try:
        held = proxy.held.wait(60)
        # The prune may wait for the unpack (a lock); the held export must flow again well
        # before the helper's 10 s read timeout.
        prune = subprocess.Popen([udlib.HELPER, "--cache-prune", "--cache-dir", cache],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=udlib.helper_env(),
                                 start_new_session=True)
        deadline = time.monotonic() + 5
        while overlap is None and time.monotonic() < deadline:
            if prune.poll() is not None:
                overlap = "the prune ended"
            elif _sleeps_on_a_lock(prune.pid):
                overlap = "the prune sleeps on a file lock"
            else:
                time.sleep(0.02)
        # Both facts read while the export is still held and the unpacking helper still runs.
        still_held = not proxy.released.is_set() and p.poll() is None
    finally:
        proxy.release()
        r = finish(p, timeout=120)
        pr = finish(prune, timeout=120) if prune else None
        proxy.close()
    assert held, describe(r)
    assert overlap and still_held, \
        f"the prune did not overlap the unpack (state: {overlap}, export held: {still_held})"
    assert pr.returncode == 0, describe(pr)
    lines = pr.stdout.splitlines()
    ours = [PRUNE_LINE.match(l) for l in lines[:-1]]
    removed = [m.group(1) for m in ours if m and m.group(3) == cache]
    assert removed == [stale_id] and all(ours) and PRUNE_SUM.match(lines[-1]), \
        f"the prune should have removed exactly the stale layer {stale_id}:\n{describe(pr)}"
    assert r.returncode == 0, describe(r)
    assert r.stdout.split()[0] == ximages.big_md5, describe(r)
    assert set(cache_layers(cache)) == set(diff_ids(ximages.info[ximages.big]))
    again = run([*export_opts(cache), ximages.big, "--", "/bin/sh", "-c",
                 "md5sum /big/random; wc -c < /big/random"])
    assert again.returncode == 0, describe(again)
    assert again.stdout.split() == [ximages.big_md5, "/big/random", str(BIG_SIZE)]


# ---------------------------------------------------------------- --cache-prune

PRUNE_LINE = re.compile(r"^removed sha256:([0-9a-f]{64}) \(([0-9]+) bytes\) from (/\S+)$")
PRUNE_SUM = re.compile(r"^freed ([0-9]+) bytes in ([0-9]+) layers?$")


def _prune(cache):
    """--gc: what it removed from cache (it also collects the daemon's snapshot store)."""
    p = run(["--gc", "--cache-dir", cache])
    assert p.returncode == 0, describe(p)
    lines = p.stdout.splitlines()
    assert lines, describe(p)
    m = PRUNE_SUM.match(lines[-1])
    assert m, f"no summary line: {describe(p)}"
    removed, total = {}, 0
    for line in lines[:-1]:
        r = PRUNE_LINE.match(line)
        assert r, f"unexpected prune output line {line!r}: {describe(p)}"
        total += int(r.group(2))
        if r.group(3) == cache:
            removed[r.group(1)] = int(r.group(2))
    assert int(m.group(2)) == len(lines) - 1, describe(p)
    assert int(m.group(1)) == total, describe(p)
    return removed


def test_cache_prune_after_rmi(ximages, cache, scratch):
    """Layers of a removed image go (and are reported); a kept image's layers stay; a layer
    used by a live (pinned) namespace stays until the pin is released."""
    def small(name):
        layer = A.LayerBuilder().dir("p").file(f"p/{name}", f"{name} {_TOKEN}\n" * 100).bytes()
        img = A.Image([ximages.base_layer, layer], _tag("prune-" + name))
        _load(A.docker_archive(img))
        return img, A.sha256(layer)

    base_id = A.sha256(ximages.base_layer)
    imgs = {}
    pin = os.path.join(scratch, "pin")
    pinned = False
    try:
        for name in ("keep", "gone", "pinned"):
            imgs[name] = small(name)
        for name in ("keep", "gone"):
            out = udlib.inside(imgs[name][0].tag, f"cat /p/{name} | head -1",
                               *export_opts(cache))
            assert out == f"{name} {_TOKEN}\n"
        p = run([*export_opts(cache), "--pin", pin, imgs["pinned"][0].tag])
        assert p.returncode == 0, describe(p)
        pinned = True
        ids = {n: h for n, (_, h) in imgs.items()}
        assert set(cache_layers(cache)) == {base_id, *ids.values()}

        docker("rmi", imgs["gone"][0].tag, imgs["pinned"][0].tag)
        gone_dir = cache_layers(cache)[ids["gone"]]
        removed = _prune(cache)
        assert set(removed) == {ids["gone"]}, f"first prune removed {removed}"
        assert removed[ids["gone"]] > 0
        assert not os.path.lexists(gone_dir)
        assert set(cache_layers(cache)) == {base_id, ids["keep"], ids["pinned"]}

        # the pinned namespace still sees its layer
        r = subprocess.run(["nsenter", f"--mount={pin}", "--", "/bin/cat", "/p/pinned"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and r.stdout.startswith("pinned "), r

        subprocess.run(["umount", pin], check=True, timeout=30)
        pinned = False
        removed = _prune(cache)
        assert set(removed) == {ids["pinned"]}, f"second prune removed {removed}"
        assert set(cache_layers(cache)) == {base_id, ids["keep"]}
        assert _prune(cache) == {}

        out = udlib.inside(imgs["keep"][0].tag, "head -1 /p/keep", *export_opts(cache))
        assert out == f"keep {_TOKEN}\n"
    finally:
        if pinned:
            subprocess.run(["umount", pin], capture_output=True)
        for img, _ in imgs.values():
            docker("rmi", "-f", img.tag, check=False)


# ---------------------------------------------------------------- --print

def test_print_export_lists_cache_dirs(ximages, cache):
    tag = ximages.feat
    info = ximages.info[tag]
    udlib.inside(tag, "true", *export_opts(cache))
    p = run(["--print", *export_opts(cache), tag])
    assert p.returncode == 0, describe(p)
    plan = json.loads(p.stdout)
    assert plan["layers_mode"] == "export", plan
    assert plan["id"] == info["Id"]
    want = [os.path.join(os.path.realpath(cache), "sha256", h) for h in reversed(diff_ids(info))]
    assert [os.path.realpath(l) for l in plan["layers"]] == want, plan["layers"]

    for opts, mode, layers in (([], "snapshot", udlib.kept_dirs(info)),
                               (["--layers", "auto"], "snapshot", udlib.kept_dirs(info)),
                               (["--layers", "direct"], "direct", layer_dirs(info))):
        p = run(["--print", *opts, tag])
        assert p.returncode == 0, describe(p)
        plan = json.loads(p.stdout)
        assert plan["layers_mode"] == mode, (opts, plan)
        assert plan["layers"] == layers, (opts, plan)


def test_print_export_uncached_changes_nothing(ximages, cache):
    """--print changes nothing: with nothing cached it exports nothing either."""
    tag = ximages.feat
    p = run(["--print", *export_opts(cache), tag])
    assert p.returncode == 0, describe(p)
    plan = json.loads(p.stdout)
    assert plan["layers_mode"] == "export", plan
    assert cache_layers(cache) == {}, "--print unpacked layers"
    want = [os.path.join(os.path.realpath(cache), "sha256", h)
            for h in reversed(diff_ids(ximages.info[tag]))]
    assert [os.path.realpath(l) for l in plan["layers"]] == want, plan["layers"]


# ---------------------------------------------------------------- a cache another user controls

NOBODY = 65534


def _chown_tree(path, uid, gid=NOBODY):
    os.lchown(path, uid, gid)
    for dirpath, dirnames, filenames in os.walk(path):
        for n in dirnames + filenames:
            os.lchown(os.path.join(dirpath, n), uid, gid)


def _forge_layer(cache, hex_id):
    """What another user can leave in a cache directory: sha256/<real diffID>/ holding a
    busybox root whose /etc/motd says FORGED, with the l/ short name the cache uses."""
    layer = os.path.join(cache, "sha256", hex_id)
    for d in ("bin", "etc"):
        os.makedirs(os.path.join(layer, d))
    shutil.copy("/bin/busybox", os.path.join(layer, "bin", "busybox"))
    for a in ("sh", "cat"):
        os.symlink("busybox", os.path.join(layer, "bin", a))
    with open(os.path.join(layer, "etc", "motd"), "w") as f:
        f.write("FORGED\n")
    for d in ("tmp", "locks", "l", "users"):
        os.makedirs(os.path.join(cache, d), exist_ok=True)
    os.symlink(f"../sha256/{hex_id}", os.path.join(cache, "l", hex_id[:20]))
    for dirpath, dirnames, _ in os.walk(cache):
        for n in dirnames:
            os.chmod(os.path.join(dirpath, n), 0o755)
    os.chmod(cache, 0o755)


UNTRUSTED = ["owner", "symlink", "group-writable", "other-writable", "sub-owner", "layer-owner",
             "parent-owner", "parent-symlink", "parent-writable"]


def _untrusted_cache(scratch, how, hex_id):
    """Returns the --cache-dir to give the helper for each way of handing it a forged cache."""
    if how.startswith("parent-"):
        parent = os.path.join(scratch, "parent")
        os.mkdir(parent, 0o755)
        cache = os.path.join(parent, "cache")
        _forge_layer(cache, hex_id)
        if how == "parent-owner":
            os.lchown(parent, NOBODY, NOBODY)
            return cache
        if how == "parent-writable":
            os.chmod(parent, 0o777)
            return cache
        os.symlink(parent, os.path.join(scratch, "plink"))
        return os.path.join(scratch, "plink", "cache")
    cache = os.path.join(scratch, "forged")
    _forge_layer(cache, hex_id)
    if how in ("owner", "symlink"):
        _chown_tree(cache, NOBODY)
    elif how == "group-writable":
        os.lchown(cache, 0, NOBODY)
        os.chmod(cache, 0o775)
    elif how == "other-writable":
        os.chmod(cache, 0o757)
    elif how == "sub-owner":
        _chown_tree(os.path.join(cache, "sha256"), NOBODY)
    elif how == "layer-owner":
        _chown_tree(os.path.join(cache, "sha256", hex_id), NOBODY)
    if how == "symlink":
        os.symlink(cache, os.path.join(scratch, "link"))
        return os.path.join(scratch, "link")
    return cache


@pytest.mark.parametrize("how", UNTRUSTED)
def test_untrusted_cache_refused(ximages, scratch, how):
    """A cache directory that uid 65534 owns (or could change: a parent it owns, group or other
    write, a symlink on the way) holding a forged layer under the image's real diffID: the
    helper refuses it with exit 67 and one line, and never shows the forged file."""
    hex_id = diff_ids(ximages.info[ximages.base])[0]
    cache = _untrusted_cache(scratch, how, hex_id)
    p = run([*export_opts(cache), ximages.base, "--", "/bin/sh", "-c", "cat /etc/motd"])
    assert "FORGED" not in p.stdout, f"the forged layer was mounted: {describe(p)}"
    line = error_line(p, 67)
    assert "cache" in line, line
    if how != "layer-owner":    # prune only removes: a forged layer in a sound cache may go
        q = run(["--cache-prune", "--cache-dir", cache])
        error_line(q, 67)


def test_trusted_cache_under_sticky_tmp(ximages, cache):
    """The control: a cache the helper creates (root, 0700) under /tmp (root, sticky) works,
    and what it creates inside is root's and writable by root alone."""
    out = udlib.inside(ximages.base, "echo ok", *export_opts(cache))
    assert out == "ok\n"
    for dirpath, dirnames, _ in os.walk(cache):
        for n in [""] + dirnames:
            if dirpath != cache and dirpath.startswith(os.path.join(cache, "sha256") + "/"):
                continue
            st = os.lstat(os.path.join(dirpath, n) if n else dirpath)
            if stat.S_ISLNK(st.st_mode):
                continue        # l/ short names
            assert st.st_uid == 0 and not st.st_mode & 0o022, (dirpath, n, oct(st.st_mode))


# ---------------------------------------------------------------- unpacking limits, long names

def _limit_layer(kind):
    b = A.LayerBuilder().dir("data")
    if kind == "sparse-1tib":
        b.sparse("data/huge", 1 << 40, b"hello\n")
    elif kind == "files":
        for i in range(3000):
            b.file(f"data/f{i}", "")
    elif kind == "bytes":
        b.file("data/big", os.urandom(3 << 20))
    return b.bytes()


LIMITS = [("sparse-1tib", [], "--cache-max-apparent"),
          ("files", ["--cache-max-files", "2000"], "--cache-max-files"),
          ("bytes", ["--cache-max-bytes", "2M", "--cache-max-apparent", "1G"], "--cache-max-bytes"),
          ("bytes", ["--cache-max-apparent", "1M"], "--cache-max-apparent")]


@pytest.mark.parametrize("kind,opts,limit", LIMITS, ids=[f"{k}{o and o[1]}" for k, o, _ in LIMITS])
def test_unpack_limits(ximages, cache, scratch, kind, opts, limit):
    """A layer past a limit (a sparse member declaring 1 TiB against the default apparent-size
    limit; more members, more data or more apparent size than asked): exit 67, one line naming
    the limit and the layer, nothing of that layer in the cache, DIR/tmp empty."""
    layer = _limit_layer(kind)
    img = A.Image([ximages.base_layer, layer], _tag("limit-" + kind))
    fake = _fake(scratch, img, A.docker_archive(img))
    try:
        p = run(["-H", fake.address, *export_opts(cache), *opts, img.tag, "--", "/bin/true"])
        line = error_line(p, 67)
        assert limit in line and "layer" in line, line
        _assert_no_half_layer(cache, [A.sha256(layer)])
        ok = run(["-H", fake.address, *export_opts(cache), img.tag, "--", "/bin/true"]) \
            if kind != "sparse-1tib" else None
        if ok is not None:
            assert ok.returncode == 0, describe(ok)
    finally:
        fake.close()


def test_many_small_files_within_defaults(ximages, cache, scratch):
    """The defaults let a layer of 20,000 members through (real images have 10k-200k)."""
    b = A.LayerBuilder().dir("data")
    for i in range(20):
        b.dir(f"data/d{i}")
        for j in range(1000):
            b.file(f"data/d{i}/f{j}", "")
    img = A.Image([ximages.base_layer, b.bytes()], _tag("manyfiles"))
    fake = _fake(scratch, img, A.docker_archive(img))
    try:
        p = run(["-H", fake.address, *export_opts(cache), img.tag, "--", "/bin/sh", "-c",
                 "ls /data/d19 | wc -l"])
        assert p.returncode == 0 and p.stdout.strip() == "1000", describe(p)
    finally:
        fake.close()


@pytest.mark.parametrize("how", ["name-6000", "component-300", "hardlink-6000", "symlink-6000"])
def test_long_names_refused(ximages, cache, scratch, how):
    """A member name or link target longer than PATH_MAX, or with a component longer than
    NAME_MAX, is refused (exit 67, one line), never cut short; nothing is left behind."""
    b = A.LayerBuilder().dir("data")
    deep = "data/" + "/".join(["D" * 200] * 30)          # 6,000+ characters
    if how == "name-6000":
        b.file(deep + "/x", "long\n")
    elif how == "component-300":
        b.file("data/" + "C" * 300, "long\n")
    elif how == "hardlink-6000":
        b.file("data/t", "t\n").hardlink("data/h", deep + "/../../t")
    else:
        b.symlink("data/s", "/" + "/".join(["S" * 200] * 30))
    layer = b.bytes()
    img = A.Image([ximages.base_layer, layer], _tag("longname-" + how))
    fake = _fake(scratch, img, A.docker_archive(img))
    try:
        p = run(["-H", fake.address, *export_opts(cache), img.tag, "--", "/bin/true"])
        error_line(p, 67)
        _assert_no_half_layer(cache, [A.sha256(layer)])
    finally:
        fake.close()


# ---------------------------------------------------------------- use records and reused inodes

def _mnt_ino(pid):
    return int(re.match(r"mnt:\[(\d+)\]", os.readlink(f"/proc/{pid}/ns/mnt")).group(1))


def test_prune_ignores_reused_namespace_inode(ximages, cache, scratch):
    """A use record outlives its namespace; the kernel hands the dead namespace's inode number
    to the next namespace. Simulated here by giving the record the inode of a live namespace
    (unshare -m sleep): prune must still see the recorded namespace as dead and remove its
    layer -- while the layer of a live pinned namespace stays."""
    layer = A.LayerBuilder().dir("p").file("p/reuse", f"reuse {_TOKEN}\n").bytes()
    img = A.Image([ximages.base_layer, layer], _tag("reuse"))
    pinned_layer = A.LayerBuilder().dir("p").file("p/pinned", f"pin {_TOKEN}\n").bytes()
    pimg = A.Image([ximages.base_layer, pinned_layer], _tag("reuse-pinned"))
    pin = os.path.join(scratch, "pin")
    sleeper = None
    fake = _fake(scratch, img, A.docker_archive(img))
    pfake = FakeDaemon(os.path.join(scratch, "pfake.sock"), pimg.inspect(),
                       A.docker_archive(pimg))
    try:
        # the pin first: the next namespace then cannot take its inode
        p = run(["-H", pfake.address, *export_opts(cache), "--pin", pin, pimg.tag])
        assert p.returncode == 0, describe(p)
        p = run(["-H", fake.address, *export_opts(cache), img.tag, "--", "/bin/true"])
        assert p.returncode == 0, describe(p)
        users = os.path.join(cache, "users")
        pin_ino = os.stat(pin).st_ino
        dead = [n for n in os.listdir(users)
                if int(re.match(r"mnt-(\d+)", n).group(1)) != pin_ino]
        assert len(dead) == 1, os.listdir(users)
        sleeper = subprocess.Popen(["unshare", "-m", "sleep", "120"])
        live = wait_for(lambda: _mnt_ino(sleeper.pid) if os.readlink(
            f"/proc/{sleeper.pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt") else None, 10)
        assert live, "unshare -m did not make a namespace"
        reused = re.sub(r"^mnt-\d+", f"mnt-{live}", dead[0])
        os.rename(os.path.join(users, dead[0]), os.path.join(users, reused))
        # dockerd knows neither image: only the records can keep layers
        removed = _prune(cache)
        assert A.sha256(layer) in removed, f"the dead namespace's layer stayed: {removed}"
        assert A.sha256(pinned_layer) not in removed, removed
        assert A.sha256(pinned_layer) in cache_layers(cache)
        r = subprocess.run(["nsenter", f"--mount={pin}", "--", "/bin/cat", "/p/pinned"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and r.stdout == f"pin {_TOKEN}\n", r
    finally:
        if sleeper:
            sleeper.kill()
            sleeper.wait()
        if os.path.ismount(pin) or os.path.exists(pin):
            subprocess.run(["umount", pin], capture_output=True)
        fake.close()
        pfake.close()


# ---------------------------------------------------------------- overlay xattrs in direct mode

def test_direct_mode_ignores_image_redirects(ximages, cache):
    """dockerd keeps an image's trusted.overlay.redirect in its own layer dirs; overlayfs follows
    it on lower layers unless mounted with redirect_dir=nofollow (redirect_always_follow makes
    even redirect_dir=off follow). /data/r (empty, redirect "/x") must stay empty in direct mode,
    as it is in export mode, which drops the attribute."""
    base = A.LayerBuilder().busybox().dir("x").file("x/hidden", "hidden\n").bytes()
    top = A.LayerBuilder().dir("data").dir("data/r",
                                           xattrs={"trusted.overlay.redirect": "/x"}).bytes()
    img = A.Image([base, top], _tag("redirect"))
    _load(A.docker_archive(img))
    try:
        up = inspect(img.tag)["GraphDriver"]["Data"]["UpperDir"]
        assert "trusted.overlay.redirect" in os.listxattr(up + "/data/r")
        views = {}
        for mode in ("export", "direct"):
            p = run([*export_opts(cache, mode=mode), img.tag, "--", "/bin/ls", "-a", "/data/r"])
            assert p.returncode == 0, describe(p)
            views[mode] = p.stdout.split()
        assert views["export"] == [".", ".."], views
        assert views["direct"] == views["export"], f"direct mode followed the redirect: {views}"
    finally:
        docker("rmi", "-f", img.tag, check=False)
