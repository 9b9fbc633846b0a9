"""--bind, --ro-bind, --tmpfs, --unshare, --hostname, --no-proc/--no-dev/--no-sys, checked from
inside, and their effect (or absence of effect) on the host."""
import os
import socket

import pytest

from udlib import (MOUNT_APIS, NETWORK_FILES, assert_layers_unchanged, by_mountpoint, describe, error_line,
                   inside, layers_snapshot, parse_mountinfo, run, without_confine)


@pytest.fixture(params=MOUNT_APIS)
def api(request):
    return ["--mount-api", request.param]


def _src_dir(scratch, name="src"):
    d = os.path.join(scratch, name)
    os.mkdir(d)
    with open(os.path.join(d, "hostfile"), "w") as f:
        f.write("from-host\n")
    return d


def test_bind_read_write(images, scratch, api):
    src = _src_dir(scratch)
    info = images.info[images.layers]
    before = layers_snapshot(info)
    out = inside(images.layers, """
        cat /mnt/rw/hostfile
        echo from-inside > /mnt/rw/out
        grep ' /mnt/rw ' /proc/self/mountinfo
    """, "--bind", f"{src}:/mnt/rw", *api)
    lines = out.splitlines()
    assert lines[0] == "from-host", out
    m = parse_mountinfo(lines[1] + "\n")[0]
    assert "rw" in m.opts, out
    with open(os.path.join(src, "out")) as f:
        assert f.read() == "from-inside\n"
    # The mount point /mnt/rw was made inside the namespace, not in the image.
    assert_layers_unchanged(before, layers_snapshot(info))


def test_bind_dst_defaults_to_src(images, scratch, api):
    src = _src_dir(scratch)
    out = inside(images.layers, f"cat {src}/hostfile; echo x > {src}/w", "--bind", src, *api)
    assert out == "from-host\n"
    assert os.path.exists(os.path.join(src, "w"))


def test_ro_bind_is_really_read_only(images, scratch, api):
    src = _src_dir(scratch)
    before = sorted(os.listdir(src))
    out = inside(images.layers, """
        cat /mnt/ro/hostfile
        touch /mnt/ro/new 2>&1; echo "rc=$?"
        (echo x >> /mnt/ro/hostfile) 2>&1; echo "rc=$?"
        rm /mnt/ro/hostfile 2>&1; echo "rc=$?"
        grep ' /mnt/ro ' /proc/self/mountinfo
    """, "--ro-bind", f"{src}:/mnt/ro", *api)
    assert out.startswith("from-host\n"), out
    assert out.count("Read-only file system") == 3, out
    assert "rc=0" not in out, out
    m = parse_mountinfo([x for x in out.splitlines() if " /mnt/ro " in x][0] + "\n")[0]
    assert "ro" in m.opts, out
    assert sorted(os.listdir(src)) == before
    with open(os.path.join(src, "hostfile")) as f:
        assert f.read() == "from-host\n"


def test_ro_bind_file_over_image_file(images, scratch, api):
    src = os.path.join(scratch, "file")
    with open(src, "w") as f:
        f.write("host-file\n")
    out = inside(images.layers, """
        cat /data/keep
        (echo x >> /data/keep) 2>&1; echo "rc=$?"
    """, "--ro-bind", f"{src}:/data/keep", *api)
    assert out.startswith("host-file\n"), out
    assert "Read-only file system" in out and "rc=0" not in out, out
    with open(src) as f:
        assert f.read() == "host-file\n"


def test_ro_bind_over_image_dir(images, scratch, api):
    src = _src_dir(scratch)
    out = inside(images.layers, "ls -a /data | tr '\\n' ' '", "--ro-bind", f"{src}:/data", *api)
    assert set(out.split()) == {".", "..", "hostfile"}, out


def test_tmpfs(images, api):
    out = inside(images.layers, """
        stat -c '%a' /scratch
        echo x > /scratch/f && cat /scratch/f
        ls -a /data | tr '\\n' ' '; echo
        grep -E ' /(scratch|data) ' /proc/self/mountinfo
    """, "--tmpfs", "/scratch", "--tmpfs", "/data", *api)
    lines = out.splitlines()
    assert lines[0] == "1777", out
    assert lines[1] == "x", out
    assert set(lines[2].split()) == {".", ".."}, out          # the image's /data is hidden
    mp = by_mountpoint(parse_mountinfo("\n".join(lines[3:]) + "\n"))
    for d in ["/scratch", "/data"]:
        assert mp[d].fstype == "tmpfs", out
        # docker run's defaults for --tmpfs
        assert {"nosuid", "nodev", "noexec"} <= mp[d].opts, out


def test_binds_in_read_only_root(images, scratch, api):
    """Mount points that do not exist in the image, with no rw layer to create them in: either
    they work (made in the init layer or similar) or the helper fails cleanly with one line."""
    src = _src_dir(scratch)
    p = run(["--read-only", "--bind", f"{src}:/newmnt", "--tmpfs", "/newtmp", *api,
             images.layers, "--", "/bin/sh", "-c", "cat /newmnt/hostfile; touch /newtmp/x && echo ok"])
    if p.returncode == 0:
        assert p.stdout == "from-host\nok\n", describe(p)
    else:
        error_line(p, 68)


def _host_ns(ns):
    return os.readlink(f"/proc/self/ns/{ns}")


@pytest.mark.parametrize("ns", ["ipc", "uts", "net", "cgroup"])
def test_unshare_one(images, ns):
    out = inside(images.layers, f"readlink /proc/self/ns/{ns}; readlink /proc/self/ns/mnt",
                 "--unshare", ns)
    inner, mnt = out.split()
    assert inner != _host_ns(ns), out
    assert mnt != _host_ns("mnt"), out


def test_default_unshares_only_mnt(images):
    out = inside(images.layers, "for n in mnt ipc uts net cgroup; do readlink /proc/self/ns/$n; done")
    got = dict(zip(["mnt", "ipc", "uts", "net", "cgroup"], out.split()))
    assert got["mnt"] != _host_ns("mnt")
    for ns in ["ipc", "uts", "net", "cgroup"]:
        assert got[ns] == _host_ns(ns), ns


def test_unshare_list_and_repeat(images):
    """--unshare ipc,uts --unshare net: all three are new (a repeat adds, never replaces),
    with mnt always, and cgroup (not asked for) still the host's."""
    names = ["mnt", "ipc", "uts", "net", "cgroup"]
    out = inside(images.layers, f"for n in {' '.join(names)}; do readlink /proc/self/ns/$n; done",
                 "--unshare", "ipc,uts", "--unshare", "net")
    got = out.split()
    assert len(got) == len(names), out
    new = sorted(n for n, v in zip(names, got) if v != _host_ns(n))
    assert new == ["ipc", "mnt", "net", "uts"], out


def test_hostname(images):
    host_before = socket.gethostname()
    out = inside(images.layers, "hostname; cat /proc/sys/kernel/hostname",
                 "--unshare", "uts", "--hostname", "udtest-inside")
    assert out.split() == ["udtest-inside", "udtest-inside"]
    assert socket.gethostname() == host_before


def test_unshare_net_has_only_lo(images):
    out = inside(images.layers, "cat /proc/net/dev", "--unshare", "net")
    ifaces = [line.split(":")[0].strip() for line in out.splitlines()[2:] if ":" in line]
    assert ifaces == ["lo"], out


@pytest.mark.parametrize("flag,gone", [
    ("--no-proc", {"/proc"}),
    ("--no-dev", {"/dev", "/dev/pts", "/dev/shm"}),
    ("--no-sys", {"/sys"}),
])
def test_no_special_fs(images, flag, gone):
    d = sorted(gone)[0]
    out = inside(images.layers, f"""
        echo "ls $(ls -a {d} | tr '\\n' ' ')"
        cat /proc/self/mountinfo 2>/dev/null || true
    """, flag)
    lines = out.splitlines()
    assert set(lines[0].split()[1:]) == {".", ".."}, out
    if flag != "--no-proc":
        points = set(without_confine(m.mountpoint
                                     for m in parse_mountinfo("\n".join(lines[1:]) + "\n")))
        assert points == ({"/", "/proc", "/dev", "/dev/pts", "/dev/shm", "/sys"} - gone) | \
            NETWORK_FILES, out
