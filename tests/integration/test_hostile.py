"""Hostile images: /proc, /dev, /sys and bind targets that are symlinks out of the root
(absolute, and ../../.. chains), and image files that would be privileges (a setuid-root binary,
a device node). Every case has one right outcome, stated here: a success with the expected view
from inside, or a refusal with a given exit status and one line. The symlinks point at places
that exist on the host and in the image (/etc, /usr, /var) or at the host's canary directory
(under /var/tmp, which the helper mounts over nothing): a lookup that leaves the new root shows
the wrong directory inside, or changes the host."""
import os
import subprocess

import pytest

from udlib import DOCKER, MOUNT_APIS, describe, error_line, run, stat_snapshot


@pytest.fixture
def host_guard(images):
    """Strict stat snapshots of the places a hostile image points at. (/, /usr and /var: the
    autouse fixture compares their listings; their entries' times change all day long.)"""
    dirs = ["/etc", images.canary]
    before = {d: stat_snapshot(d) for d in dirs}
    yield
    for d in dirs:
        after = stat_snapshot(d)
        changed = sorted(k for k in set(before[d]) | set(after) if before[d].get(k) != after.get(k))
        assert not changed, f"host {d} changed: {changed}"
    assert sorted(os.listdir(images.canary)) == ["keep"]


def _run(image, script, *opts):
    return run([*opts, image, "--", "/bin/sh", "-c", script])


def _ok(p):
    assert p.returncode == 0, describe(p)
    assert p.stderr == "", describe(p)
    return p.stdout.splitlines()


PROBE = """
    test -f /proc/self/status && echo proc-real
    test -c /dev/null && stat -c 'null %t %T' /dev/null
    test -d /sys/kernel && echo sys-real
    echo "etc: $(ls /etc | tr '\\n' ' ')"
    test -r /proc/self/mountinfo || exit 0
    sed -n 's/^[^ ]* [^ ]* [^ ]* [^ ]* \\([^ ]*\\) .* - \\([^ ]*\\) .*/mnt \\1 \\2/p' /proc/self/mountinfo
"""


def _tag(images, which):
    return {"proc": images.hostile_proc, "dev": images.hostile_dev, "sys": images.hostile_sys,
            "all": images.hostile_all}[which]


def _image_etc(which):
    """The image's /etc, and the network files the helper binds over it."""
    return "etc: hostname hosts image-only passwd resolv.conf " if which == "all" else \
        "etc: hostname hosts passwd resolv.conf "


@pytest.mark.parametrize("api", MOUNT_APIS)
@pytest.mark.parametrize("which", ["proc", "dev", "sys", "all"])
def test_special_fs_symlinks(images, host_guard, which, api):
    """The init layer puts plain /proc /dev /sys directories over the image's symlinks: the
    special filesystems are real and mounted at their places inside the new root."""
    lines = _ok(_run(_tag(images, which), PROBE, "--mount-api", api))
    assert "proc-real" in lines, lines
    assert "null 1 3" in lines, lines
    assert "sys-real" in lines, lines
    assert "mnt /proc proc" in lines, lines
    assert "mnt /dev tmpfs" in lines, lines
    assert "mnt /sys sysfs" in lines, lines
    etc = [l for l in lines if l.startswith("etc: ")]
    assert etc == [_image_etc(which)], lines   # the image's /etc, nothing else over it


@pytest.mark.parametrize("which", ["proc", "dev", "sys"])
@pytest.mark.parametrize("flag", ["--read-only", "--no-proc", "--no-dev", "--no-sys"])
def test_special_fs_symlinks_with_options(images, host_guard, which, flag):
    lines = _ok(_run(_tag(images, which), PROBE, flag))
    off = {"--no-proc": "/proc", "--no-dev": "/dev", "--no-sys": "/sys"}.get(flag)
    real = {"/proc": "proc-real" in lines, "/dev": "null 1 3" in lines,
            "/sys": "sys-real" in lines}
    assert real == {k: k != off for k in real}, lines
    if off != "/proc":
        mounted = {"/proc": "mnt /proc proc" in lines, "/dev": "mnt /dev tmpfs" in lines,
                   "/sys": "mnt /sys sysfs" in lines}
        assert mounted == real, lines
    assert [l for l in lines if l.startswith("etc: ")] == [_image_etc(which)], lines
    if off:
        # the init layer's empty directory, not the image's symlink to the host
        p = _run(_tag(images, which), f"test -d {off} && ! test -L {off} && ls -A {off} | wc -l",
                 flag)
        assert _ok(p) == ["0"], describe(p)


def _src(scratch):
    d = os.path.join(scratch, "src")
    os.mkdir(d)
    with open(os.path.join(d, "hostfile"), "w") as f:
        f.write("from-host\n")
    return d


# target -> (the path given to the helper, the image directory it must land in). The image
# (conftest: hostile_bind) has /mnt -> /etc, /srv -> ../../../usr, /opt -> ../../../../var and
# /canary -> the host's canary directory (/var/tmp/udtest-*/canary: it exists on the host, not
# in the image, so it dangles inside).
TARGETS = {
    "abs-itself": ("/mnt", "/etc"),
    "abs-parent": ("/mnt/sub", "/etc/sub"),
    "dotdot-itself": ("/srv", "/usr"),
    "dotdot-parent": ("/srv/sub", "/usr/sub"),
    "dotdot-deep": ("/opt", "/var"),
    "canary-itself": ("/canary", None),      # None: refused (68), see below
    "canary-parent": ("/canary/sub", None),
}


@pytest.mark.parametrize("api", MOUNT_APIS)
@pytest.mark.parametrize("kind", ["bind", "ro-bind", "tmpfs"])
@pytest.mark.parametrize("target", list(TARGETS))
def test_bind_target_through_symlink(images, host_guard, scratch, kind, target, api):
    """A bind or tmpfs whose target goes through an image symlink lands where the symlink leads
    *inside the new root* (missing directories created in the rw layer), never on the host's
    directory of the same name: the view from inside proves where it went."""
    dst, lands = TARGETS[target]
    src = _src(scratch)
    opt = {"bind": ["--bind", f"{src}:{dst}"], "ro-bind": ["--ro-bind", f"{src}:{dst}"],
           "tmpfs": ["--tmpfs", dst]}[kind]
    if lands is None:
        # /canary dangles inside the image: no directory is made through it, and the host's
        # canary directory of that name is never the target.
        p = _run(images.hostile_bind, "true", *opt, "--mount-api", api)
        assert error_line(p, 68).endswith(
            "resolving /canary inside the image: No such file or directory"), describe(p)
        assert sorted(os.listdir(src)) == ["hostfile"]
        return
    script = (f"echo \"dst: $(ls -A {dst}/ | tr '\\n' ' ')\";"
              f"echo \"real: $(ls -A {lands}/ | tr '\\n' ' ')\";"
              f"echo \"etc: $(ls -A /etc | tr '\\n' ' ')\"")
    lines = _ok(_run(images.hostile_bind, script, *opt, "--mount-api", api))
    want = "" if kind == "tmpfs" else "hostfile "
    assert lines[0] == f"dst: {want}", lines
    assert lines[1] == f"real: {want}", lines
    image_etc = "hostname hosts image-only passwd resolv.conf "  # with the network files
    etc = {"/etc": want, "/etc/sub": "hostname hosts image-only passwd resolv.conf sub "}.get(
        lands, image_etc)
    assert lines[2] == f"etc: {etc}", lines
    assert sorted(os.listdir(src)) == ["hostfile"]


@pytest.mark.parametrize("target", ["abs-itself", "abs-parent", "dotdot-itself", "dotdot-parent"])
def test_bind_target_through_symlink_write(images, host_guard, scratch, target):
    """A rw bind behind a symlink writes to the bind source only."""
    dst, _ = TARGETS[target]
    src = _src(scratch)
    p = _run(images.hostile_bind, f"echo in > {dst}/written && cat {dst}/written",
             "--bind", f"{src}:{dst}")
    assert _ok(p) == ["in"], describe(p)
    assert sorted(os.listdir(src)) == ["hostfile", "written"]


@pytest.mark.parametrize("target", ["abs-parent", "dotdot-parent", "canary-itself"])
def test_bind_target_through_symlink_read_only_root(images, host_guard, scratch, target):
    """With a read-only root a missing mount point cannot be made: refused (68), one line,
    never made on the host's side of the symlink instead."""
    dst, _ = TARGETS[target]
    p = _run(images.hostile_bind, "true", "--read-only", "--bind", f"{_src(scratch)}:{dst}")
    line = error_line(p, 68)
    assert "does not exist in the image, and the root is read-only" in line, line


RENAMER = """
import os, sys
os.chdir(sys.argv[1])
open("a", "w").close()
while True:
    os.rename("a", "b")
    os.rename("b", "a")
"""


def test_dotdot_lookup_survives_concurrent_renames(images, host_guard, scratch):
    """openat2(RESOLVE_IN_ROOT) fails with EAGAIN when a '..' is walked while any rename or
    mount happens anywhere on the machine (the kernel cannot prove the walk stayed inside; the
    caller is meant to retry). A busy machine must not make a bind behind /srv -> ../../../usr
    fail: 20 runs while another process renames a file in a loop, all succeed."""
    src = _src(scratch)
    renamer = subprocess.Popen(["/usr/bin/python3", "-c", RENAMER, scratch])
    try:
        results = [_run(images.hostile_bind, "ls /usr/sub", "--bind", f"{src}:/srv/sub")
                   for _ in range(20)]
    finally:
        renamer.kill()
        renamer.wait()
    failed = [p.stderr.strip() for p in results if p.returncode != 0]
    assert not failed, f"{len(failed)} of 20 runs failed, first: {failed[0]}"
    assert all(p.stdout == "hostfile\n" for p in results)


@pytest.fixture
def steering_image(scratch):
    """An image whose /appdata is a symlink to /shared: where the operator binds a host dir."""
    from conftest import _busybox_tar, _import
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


# ---------------------------------------------------------------- nosuid, nodev by behaviour

PROBE_C = r"""
#define _GNU_SOURCE
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
/* probe drop PROG ARGS: become uid/gid 65534, no groups, then exec PROG.
 * probe: print the real and effective uid. */
int main(int argc, char **argv)
{
	if (argc > 2 && !strcmp(argv[1], "drop")) {
		if (setgroups(0, NULL) || setresgid(65534, 65534, 65534) ||
		    setresuid(65534, 65534, 65534)) {
			perror("drop");
			return 1;
		}
		execv(argv[2], argv + 2);
		perror("exec");
		return 1;
	}
	uid_t r, e, s;
	getresuid(&r, &e, &s);
	printf("ruid=%u euid=%u\n", r, e);
	return 0;
}
"""


@pytest.fixture(scope="module")
def privileged_image(docker_ready, session_dir):
    """An image with /bin/suidprobe (setuid root, prints its ids) and /data/nulldev (a char
    device node 1:3, world read-write): privileges a layer could carry."""
    import io
    import tarfile
    from conftest import _busybox_tar, _import
    d = os.path.join(session_dir, "privileged")
    os.mkdir(d)
    with open(os.path.join(d, "probe.c"), "w") as f:
        f.write(PROBE_C)
    subprocess.run(["gcc", "-static", "-O2", "-o", os.path.join(d, "probe"),
                    os.path.join(d, "probe.c")], check=True, capture_output=True)
    tar = os.path.join(d, "image.tar")
    _busybox_tar(tar)
    with open(os.path.join(d, "probe"), "rb") as f:
        data = f.read()
    with tarfile.open(tar, "a") as t:
        for name, mode in [("bin/probe", 0o755), ("bin/suidprobe", 0o4755)]:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.uid, ti.gid = len(data), mode, 0, 0
            t.addfile(ti, io.BytesIO(data))
        ti = tarfile.TarInfo("data/nulldev")
        ti.type, ti.devmajor, ti.devminor, ti.mode = tarfile.CHRTYPE, 1, 3, 0o666
        t.addfile(ti)
    tag = f"udtest-privileged-{os.getpid()}:latest"
    _import(tag, tar)
    yield tag
    subprocess.run([DOCKER, "rmi", "-f", tag], capture_output=True)


def test_privileged_image_fixture_is_what_it_claims(privileged_image):
    """Guards the two tests below against a vacuous pass: the layer really holds a setuid-root
    binary and a usable device node (a bind of the layer directory is suid and dev)."""
    p = _run(privileged_image, "stat -c '%a %u %F %t:%T' /bin/suidprobe /data/nulldev")
    assert _ok(p) == ["4755 0 regular file 0:0", "666 0 character special file 1:3"], describe(p)


@pytest.mark.parametrize("api", MOUNT_APIS)
@pytest.mark.parametrize("rw", ["rw", "read-only"])
def test_setuid_binary_in_the_image_gives_no_privilege(privileged_image, api, rw):
    """nosuid by behaviour: a process that dropped to uid 65534 runs the image's setuid-root
    binary and stays 65534 (with a suid root it would be euid 0: full root in a namespace
    whose /proc/1/root leads to the host)."""
    opts = ["--mount-api", api] + (["--read-only"] if rw == "read-only" else [])
    p = _run(privileged_image, "/bin/probe drop /bin/suidprobe", *opts)
    assert _ok(p) == ["ruid=65534 euid=65534"], describe(p)


@pytest.mark.parametrize("api", MOUNT_APIS)
def test_device_node_in_the_image_cannot_be_opened(privileged_image, api):
    """nodev by behaviour: even root cannot open a device node that a layer carries."""
    p = _run(privileged_image,
             "if echo x > /data/nulldev; then echo opened; else echo refused; fi;"
             "if cat /data/nulldev; then echo read; else echo refused; fi;"
             "echo x > /dev/null && echo dev-null-works", "--mount-api", api)
    assert p.returncode == 0, describe(p)
    assert p.stdout.splitlines() == ["refused", "refused", "dev-null-works"], describe(p)
    assert p.stderr.count("Permission denied") == 2, describe(p)


# ---------------------------------------------------------------- a hostile WorkingDir

# WorkingDir -> the directory COMMAND must start in (pwd -P) and what it lists there, or None:
# refused (68) with one line naming the working directory.
WORKDIRS = {
    "/proc/1/root/etc": None,        # a magic link to the host's root (the host's pid 1)
    "/proc/self/cwd": None,          # a magic link to wherever the helper stands
    "/wd-rel": ("/etc", "hostname hosts image-only passwd resolv.conf"),        # -> ../../../../etc, inside the root
    "/wd-abs/": ("/usr", "image-usr"),               # -> /usr, inside the root
    "/../../../etc": ("/etc", "hostname hosts image-only passwd resolv.conf"),
    "/wd-canary": None,              # -> the host's canary directory: dangles inside
}


@pytest.fixture(scope="module")
def workdir_images(docker_ready, session_dir, canary_root):
    from conftest import _busybox_tar, _import
    d = os.path.join(session_dir, "workdir-images")
    os.mkdir(d)
    tar = os.path.join(d, "wd.tar")
    _busybox_tar(tar, [("usr", "dir", None), ("usr/image-usr", "file", "x\n"),
                       ("etc/image-only", "file", "image\n"),
                       ("wd-rel", "symlink", "../../../../etc"), ("wd-abs", "symlink", "/usr"),
                       ("wd-canary", "symlink", os.path.join(canary_root, "canary"))])
    tags = {}
    try:
        for i, wd in enumerate(WORKDIRS):
            tag = f"udtest-wd-{os.getpid()}-{i}:latest"
            p = subprocess.run([DOCKER, "import", "-c", f"WORKDIR {wd}", tar, tag],
                               capture_output=True, text=True, timeout=120)
            assert p.returncode == 0, p.stderr
            tags[wd] = tag
        yield tags
    finally:
        for tag in tags.values():
            subprocess.run([DOCKER, "rmi", "-f", tag], capture_output=True)


@pytest.mark.parametrize("wd", list(WORKDIRS))
def test_hostile_workdir(workdir_images, host_guard, wd):
    """The image's WorkingDir is resolved inside the new root without magic links: a symlink
    out lands on the image's own directory, /proc/<pid>/root and /proc/self/cwd are refused."""
    p = _run(workdir_images[wd], "pwd -P; ls | tr '\\n' ' '")
    want = WORKDIRS[wd]
    if want is None:
        line = error_line(p, 68)
        assert f"working directory {wd}" in line, line
    else:
        assert _ok(p) == [want[0], want[1] + " "], describe(p)
