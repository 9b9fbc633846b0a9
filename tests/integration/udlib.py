"""Shared helpers for the integration tests: running the helper, reading mount tables, host
snapshots, docker calls. Imported by conftest.py and the test modules."""
import collections
import json
import os
import re
import stat
import subprocess

HELPER = os.environ.get("UD_HELPER", "")
DOCKER = "/usr/bin/docker"
DOCKER_SOCK = "/var/run/docker.sock"
PREFIX = "uwsgi-docker-rootfs: "
MOUNT_APIS = ["auto", "fd", "string", "legacy"]
STORAGE = "/var/lib/docker/overlay2"

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
NS_FLAGS = {"mnt": CLONE_NEWNS, "cgroup": CLONE_NEWCGROUP, "uts": CLONE_NEWUTS,
            "ipc": CLONE_NEWIPC, "net": CLONE_NEWNET}
NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3)

# The environment the helper runs with: deterministic, and with markers to check which caller
# variables reach COMMAND (only TERM and HOSTNAME should).
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "TERM": "xterm-udtest",
    "HOSTNAME": "udtest-caller",
    "UDTEST_LEAK": "leaked-from-caller",
    "LANG": "C",
}


LASTGOOD = "/var/lib/uwsgi-docker/last-good"


def lastgood_record(socket_path, ref):
    """The helper's record of ref's last good resolution through socket_path (lastgood.c)."""
    h = 0xcbf29ce484222325
    for b in socket_path.encode() + b"\xff" + ref.encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return os.path.join(LASTGOOD, "%016x.json" % h)


def helper_env(**extra):
    env = dict(BASE_ENV)
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def run(args, env=None, timeout=60, **kw):
    """Runs the helper with args; returns the CompletedProcess (text)."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run([HELPER, *args], capture_output=True, text=True, timeout=timeout,
                          env=helper_env() if env is None else env, **kw)


def describe(p):
    return f"exit {p.returncode}\n--- stdout ---\n{p.stdout}\n--- stderr ---\n{p.stderr}"


def inside(image, script, *opts, env=None, expect=0):
    """Runs `sh -c script` inside image; asserts the exit status; returns stdout."""
    p = run([*opts, image, "--", "/bin/sh", "-c", script], env=env)
    assert p.returncode == expect, describe(p)
    return p.stdout


def error_line(p, status):
    """Asserts exit status and exactly one stderr line starting with the prefix; returns it."""
    assert p.returncode == status, describe(p)
    lines = p.stderr.splitlines()
    assert len(lines) == 1, f"expected exactly one stderr line\n{describe(p)}"
    assert lines[0].startswith(PREFIX), describe(p)
    assert p.stderr.endswith("\n"), describe(p)
    return lines[0]


def docker(*args, check=True, timeout=300, **kw):
    p = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {p.stderr}")
    return p


def inspect(image):
    return json.loads(docker("image", "inspect", image).stdout)[0]


def layer_dirs(info):
    """The image's layer stack top to bottom, as the helper should build it."""
    data = info["GraphDriver"]["Data"]
    layers = [data["UpperDir"]]
    if data.get("LowerDir"):
        layers += data["LowerDir"].split(":")
    return layers


def kept_dirs(info):
    """What the helper's plan lists by default for an image of the daemon: each layer kept in
    the snapshot store of the daemon's storage root, top to bottom, a repeated diffID once."""
    store = os.path.dirname(os.path.dirname(info["GraphDriver"]["Data"]["UpperDir"]))
    out = []
    for d in reversed(info["RootFS"]["Layers"]):
        p = f"{store}/uwsgi-docker/sha256/{d.split(':', 1)[1]}"
        if p not in out:
            out.append(p)
    return out


# ---- mount tables ----

Mount = collections.namedtuple("Mount", "mountpoint fstype source opts super_opts optional")


def _unescape(s):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def parse_mountinfo(text):
    mounts = []
    for line in text.splitlines():
        if not line.strip():
            continue
        pre, post = line.split(" - ", 1)
        f = pre.split(" ")
        post_f = post.split(" ")
        mounts.append(Mount(
            mountpoint=_unescape(f[4]),
            fstype=post_f[0],
            source=_unescape(post_f[1]) if len(post_f) > 1 else "",
            opts=frozenset(f[5].split(",")),
            super_opts=frozenset(post_f[2].split(",")) if len(post_f) > 2 else frozenset(),
            optional=tuple(f[6:]),
        ))
    return mounts


def host_mounts():
    with open("/proc/self/mountinfo") as f:
        return parse_mountinfo(f.read())


def mount_key(m):
    # Everything but the mount ids (which the kernel reuses): point, type, source, options,
    # propagation (optional fields: shared:N, master:N).
    return (m.mountpoint, m.fstype, m.source, tuple(sorted(m.opts)), m.optional)


# dockerd's own mounts (a container or build step of another session running on the same
# daemon): a container's merged root, its shm, its network namespace. The helper never mounts
# at such paths; everything else in the table is compared strictly.
_DOCKER_MOUNT = re.compile(r"^(/var/lib/docker/overlay2/[0-9a-f]{64}(-init)?/merged"
                           r"|/var/lib/docker/containers/[0-9a-f]{64}/.*"
                           r"|/run/docker/netns/[0-9a-f]+"
                           r"|/var/lib/containers/storage/overlay(/.*)?"   # podman's store
                           r"|/run/containers/storage/.*|/run/netns/.*)$")


# Another session of this suite (another agent, a CI job) pins namespaces under its own
# /tmp/udtest-* directory; those come and go at any time. This session's own directory is
# compared strictly (host_snapshot's own).
_OTHER_SESSION = re.compile(r"^/tmp/(udtest-[a-z0-9_]{8})/")


# The directory names of this session (conftest registers its /tmp and /var/tmp directories).
OWN_DIRS = set()


def foreign_mount(m):
    """A mount that neither the tests of this session nor the helpers they run can have made:
    the daemons' own, and other sessions' pins under their own /tmp/udtest-* directories."""
    other = _OTHER_SESSION.match(m.mountpoint)
    return bool(_DOCKER_MOUNT.match(m.mountpoint) or (other and other.group(1) not in OWN_DIRS))


def host_mount_table(own=None):
    """own: this session's directory names; when given, other sessions' mounts are left out."""
    def ours(m):
        other = own is not None and _OTHER_SESSION.match(m.mountpoint)
        return not _DOCKER_MOUNT.match(m.mountpoint) and (not other or other.group(1) in own)
    return sorted(mount_key(m) for m in host_mounts() if ours(m))


def by_mountpoint(mounts):
    d = {}
    for m in mounts:
        d[m.mountpoint] = m  # the last one at a point is the visible one
    return d


# ---- host snapshots ----

# What the tests and the helper could touch, and nothing else: other programs on this machine
# (compilers, tool runners, another session of this suite, docker builds) create and remove files
# all the time, and what they do is not ours to judge. Each watched directory has either None
# (every entry compared) or a pattern: only matching entries are compared (plus the names the
# session owns, see host_snapshot).
#   /, /etc, /usr, /var     where an escaping symlink (/etc, ../../../usr, /) would land
#   /tmp                    where the helper mounts its scratch tmpfs: the names it creates there
#                           (init upper work root) must never appear on the host, nor a
#                           uwsgi-docker* file; the session's own directory is compared too
#   /var/tmp                the canary directories of this session (udlib callers pass them)
#   Docker's overlay2 dirs  the helper reads them; dockerd's own layers come and go
_WATCH = {
    "/": None,
    "/etc": None,
    "/usr": None,
    "/var": None,
    "/tmp": re.compile(r"^(init|upper|work|root|uwsgi-docker.*)$"),
    "/var/tmp": re.compile(r"^$"),  # only the session's own names
    # not dockerd's layers, nor the helper's snapshot store of them (state, like the layers)
    STORAGE: re.compile(r"^(?![0-9a-f]{64}(-init)?$)(?!uwsgi-docker$).*$"),
    STORAGE + "/l": re.compile(r"^(?![A-Z0-9]{26}$).*$"),    # nor their short names
}

WATCHED_DIRS = list(_WATCH)


def listing(d, own=()):
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return None
    keep = _WATCH.get(d)
    if keep:
        names = [n for n in names if n in own or keep.match(n)]
    return sorted(names)


def host_snapshot(own=()):
    """own: names this session owns (its /tmp and /var/tmp directories), always compared."""
    return {"mounts": host_mount_table(own), "dirs": {d: listing(d, own) for d in WATCHED_DIRS}}


def diff_snapshots(before, after):
    """Human-readable differences, empty list when equal."""
    out = []
    b, a = collections.Counter(before["mounts"]), collections.Counter(after["mounts"])
    for k in (a - b):
        out.append(f"mount appeared: {k}")
    for k in (b - a):
        out.append(f"mount disappeared: {k}")
    for d in sorted(set(before["dirs"]) | set(after["dirs"])):
        bl, al = set(before["dirs"].get(d) or []), set(after["dirs"].get(d) or [])
        for n in sorted(al - bl):
            out.append(f"new entry in {d}: {n}")
        for n in sorted(bl - al):
            out.append(f"entry vanished from {d}: {n}")
    return out


def tree_snapshot(root):
    """Every entry under root with type, mode, owner, size, mtime, inode, rdev and xattrs:
    whatever a write through an overlay could change in a layer directory. Not the ctime: it
    also moves when the helper keeps a layer (a hard link more), which changes no content."""
    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [""] + dirnames + filenames:
            p = os.path.join(dirpath, name) if name else dirpath
            if not name and dirpath != root:
                continue
            st = os.lstat(p)
            try:
                xattrs = tuple(sorted((x, os.getxattr(p, x, follow_symlinks=False))
                                      for x in os.listxattr(p, follow_symlinks=False)))
            except OSError:
                xattrs = ()
            snap[os.path.relpath(p, root)] = (stat.S_IFMT(st.st_mode), st.st_mode, st.st_uid,
                                              st.st_gid, st.st_size, st.st_mtime_ns, st.st_ino,
                                              st.st_rdev, xattrs)
    return snap


def stat_snapshot(d):
    """Top-level entries of d with their stat (for /etc and canary dirs in the hostile tests)."""
    def key(p):
        st = os.lstat(p)
        return (st.st_mode, st.st_ino, st.st_nlink, st.st_uid, st.st_gid, st.st_size,
                st.st_mtime_ns, st.st_ctime_ns)
    snap = {".": key(d)}
    for n in os.listdir(d):
        snap[n] = key(os.path.join(d, n))
    return snap


def layers_snapshot(info):
    """tree_snapshot of every layer directory (diff/ and its parent's entries) of an image."""
    snap = {}
    for diff in layer_dirs(info):
        snap[diff] = tree_snapshot(diff)
        parent = os.path.dirname(diff)
        snap[parent] = sorted(os.listdir(parent))
    return snap


def assert_layers_unchanged(before, after):
    assert before.keys() == after.keys()
    for d in before:
        if before[d] != after[d]:
            b, a = before[d], after[d]
            if isinstance(b, dict):
                changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            else:
                changed = sorted(set(a) ^ set(b))
            raise AssertionError(f"layer directory {d} changed: {changed[:20]}")


def image_top_level(info):
    """Names at the top of the image's merged root, computed on the host from the layer dirs
    (whiteouts and opaque dirs applied)."""
    names = set()
    for diff in reversed(layer_dirs(info)):  # bottom to top
        for n in os.listdir(diff):
            st = os.lstat(os.path.join(diff, n))
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                names.discard(n)
            else:
                names.add(n)
    return names


# The helper's confinement (docker run's defaults): masked and read-only paths inside /proc and
# /sys, each a mount point of its own unless --no-confine. A kernel lacking one skips it.
CONFINE_POINTS = frozenset([
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"])


# The files the helper binds read-only over the image's (docker run's network files).
NETWORK_FILES = frozenset(["/etc/hosts", "/etc/resolv.conf", "/etc/hostname"])
NETWORK_FILE_MOUNTS = [("file", "/etc/hosts"), ("file", "/etc/resolv.conf"),
                       ("file", "/etc/hostname")]


def without_confine(points):
    """Mount points minus the confinement's (a list keeps its order and duplicates)."""
    return [p for p in points if p not in CONFINE_POINTS]
