"""What a process inside the prepared root really sees: the overlay root, /proc /dev /sys, the
image's files with whiteouts and opaque dirs applied, Env and WorkingDir, no host paths; writes
go to the rw layer and never reach the image's layer directories. Every test runs through each
mount path (new mount API by fd, by string, and mount(2) with short names)."""
import os
import stat

import pytest

from udlib import (MOUNT_APIS, NETWORK_FILES, without_confine, by_mountpoint, describe, image_top_level, inside,
                   layers_snapshot, assert_layers_unchanged, layer_dirs, parse_mountinfo, run)

SPECIAL_MOUNTS = {"/", "/proc", "/dev", "/dev/pts", "/dev/shm", "/sys"} | NETWORK_FILES


@pytest.fixture(params=MOUNT_APIS)
def api(request):
    return ["--mount-api", request.param]


def test_image_fixture_really_has_whiteout_and_opaque_dir(images):
    """Sanity of the test image itself, checked on the host: some layer holds a whiteout for
    /data/gone (char device 0:0) and an opaque /data/opaque (trusted.overlay.opaque=y)."""
    whiteout = opaque = False
    for diff in layer_dirs(images.info[images.layers]):
        p = os.path.join(diff, "data", "gone")
        if os.path.lexists(p):
            st = os.lstat(p)
            whiteout |= stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
        p = os.path.join(diff, "data", "opaque")
        if os.path.isdir(p) and os.path.exists(os.path.join(p, "new")):
            opaque |= os.getxattr(p, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    assert whiteout, "udtest-layers has no whiteout for /data/gone"
    assert opaque, "udtest-layers has no opaque /data/opaque"


def test_mount_table_inside(images, api):
    mounts = parse_mountinfo(inside(images.layers, "cat /proc/self/mountinfo", *api))
    points = without_confine(m.mountpoint for m in mounts)
    # The old root is detached: nothing but the root and its special filesystems.
    assert set(points) == SPECIAL_MOUNTS, points
    assert len(points) == len(set(points)), points
    mp = by_mountpoint(mounts)
    assert mp["/"].fstype == "overlay"
    assert "rw" in mp["/"].opts
    # No setuid-root program and no device node from the image takes effect.
    assert {"nosuid", "nodev"} <= mp["/"].opts, mp["/"]
    assert mp["/proc"].fstype == "proc"
    assert {"nosuid", "nodev", "noexec"} <= mp["/proc"].opts
    assert mp["/dev"].fstype == "tmpfs"
    assert "nosuid" in mp["/dev"].opts
    assert "mode=755" in mp["/dev"].super_opts
    assert mp["/dev/pts"].fstype == "devpts"
    assert "ptmxmode=666" in mp["/dev/pts"].super_opts
    assert mp["/dev/shm"].fstype == "tmpfs"
    # (tmpfs shows no mode= when it is the default 1777: test_dev_nodes stats it)
    assert not any(o.startswith("mode=") for o in mp["/dev/shm"].super_opts), mp["/dev/shm"]
    assert mp["/sys"].fstype == "sysfs"
    assert "ro" in mp["/sys"].opts


def test_dev_nodes(images, api):
    out = inside(images.layers, r"""
        for n in null zero full random urandom tty; do stat -c "$n %F %t %T" /dev/$n; done
        stat -c 'dir %a' /dev
        stat -c 'shm %a' /dev/shm
        stat -c 'pts-ptmx %F %a' /dev/pts/ptmx
        echo "ptmx $(readlink -f /dev/ptmx)"
        for n in fd stdin stdout stderr ptmx; do test -L /dev/$n && echo "link $n"; done
        echo "fd-list $(ls /dev/fd/ | tr '\n' ' ')"
        echo hello > /dev/null && echo null-writable
        echo "zero $(head -c 4 /dev/zero | od -An -tx1 | tr -d ' \n')"
        echo "ls $(ls -a /dev | tr '\n' ' ')"
    """, *api)
    lines = out.splitlines()
    for name, major, minor in [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7),
                               ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)]:
        assert f"{name} character special file {major:x} {minor:x}" in lines, out
    assert "dir 755" in lines, out
    assert "shm 1777" in lines, out
    assert "pts-ptmx character special file 666" in lines, out
    assert "ptmx /dev/pts/ptmx" in lines, out
    for n in ["fd", "stdin", "stdout", "stderr", "ptmx"]:
        assert f"link {n}" in lines, out
    fd_line = [x for x in lines if x.startswith("fd-list ")][0]
    assert {"0", "1", "2"} <= set(fd_line.split()[1:]), out
    assert "null-writable" in lines, out
    assert "zero 00000000" in lines, out
    names = set([x for x in lines if x.startswith("ls ")][0].split()[1:]) - {".", ".."}
    expected = {"null", "zero", "full", "random", "urandom", "tty", "fd", "stdin", "stdout",
                "stderr", "ptmx", "pts", "shm"}
    assert expected <= names, names
    # Nothing of the host's /dev (disks, consoles, kmsg...) beyond what a container /dev has.
    assert names <= expected | {"console", "core", "mqueue"}, names - expected


def test_proc_and_sys(images, api):
    out = inside(images.layers, """
        test -f /proc/self/status && echo proc-real
        echo "pid-self $(readlink /proc/self)"
        test -d /sys/kernel && echo sys-real
        touch /sys/kernel/x 2>&1; echo "sys-touch=$?"
    """, *api)
    assert "proc-real" in out and "sys-real" in out, out
    assert "Read-only file system" in out, out
    assert "sys-touch=0" not in out, out


def test_env_and_workdir(images, api):
    out = inside(images.layers, "env; echo cwd=$(readlink /proc/self/cwd)", *api)
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert env.get("UDTEST_VAR") == "hello", out
    assert env.get("UDTEST_SPACED") == "a b  c", out
    assert env.get("PATH") == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", out
    assert env.get("TERM") == "xterm-udtest", out          # kept from the caller
    assert env.get("HOSTNAME") == "udtest-caller", out     # kept from the caller
    assert "UDTEST_LEAK" not in env, f"a caller variable leaked into COMMAND:\n{out}"
    assert env.get("cwd") == "/srv/work", out


def test_workdir_defaults_to_root(images, api):
    out = inside(images.busybox, "readlink /proc/self/cwd", *api)
    assert out.strip() == "/"


def test_single_layer_image(images, api):
    """docker import: one layer, no LowerDir, no Env at all: PATH gets a default."""
    assert "LowerDir" not in (images.info[images.single]["GraphDriver"]["Data"] or {})
    out = inside(images.single, "cat /data/single; echo PATH=$PATH; ls /proc/self/fd >/dev/null"
                 " && echo proc-ok", *api)
    lines = out.splitlines()
    assert lines[0] == "single", out
    path = [x for x in lines if x.startswith("PATH=")][0]
    assert "/bin" in path[5:].split(":"), out
    assert "proc-ok" in lines, out


def test_single_layer_image_read_only(images, api):
    """Read-only single layer: no upper at all, so the stack must still have two lowers."""
    out = inside(images.single, "cat /data/single; touch /x 2>&1; echo rc=$?",
                 "--read-only", *api)
    assert out.startswith("single\n"), out
    assert "Read-only file system" in out and "rc=0" not in out, out


def test_whiteout_and_opaque_dir_applied(images, api):
    out = inside(images.layers, """
        echo "data $(ls -a /data | tr '\\n' ' ')"
        echo "opaque $(ls -a /data/opaque | tr '\\n' ' ')"
        test -e /data/gone && echo GONE-VISIBLE
        test -e /data/opaque/old && echo OLD-VISIBLE
        cat /data/keep /data/opaque/new /srv/work/top /etc/udtest-base
    """, *api)
    lines = out.splitlines()
    assert set(lines[0].split()[1:]) == {".", "..", "keep", "opaque"}, out
    assert set(lines[1].split()[1:]) == {".", "..", "new"}, out
    assert "GONE-VISIBLE" not in out and "OLD-VISIBLE" not in out, out
    assert lines[2:] == ["keep", "new", "top", "base"], out


def test_no_host_paths_visible(images, api, scratch, session_dir):
    marker = os.path.join(scratch, "host-marker")
    with open(marker, "w") as f:
        f.write("host\n")
    out = inside(images.layers, f"""
        for p in {marker} {session_dir} /work /var/lib/docker /usr/bin/docker /etc/os-release \
                 /proc/self/root{marker}; do
            test -e "$p" && echo "VISIBLE $p"
        done
        echo "root $(ls -a / | tr '\\n' ' ')"
        echo "tmp $(ls -a /tmp | tr '\\n' ' ')"
    """, *api)
    assert "VISIBLE" not in out, out
    lines = out.splitlines()
    root = set(lines[0].split()[1:]) - {".", ".."}
    expected = image_top_level(images.info[images.layers]) | {"proc", "dev", "sys", "etc"}
    assert root == expected, f"inside: {sorted(root)}, image: {sorted(expected)}"
    assert set(lines[1].split()[1:]) == {".", ".."}, out


def test_writes_stay_in_the_rw_layer(images, api):
    info = images.info[images.layers]
    before = layers_snapshot(info)
    out = inside(images.layers, """
        set -e
        echo new > /newfile
        echo more >> /data/keep
        rm /data/opaque/new
        rm -r /srv/work
        mkdir -p /newdir/sub && echo x > /newdir/sub/f
        chmod 600 /etc/udtest-base
        ln -s /data /datalink
        touch /tmp/t /bin/busybox
        cat /newfile /data/keep /newdir/sub/f /datalink/keep
        ls -a /data/opaque | tr '\\n' ' '; echo
        test -e /srv/work || echo workdir-removed
        stat -c %a /etc/udtest-base
    """, *api)
    assert out.splitlines() == ["new", "keep", "more", "x", "keep", "more", ". .. ",
                                "workdir-removed", "600"], out
    assert_layers_unchanged(before, layers_snapshot(info))
    # A fresh rw layer every run: nothing of the previous one remains.
    out = inside(images.layers, "test -e /newfile && echo NEWFILE; cat /data/keep /data/opaque/new",
                 *api)
    assert out.splitlines() == ["keep", "new"], out


def test_read_only_root(images, api):
    info = images.info[images.layers]
    before = layers_snapshot(info)
    out = inside(images.layers, """
        touch /newfile 2>&1; echo "rc=$?"
        (echo x >> /data/keep) 2>&1; echo "rc=$?"
        mkdir /newdir 2>&1; echo "rc=$?"
        rm /data/keep 2>&1; echo "rc=$?"
        cat /data/keep
        grep ' / / ' /proc/self/mountinfo
        echo hi > /dev/null && echo dev-ok
    """, "--read-only", *api)
    assert out.count("Read-only file system") == 4, out
    assert "rc=0" not in out, out
    assert "keep\n" in out, out
    root_line = [x for x in out.splitlines() if " / / " in x][0]
    assert "ro" in root_line.split()[5].split(","), root_line
    assert "dev-ok" in out, out
    assert_layers_unchanged(before, layers_snapshot(info))


@pytest.mark.parametrize("ro", [False, True], ids=["rw", "read-only"])
def test_120_layers(images, api, ro):
    opts = [*api] + (["--read-only"] if ro else [])
    out = inside(images.many, """
        ls /layers | wc -l
        cat /layers/f1 /layers/f118
        grep -c ' / / .* - overlay ' /proc/self/mountinfo
    """, *opts)
    assert [x.strip() for x in out.splitlines()] == ["118", "layer 1", "layer 118", "1"], out


def test_exit_status_and_argv(images):
    p = run([images.layers, "--", "/bin/sh", "-c", "echo \"$1|$2\"; exit 7", "sh", "a  b", "c"])
    assert p.returncode == 7, describe(p)
    assert p.stdout == "a  b|c\n", describe(p)


def test_command_found_through_path(images):
    p = run([images.layers, "--", "cat", "/data/keep"])
    assert p.returncode == 0 and p.stdout == "keep\n", describe(p)


def test_only_stdio_fds_reach_command(images, api):
    """Every fd the helper opens is O_CLOEXEC: COMMAND gets 0, 1, 2 (ls itself opens 3)."""
    p = run([*api, images.layers, "--", "/bin/ls", "/proc/self/fd"])
    assert p.returncode == 0, describe(p)
    assert sorted(p.stdout.split()) == ["0", "1", "2", "3"], describe(p)
