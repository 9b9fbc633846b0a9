"""Hostile images: /proc, /dev, /sys and bind targets that are symlinks out of the root
(absolute, and ../../.. chains). The helper must either succeed without touching anything
outside the new root, or refuse with exit 68 and one line. Either way the host's /etc, /, the
canary directory the images point at, and the mount table (autouse fixture) stay unchanged."""
import os

import pytest

from udlib import MOUNT_APIS, describe, error_line, run, stat_snapshot


@pytest.fixture
def host_guard(images):
    """Strict stat snapshots of the places a hostile image points at."""
    dirs = ["/etc", images.canary]   # "/" by name: the autouse fixture compares its listing
    before = {d: stat_snapshot(d) for d in dirs}
    yield
    for d in dirs:
        after = stat_snapshot(d)
        changed = sorted(k for k in set(before[d]) | set(after) if before[d].get(k) != after.get(k))
        assert not changed, f"host {d} changed: {changed}"
    assert sorted(os.listdir(images.canary)) == ["keep"]


def _run(image, script, *opts):
    return run([*opts, image, "--", "/bin/sh", "-c", script])


def _ok_or_refused(p):
    """True if it ran, False if it refused properly; anything else fails."""
    if p.returncode == 0:
        return True
    error_line(p, 68)
    return False


PROBE = """
    test -f /proc/self/status && echo proc-real
    test -c /dev/null && stat -c 'null %t %T' /dev/null
    test -d /sys/kernel && echo sys-real
    sed -n 's/^[^ ]* [^ ]* [^ ]* [^ ]* \\([^ ]*\\) .* - \\([^ ]*\\) .*/mnt \\1 \\2/p' /proc/self/mountinfo
"""


@pytest.mark.parametrize("api", MOUNT_APIS)
@pytest.mark.parametrize("which", ["proc", "dev", "sys", "all"])
def test_special_fs_symlinks(images, host_guard, which, api):
    tag = {"proc": images.hostile_proc, "dev": images.hostile_dev, "sys": images.hostile_sys,
           "all": images.hostile_all}[which]
    p = _run(tag, PROBE, "--mount-api", api)
    if not _ok_or_refused(p):
        return
    lines = p.stdout.splitlines()
    # If it ran, every special fs is real and mounted at its place inside the new root.
    assert "proc-real" in lines, describe(p)
    assert "null 1 3" in lines, describe(p)
    assert "sys-real" in lines, describe(p)
    assert "mnt /proc proc" in lines, describe(p)
    assert "mnt /dev tmpfs" in lines, describe(p)
    assert "mnt /sys sysfs" in lines, describe(p)


@pytest.mark.parametrize("which", ["proc", "dev", "sys"])
@pytest.mark.parametrize("flag", ["--read-only", "--no-proc"])
def test_special_fs_symlinks_with_options(images, host_guard, which, flag):
    tag = {"proc": images.hostile_proc, "dev": images.hostile_dev,
           "sys": images.hostile_sys}[which]
    _ok_or_refused(_run(tag, "true", flag))


def _src(scratch):
    d = os.path.join(scratch, "src")
    os.mkdir(d)
    with open(os.path.join(d, "hostfile"), "w") as f:
        f.write("from-host\n")
    return d


@pytest.mark.parametrize("api", MOUNT_APIS)
@pytest.mark.parametrize("kind", ["bind", "ro-bind", "tmpfs"])
@pytest.mark.parametrize("target", ["abs-parent", "abs-itself", "dotdot-parent"])
def test_bind_target_through_symlink(images, host_guard, scratch, kind, target, api):
    """/mnt -> <host canary dir> (absolute), /srv -> ../../.. : a bind or tmpfs at /mnt/sub,
    /mnt, or /srv/<name> must land inside the new root or be refused."""
    name = f"udtest-escape-{os.getpid()}-{kind}-{api}"
    dst = {"abs-parent": "/mnt/sub", "abs-itself": "/mnt",
           "dotdot-parent": f"/srv/{name}"}[target]
    src = _src(scratch)
    opt = {"bind": ["--bind", f"{src}:{dst}"], "ro-bind": ["--ro-bind", f"{src}:{dst}"],
           "tmpfs": ["--tmpfs", dst]}[kind]
    p = _run(images.hostile_bind, f"ls -a {dst}/ | tr '\\n' ' '", *opt, "--mount-api", api)
    ran = _ok_or_refused(p)
    assert not os.path.lexists("/" + name), f"created /{name} on the host"
    assert sorted(os.listdir(src)) == ["hostfile"]
    if ran:
        seen = set(p.stdout.split()) - {".", ".."}
        assert seen == (set() if kind == "tmpfs" else {"hostfile"}), describe(p)


def test_bind_target_through_symlink_write(images, host_guard, scratch):
    """A successful rw bind behind a symlinked parent writes to the bind source only."""
    src = _src(scratch)
    p = _run(images.hostile_bind, "echo in > /mnt/sub/written && cat /mnt/sub/written",
             "--bind", f"{src}:/mnt/sub")
    if _ok_or_refused(p):
        assert p.stdout == "in\n", describe(p)
        assert sorted(os.listdir(src)) == ["hostfile", "written"]


@pytest.fixture
def steering_image(scratch):
    """An image whose /appdata is a symlink to /shared: where the operator binds a host dir."""
    import subprocess
    from conftest import _busybox_tar, _import
    from udlib import DOCKER
    tag = f"udtest-steer-{os.getpid()}:latest"
    tar = os.path.join(scratch, "steer.tar")
    _busybox_tar(tar, [("shared", "dir", None), ("appdata", "symlink", "/shared")])
    _import(tag, tar)
    yield tag
    subprocess.run([DOCKER, "rmi", "-f", tag], capture_output=True)


@pytest.mark.parametrize("second", [["--tmpfs", "/appdata/cache"],
                                    ["--ro-bind", "/etc/hostname:/appdata/conf/hostname"]])
def test_symlink_does_not_steer_mount_points_into_a_bind(host_guard, scratch, steering_image, second):
    """--bind HOST:/shared plus a mount at /appdata/...: the image's symlink leads the missing mount
    point into HOST. The helper must not create it there (root-owned files in a host dir)."""
    src = _src(scratch)
    p = _run(steering_image, "true", "--bind", f"{src}:/shared", *second)
    error_line(p, 68)
    assert sorted(os.listdir(src)) == ["hostfile"], "the helper created files in the bind source"
