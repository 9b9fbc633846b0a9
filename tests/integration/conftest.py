"""Integration tests of uwsgi-docker-rootfs against the real dockerd.

Session fixtures build the test images offline (legacy builder, `--network none`, FROM scratch +
the host's busybox-static; `docker import` for single-layer and hostile images) and remove them
at the end. An autouse fixture checks that the host's mount table and the watched directories
are the same after every test as before it.
"""
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import types

import pytest

import udlib
from registry_support import pulled, registry  # noqa: F401  (session fixtures of every module)
from udlib import DOCKER, HELPER, docker, inspect

BUSYBOX = "/bin/busybox"
# Per-session names, so that two sessions on one daemon (CI jobs, a developer's run) never
# build over or remove each other's images. The builds start with a per-session LABEL so that
# their intermediate images are never another build's cache: removing ours at the end cannot
# pull a parent from under someone else's build ("unknown parent image ID").
_TOKEN = f"{os.getpid()}-{os.urandom(3).hex()}"
TAGS = types.SimpleNamespace(**{
    attr: f"udtest-{_TOKEN}-{name}:latest" for attr, name in [
        ("busybox", "busybox"), ("layers", "layers"), ("single", "single"), ("many", "many"),
        ("hostile_proc", "hostile-proc"), ("hostile_dev", "hostile-dev"),
        ("hostile_sys", "hostile-sys"), ("hostile_bind", "hostile-bind"),
        ("hostile_all", "hostile-all")]})
MANY_LAYERS = 120


# ---------------------------------------------------------------- session: prerequisites

@pytest.fixture(scope="session", autouse=True)
def helper():
    """The binary under test. Missing is a failure, never a skip."""
    if not HELPER:
        pytest.fail("UD_HELPER is not set (the path of the uwsgi-docker-rootfs binary)")
    if not os.access(HELPER, os.X_OK):
        pytest.fail(f"UD_HELPER={HELPER} is not an executable file (run make first)")
    if os.geteuid() != 0:
        pytest.fail("the integration tests need root (the helper mounts)")
    return HELPER


GC_STAMP = "/var/lib/uwsgi-docker/gc.stamp"


@pytest.fixture(scope="session", autouse=True)
def no_background_gc(helper):
    """Every helper run collects garbage in the background once its stamp is an hour old
    (--gc-interval): a fresh stamp keeps that out of the tests' way, except where a test asks
    for it. At the end, one --gc releases what the session's removed images left in the
    snapshot stores; the stamp gets its old time back."""
    os.makedirs(os.path.dirname(GC_STAMP), exist_ok=True)
    try:
        st = os.stat(GC_STAMP)
        old = (st.st_atime, st.st_mtime)
    except FileNotFoundError:
        old = None
    with open(GC_STAMP, "a"):
        pass
    os.utime(GC_STAMP)
    yield
    subprocess.run([HELPER, "--gc"], capture_output=True, timeout=300)
    if old:
        os.utime(GC_STAMP, old)
    else:
        os.unlink(GC_STAMP)


@pytest.fixture(scope="session")
def docker_ready():
    """dockerd must answer: CI starts it, so an unreachable daemon is a failure, not a skip."""
    if not os.path.exists(udlib.DOCKER_SOCK):
        pytest.fail(f"no dockerd socket at {udlib.DOCKER_SOCK} (start dockerd first)")
    p = subprocess.run([DOCKER, "info", "--format", "{{.Driver}}"], capture_output=True,
                       text=True, timeout=60)
    if p.returncode != 0:
        pytest.fail(f"dockerd does not answer at {udlib.DOCKER_SOCK}: {p.stderr.strip()}")
    if p.stdout.strip() != "overlay2":
        pytest.fail(f"dockerd uses storage driver {p.stdout.strip()!r}; the tests need overlay2")
    return True


@pytest.fixture(scope="session")
def session_dir():
    """All host-side scratch files of the session live under one /tmp/udtest-* directory."""
    d = tempfile.mkdtemp(prefix="udtest-", dir="/tmp")
    os.chmod(d, 0o755)
    udlib.OWN_DIRS.add(os.path.basename(d))
    yield d
    # Pins left behind by a failed test are nsfs bind mounts made by the helper: release them
    # before deleting the directory; never delete across any other mount.
    others = []
    for m in udlib.host_mounts():
        if m.mountpoint == d or m.mountpoint.startswith(d + "/"):
            if m.fstype == "nsfs":
                subprocess.run(["umount", m.mountpoint], capture_output=True)
            else:
                others.append(m.mountpoint)
    if others:
        print(f"not removing {d}: mounts under it: {others}")
        return
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def canary_root():
    """The session's canaries live under /var/tmp, not /tmp: the helper mounts its scratch tmpfs
    over /tmp before it resolves anything in the image, so a symlink that escapes to a /tmp path
    would land in an empty tmpfs and change nothing visible. /var/tmp is mounted over by nothing."""
    d = f"/var/tmp/udtest-{_TOKEN}"
    os.mkdir(d, 0o755)
    udlib.OWN_DIRS.add(os.path.basename(d))
    canary = os.path.join(d, "canary")
    os.mkdir(canary, 0o755)
    _write(os.path.join(canary, "keep"), "canary\n")
    yield d
    shutil.rmtree(d, ignore_errors=True)


_counter = [0]


@pytest.fixture
def scratch(session_dir, request):
    """A fresh directory for one test, inside the session directory."""
    _counter[0] += 1
    name = "".join(c if c.isalnum() else "_" for c in request.node.name)[:60]
    d = os.path.join(session_dir, f"{_counter[0]:03d}-{name}")
    os.mkdir(d)
    return d


# ---------------------------------------------------------------- every test: host unchanged

@pytest.fixture(autouse=True)
def host_unchanged(session_dir, canary_root):
    """Host mount table (points, types, sources, options, propagation; not ids) and the listings
    of what the tests and the helper could touch (udlib._WATCH: /, /etc, /usr, /var, the names
    the helper would create in /tmp, the session's own directories, Docker's layer dirs):
    identical after each test, whether it passed or failed. Not all of /tmp: other programs
    create and remove files there at any time."""
    own = [os.path.basename(session_dir), os.path.basename(canary_root)]
    before = udlib.host_snapshot(own)
    yield
    after = udlib.host_snapshot(own)
    diffs = udlib.diff_snapshots(before, after)
    if diffs:
        pytest.fail("the host changed during the test:\n  " + "\n  ".join(diffs))


# ---------------------------------------------------------------- images

def _write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def _build_cmd(tag, ctx):
    return [DOCKER, "build", "-q", "--network", "none", "--rm", "--force-rm", "-t", tag, ctx]


def _build_env():
    env = dict(os.environ)
    env["DOCKER_BUILDKIT"] = "0"
    return env


def _build(tag, ctx):
    p = subprocess.run(_build_cmd(tag, ctx), capture_output=True, text=True, env=_build_env(),
                       timeout=600)
    if p.returncode != 0:
        pytest.fail(f"docker build of {tag} failed:\n{p.stdout}\n{p.stderr}")


def _busybox_tar(path, extra=()):
    """A root with busybox-static and its applets; extra: (name, kind, arg) with kind in
    'dir', 'file' (arg = content), 'symlink' (arg = target)."""
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()

    def dirent(t, name, mode=0o755):
        ti = tarfile.TarInfo(name)
        ti.type = tarfile.DIRTYPE
        ti.mode = mode
        t.addfile(ti)

    def fileent(t, name, data, mode=0o644):
        ti = tarfile.TarInfo(name)
        ti.size = len(data)
        ti.mode = mode
        t.addfile(ti, io.BytesIO(data))

    def linkent(t, name, target):
        ti = tarfile.TarInfo(name)
        ti.type = tarfile.SYMTYPE
        ti.linkname = target
        ti.mode = 0o777
        t.addfile(ti)

    with tarfile.open(path, "w") as t:
        for d in ("bin", "etc", "root", "data"):
            dirent(t, d)
        dirent(t, "tmp", 0o1777)
        with open(BUSYBOX, "rb") as f:
            fileent(t, "bin/busybox", f.read(), 0o755)
        for a in applets:
            if a != "busybox":
                linkent(t, "bin/" + a, "busybox")
        fileent(t, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        fileent(t, "data/single", b"single\n")
        for name, kind, arg in extra:
            if kind == "dir":
                dirent(t, name)
            elif kind == "file":
                fileent(t, name, arg.encode())
            else:
                linkent(t, name, arg)


def _import(tag, tar):
    p = subprocess.run([DOCKER, "import", tar, tag], capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        pytest.fail(f"docker import of {tag} failed: {p.stderr}")


@pytest.fixture(scope="session")
def images(docker_ready, session_dir, canary_root):
    """Builds every test image once. Attributes: the tags (see TAGS), .canary (the host
    directory the hostile images point at), .info[tag] (docker image inspect)."""
    imgs = types.SimpleNamespace(**vars(TAGS))
    imgs.info = {}
    ctxroot = os.path.join(session_dir, "images")
    os.mkdir(ctxroot)
    built = []

    # 120 layers: the slowest build (about 15 s), started first, in the background.
    ctx = os.path.join(ctxroot, "many")
    os.mkdir(ctx)
    shutil.copy(BUSYBOX, os.path.join(ctx, "busybox"))
    lines = ["FROM scratch", f"LABEL udtest.session={_TOKEN}", "COPY busybox /bin/busybox",
             'RUN ["/bin/busybox", "--install", "-s", "/bin"]']
    for i in range(1, MANY_LAYERS - 1):
        _write(os.path.join(ctx, f"f{i}"), f"layer {i}\n")
        lines.append(f"COPY f{i} /layers/f{i}")
    _write(os.path.join(ctx, "Dockerfile"), "\n".join(lines) + "\n")
    many_build = subprocess.Popen(_build_cmd(TAGS.many, ctx), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, env=_build_env())

    try:
        # busybox base: FROM scratch, 3 layers.
        ctx = os.path.join(ctxroot, "busybox")
        os.mkdir(ctx)
        shutil.copy(BUSYBOX, os.path.join(ctx, "busybox"))
        _write(os.path.join(ctx, "Dockerfile"), "\n".join([
            "FROM scratch",
            f"LABEL udtest.session={_TOKEN}",
            "COPY busybox /bin/busybox",
            'RUN ["/bin/busybox", "--install", "-s", "/bin"]',
            "RUN mkdir -p /tmp /etc /root && chmod 1777 /tmp"
            " && echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd"
            " && echo base > /etc/udtest-base",
        ]) + "\n")
        _build(TAGS.busybox, ctx)
        built.append(TAGS.busybox)

        # several layers: a whiteout (file deleted later), an opaque dir (dir removed and
        # recreated later), Env and WorkingDir.
        ctx = os.path.join(ctxroot, "layers")
        os.mkdir(ctx)
        _write(os.path.join(ctx, "Dockerfile"), "\n".join([
            f"FROM {TAGS.busybox}",
            "RUN mkdir -p /data/opaque && echo old > /data/opaque/old && echo gone > /data/gone"
            " && echo keep > /data/keep && chmod 644 /data/keep",
            "RUN rm /data/gone && rm -rf /data/opaque && mkdir /data/opaque"
            " && echo new > /data/opaque/new",
            'ENV UDTEST_VAR=hello UDTEST_SPACED="a b  c"',
            "WORKDIR /srv/work",
            "RUN echo top > /srv/work/top",
        ]) + "\n")
        _build(TAGS.layers, ctx)
        built.append(TAGS.layers)

        # single layer, no Env at all (docker import).
        tar = os.path.join(ctxroot, "single.tar")
        _busybox_tar(tar)
        _import(TAGS.single, tar)
        built.append(TAGS.single)

        # hostile images: symlinks where the helper mounts. Their targets exist on the host
        # and in the image (/etc, /usr, /var), or are the host's canary directory (outside
        # /tmp, see canary_root): a lookup that escapes the new root changes what is seen.
        imgs.canary = os.path.join(canary_root, "canary")
        hostile = {
            TAGS.hostile_proc: [("proc", "symlink", "/etc")],
            TAGS.hostile_dev: [("dev", "symlink", "../../../../../etc")],
            TAGS.hostile_sys: [("sys", "symlink", "/")],
            TAGS.hostile_bind: [("usr", "dir", None), ("var", "dir", None),
                                ("etc/image-only", "file", "image\n"),
                                ("mnt", "symlink", "/etc"), ("srv", "symlink", "../../../usr"),
                                ("opt", "symlink", "../../../../var"),
                                ("canary", "symlink", imgs.canary)],
        }
        hostile[TAGS.hostile_all] = [e for v in list(hostile.values()) for e in v]
        for tag, extra in hostile.items():
            tar = os.path.join(ctxroot, tag.split(":")[0] + ".tar")
            _busybox_tar(tar, extra)
            _import(tag, tar)
            built.append(tag)

        out, _ = many_build.communicate(timeout=600)
        if many_build.returncode != 0:
            pytest.fail(f"docker build of {TAGS.many} failed:\n{out}")
        built.append(TAGS.many)

        for tag in built:
            imgs.info[tag] = inspect(tag)
        n = len(imgs.info[TAGS.many]["RootFS"]["Layers"])
        assert n == MANY_LAYERS, f"{TAGS.many} has {n} layers"
        yield imgs
    finally:
        if many_build.poll() is None:
            many_build.communicate(timeout=600)
        # Children before parents (udtest-layers is built FROM udtest-busybox).
        for tag in [TAGS.layers, TAGS.many, TAGS.single, TAGS.hostile_proc, TAGS.hostile_dev,
                    TAGS.hostile_sys, TAGS.hostile_bind, TAGS.hostile_all, TAGS.busybox]:
            docker("rmi", "-f", tag, check=False)
