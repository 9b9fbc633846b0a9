"""What `docker run` gives an app, the helper gives it too (issue 12): /etc/hosts, /etc/resolv.conf
and /etc/hostname made by the helper and bound read-only over whatever the image has; the image's
User (or --user) looked up in the image's own /etc/passwd and /etc/group, hostile ones included;
--env over the image's Env; --tmpfs DST:OPTS with Docker's syntax, and --shm-size.

Every test image is imported from a tar built here (one layer, no Env), with its User set by
`docker import --change`. The hostile ones point their /etc, /etc/hosts or /etc/passwd at a canary
directory of the host (under /var/tmp, which the helper mounts over nothing): a lookup that left
the new root would read or change the host's files there."""
import io
import os
import subprocess
import tarfile

import pytest

from udlib import DOCKER, MOUNT_APIS, describe, error_line, inside, parse_mountinfo, run

PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
          "# a comment, and a line that is not an entry\n"
          "broken:x:notanumber:1::/:/bin/sh\n"
          "app:x:1234:2345:the app:/home/app:/bin/sh\n")
GROUP = ("root:x:0:\n"
         "app:x:2345:\n"
         "extra:x:3456:other,app\n"
         "more:x:4567:app\n"
         "nogroup:x:65534:\n")
USER_EXIT = 71
HOST_RESOLV = open("/etc/resolv.conf").read()


def _tar_entries(extra=(), etc=True):
    """(name, kind, arg) entries for _tar: /etc with our passwd and group (etc=False: only the
    directory, or nothing when extra makes /etc itself), then extra."""
    base = [("etc", "dir", None)]
    if etc:
        base += [("etc/group", "file", GROUP), ("etc/passwd", "file", PASSWD)]
    if any(name == "etc" for name, _, _ in extra):
        base = []
    return base + list(extra)


def _tar(path, entries):
    """A root with busybox-static, its applets, /bin /tmp /root, and entries: (name, kind, arg)
    with kind 'dir', 'file' (arg: the content) or 'symlink' (arg: the target)."""
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    with tarfile.open(path, "w") as t:
        def add(name, kind, arg=None, mode=None):
            ti = tarfile.TarInfo(name)
            data = None
            if kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, mode or 0o755
            elif kind == "symlink":
                ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, arg, 0o777
            else:
                data = arg if isinstance(arg, bytes) else arg.encode()
                ti.size, ti.mode = len(data), mode or 0o644
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
        add("bin", "dir")
        add("root", "dir")
        add("tmp", "dir", mode=0o1777)
        with open("/bin/busybox", "rb") as f:
            add("bin/busybox", "file", f.read(), 0o755)
        for a in applets:
            if a != "busybox":
                add("bin/" + a, "symlink", "busybox")
        for name, kind, arg in entries:
            add(name, kind, arg)


@pytest.fixture(scope="module")
def dr(docker_ready, session_dir, canary_root):
    """Images of this module: name -> tag; .canary: a host directory with a hosts, resolv.conf
    and passwd of its own (what a lookup that escaped the root would find)."""
    d = os.path.join(session_dir, "docker-run-images")
    os.mkdir(d)
    canary = os.path.join(canary_root, "dr-canary")
    os.mkdir(canary)
    files = {"hosts": "203.0.113.9 localhost host-canary\n",
             "resolv.conf": "nameserver 203.0.113.9\n",
             "passwd": "hostonly:x:4242:4242::/host:/bin/sh\n"}
    for name, text in files.items():
        with open(os.path.join(canary, name), "w") as f:
            f.write(text)
    big = "".join(f"u{i}:x:{10000 + i}:{10000 + i}::/:/bin/sh\n" for i in range(150000))
    specs = {
        "plain": (_tar_entries(), None),
        "by-name": (_tar_entries(), "nobody"),
        "by-number": (_tar_entries(), "65534:65534"),
        "numeric-app": (_tar_entries(), "1234"),
        "missing": (_tar_entries(), "ghost"),
        "stale": (_tar_entries([("etc/hosts", "file", "10.9.9.9 localhost stale-entry\n"),
                                ("etc/resolv.conf", "file", "nameserver 10.9.9.9\n"),
                                ("etc/hostname", "file", "stale\n")]), None),
        "net-links": (_tar_entries([("etc/hosts", "symlink", os.path.join(canary, "hosts")),
                                    ("etc/resolv.conf", "symlink",
                                     "../../../../.." + os.path.join(canary, "resolv.conf")),
                                    ("etc/hostname", "symlink", "/proc/self/environ")]), None),
        "etc-link": (_tar_entries([("etc", "symlink", canary)], etc=False), None),
        "huge-passwd": (_tar_entries([("etc/passwd", "file", big)], etc=False), None),
        "binary-passwd": (_tar_entries([("etc/passwd", "file", "app:x:1234:2345::/:/bin/sh\n\0\1\2")],
                                       etc=False), None),
        "long-line": (_tar_entries([("etc/passwd", "file", "x" * 70000 + "\n" + PASSWD)],
                                   etc=False), None),
        "passwd-out": (_tar_entries([("etc/passwd", "symlink", os.path.join(canary, "passwd")),
                                     (canary.lstrip("/").split("/")[0], "dir", None)]
                                    + [(p, "dir", None) for p in _parents(canary)]
                                    + [(os.path.join(canary, "passwd").lstrip("/"), "file",
                                        "insideonly:x:4343:4343::/home/in:/bin/sh\n")],
                                    etc=False), None),
        "passwd-proc": (_tar_entries([("etc/passwd", "symlink", "/proc/self/environ")],
                                     etc=False), None),
        "passwd-dev": (_tar_entries([("etc/passwd", "symlink", "/dev/zero")], etc=False), None),
    }
    tags = {}
    try:
        for name, (extra, user) in specs.items():
            tar = os.path.join(d, name + ".tar")
            _tar(tar, extra)
            tag = f"udtest-dr-{os.getpid()}-{name}:latest"
            cmd = [DOCKER, "import"] + (["-c", f"USER {user}"] if user else []) + [tar, tag]
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            assert p.returncode == 0, p.stderr
            tags[name] = tag
        tags["canary"] = canary
        before = {n: open(os.path.join(canary, n)).read() for n in files}
        yield tags
        after = {n: open(os.path.join(canary, n)).read() for n in files}
        assert after == before, "the host's canary files changed"
        assert sorted(os.listdir(canary)) == sorted(files)
    finally:
        for name, tag in tags.items():
            if name != "canary":
                subprocess.run([DOCKER, "rmi", "-f", tag], capture_output=True)


def _parents(path):
    """Every directory above path's last component, relative ("var", "var/tmp", ...)."""
    parts = path.strip("/").split("/")
    return ["/".join(parts[:i]) for i in range(2, len(parts) + 1)]


def _status(out):
    """Uid, Gid and Groups of /proc/self/status lines in out (the first of each)."""
    st = {}
    for line in out.splitlines():
        k, _, v = line.partition(":")
        if k in ("Uid", "Gid", "Groups") and k not in st:
            st[k] = v.split()
    return int(st["Uid"][0]), int(st["Gid"][0]), sorted(int(g) for g in st.get("Groups", []))


IDS = "grep -E '^(Uid|Gid|Groups):' /proc/self/status"


# ---------------------------------------------------------------- network files

NET_SCRIPT = """
    echo "--hosts"; cat /etc/hosts
    echo "--resolv"; cat /etc/resolv.conf
    echo "--hostname"; cat /etc/hostname
    echo "--ping"; ping -c1 -W1 localhost 2>&1 | head -1
    echo "--write"; (echo x >> /etc/hosts) 2>&1; (echo x >> /etc/resolv.conf) 2>&1; true
"""


def _sections(out):
    secs, cur = {}, None
    for line in out.splitlines():
        if line.startswith("--"):
            cur = line[2:]
            secs[cur] = []
        elif cur:
            secs[cur].append(line)
    return secs


@pytest.mark.parametrize("api", MOUNT_APIS)
@pytest.mark.parametrize("ro", [False, True], ids=["rw", "read-only"])
def test_image_without_network_files_resolves_localhost(dr, api, ro):
    """As `docker build` leaves most images: no /etc/hosts, no /etc/resolv.conf. Inside they
    exist, localhost resolves, the nameservers are the host's (the network is the host's, as
    with docker run --network host: its resolv.conf verbatim), and the files are read-only."""
    opts = ["--mount-api", api] + (["--read-only"] if ro else [])
    s = _sections(inside(dr["plain"], NET_SCRIPT, *opts))
    assert "127.0.0.1\tlocalhost" in s["hosts"], s
    assert any(l.startswith("::1\tlocalhost") for l in s["hosts"]), s
    assert "\n".join(s["resolv"]) + "\n" == HOST_RESOLV, s
    assert s["hostname"] == [os.uname().nodename], s
    assert s["ping"][0].startswith("PING localhost (127.0.0.1)"), s
    assert len(s["write"]) == 2 and all("Read-only file system" in l for l in s["write"]), s


def test_stale_network_files_of_the_image_are_replaced(dr):
    s = _sections(inside(dr["stale"], NET_SCRIPT))
    text = "\n".join(s["hosts"] + s["resolv"] + s["hostname"])
    assert "stale" not in text and "10.9.9.9" not in text, s
    assert "127.0.0.1\tlocalhost" in s["hosts"], s
    assert s["ping"][0].startswith("PING localhost (127.0.0.1)"), s


def test_network_files_are_read_only_binds(dr):
    out = inside(dr["plain"], "cat /proc/self/mountinfo")
    mp = {m.mountpoint: m for m in parse_mountinfo(out)}
    for f in ("/etc/hosts", "/etc/resolv.conf", "/etc/hostname"):
        assert f in mp, sorted(mp)
        assert "ro" in mp[f].opts and {"nosuid", "nodev"} <= mp[f].opts, mp[f]


def test_hostname_in_hosts(dr):
    out = inside(dr["plain"], NET_SCRIPT + "\necho --ping2; ping -c1 -W1 app1.example 2>&1 | head -1",
                 "--unshare", "uts", "--hostname", "app1.example")
    s = _sections(out)
    assert s["hostname"] == ["app1.example"], s
    assert "127.0.1.1\tapp1.example app1" in s["hosts"], s
    assert s["ping2"][0].startswith("PING app1.example (127.0.1.1)"), s


def _with_host_resolv(scratch, text, args):
    """Runs the helper in a mount namespace of its own where the host's /etc/resolv.conf is a
    file with this text (the host itself is never changed)."""
    fake = os.path.join(scratch, "resolv.conf")
    with open(fake, "w") as f:
        f.write(text)
    from udlib import HELPER, helper_env
    script = 'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"'
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
                           fake, HELPER, *args], capture_output=True, text=True, timeout=60,
                          env=helper_env(), stdin=subprocess.DEVNULL)


RESOLV_LOOPBACK = ("# the host's\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 192.0.2.1\n"
                   "search example.test\noptions ndots:2\n")


@pytest.mark.parametrize("net", [False, True], ids=["host-network", "unshare-net"])
def test_loopback_nameservers(dr, scratch, net):
    """With the host's network the host's resolv.conf is right as it is (127.0.0.53 answers
    there). In a network namespace of its own loopback nameservers answer nothing: they are
    dropped, as docker run does for a container not on the host's network."""
    args = (["--unshare", "net"] if net else []) + [dr["plain"], "--", "cat", "/etc/resolv.conf"]
    p = _with_host_resolv(scratch, RESOLV_LOOPBACK, args)
    assert p.returncode == 0, describe(p)
    if not net:
        assert p.stdout == RESOLV_LOOPBACK, describe(p)
    else:
        assert "127.0.0.53" not in p.stdout and "::1" not in p.stdout, describe(p)
        lines = p.stdout.splitlines()
        assert "nameserver 192.0.2.1" in lines and "search example.test" in lines, describe(p)
        assert "options ndots:2" in lines, describe(p)


def test_only_loopback_nameservers_get_dockers_defaults(dr, scratch):
    p = _with_host_resolv(scratch, "nameserver 127.0.0.1\n",
                          ["--unshare", "net", dr["plain"], "--", "cat", "/etc/resolv.conf"])
    assert p.returncode == 0, describe(p)
    ns = [l for l in p.stdout.splitlines() if l.startswith("nameserver")]
    assert ns == ["nameserver 8.8.8.8", "nameserver 8.8.4.4"], describe(p)


@pytest.mark.parametrize("image", ["net-links", "etc-link"])
@pytest.mark.parametrize("ro", [False, True], ids=["rw", "read-only"])
def test_network_files_never_land_on_the_host(dr, image, ro):
    """/etc/hosts a symlink to the host's canary file, /etc/resolv.conf a ../ chain to it,
    /etc/hostname to /proc/self/environ; or /etc itself a symlink to the canary directory. The
    files inside are the helper's, the host's canary files are untouched (checked by the
    fixture), nothing is mounted on the host (the autouse fixture)."""
    opts = ["--read-only"] if ro else []
    s = _sections(inside(dr[image], NET_SCRIPT, *opts))
    text = "\n".join(s["hosts"] + s["resolv"] + s["hostname"])
    assert "canary" not in text and "203.0.113.9" not in text, s
    assert "127.0.0.1\tlocalhost" in s["hosts"], s
    assert "\n".join(s["resolv"]) + "\n" == HOST_RESOLV, s
    assert s["hostname"] == [os.uname().nodename], s


def test_no_network_files(dr):
    s = _sections(inside(dr["stale"], NET_SCRIPT, "--no-network-files"))
    assert s["hosts"] == ["10.9.9.9 localhost stale-entry"], s
    out = inside(dr["plain"], "ls /etc", "--no-network-files")
    assert out.split() == ["group", "passwd"], out


def test_a_bind_over_a_network_file_wins(dr, scratch):
    mine = os.path.join(scratch, "hosts")
    with open(mine, "w") as f:
        f.write("192.0.2.7 mine\n")
    out = inside(dr["plain"], "cat /etc/hosts", "--ro-bind", f"{mine}:/etc/hosts")
    assert out == "192.0.2.7 mine\n", out


# ---------------------------------------------------------------- users

@pytest.mark.parametrize("image,want", [
    ("plain", (0, 0, [])),
    ("by-name", (65534, 65534, [])),
    ("by-number", (65534, 65534, [])),
    ("numeric-app", (1234, 2345, [3456, 4567])),
])
def test_the_images_user(dr, image, want):
    """docker run's rules (runc's GetExecUser): a name or number from passwd gives its gid and
    the groups that list the name; an explicit group gives that gid and no others."""
    assert _status(inside(dr[image], IDS)) == want


@pytest.mark.parametrize("spec,want", [
    ("app", (1234, 2345, [3456, 4567])),
    ("1234", (1234, 2345, [3456, 4567])),
    ("app:extra", (1234, 3456, [])),
    ("app:4567", (1234, 4567, [])),
    ("4321", (4321, 0, [])),           # numeric, no entry: gid 0, as docker run gives
    ("4321:4322", (4321, 4322, [])),
    ("nobody:app", (65534, 2345, [])),
    ("0", (0, 0, [])),
])
def test_user_option(dr, spec, want):
    assert _status(inside(dr["by-name"], IDS, "--user", spec)) == want


def test_user_home_and_environment(dr):
    out = inside(dr["plain"], "echo HOME=$HOME; id -u", "--user", "app")
    assert out.splitlines() == ["HOME=/home/app", "1234"], out
    out = inside(dr["plain"], "echo HOME=$HOME", "--user", "4321")
    assert out == "HOME=/\n", out
    out = inside(dr["plain"], "echo HOME=$HOME")
    assert out == "HOME=/root\n", out
    out = inside(dr["plain"], "echo HOME=$HOME", "--user", "app", "--env", "HOME=/elsewhere")
    assert out == "HOME=/elsewhere\n", out


@pytest.mark.parametrize("image,opts,word", [
    ("missing", [], "ghost"),
    ("plain", ["--user", "ghost"], "ghost"),
    ("plain", ["--user", "app:ghostgroup"], "ghostgroup"),
])
def test_unknown_user_is_one_line(dr, image, opts, word):
    line = error_line(run([*opts, dr[image], "--", "/bin/true"]), USER_EXIT)
    assert word in line and "/etc/" in line, line


@pytest.mark.parametrize("spec", ["bad name", "a:b:c", ":0", "x" * 300])
def test_malformed_user_option_is_a_usage_error(dr, spec):
    error_line(run(["--user", spec, dr["plain"], "--", "/bin/true"]), 64)


@pytest.mark.parametrize("image,why", [
    ("huge-passwd", "larger than"),
    ("binary-passwd", "NUL"),
    ("long-line", "line"),
    ("passwd-proc", "/proc"),
    ("passwd-dev", "regular file"),
])
def test_hostile_passwd_is_refused(dr, image, why):
    """A passwd too large, binary, with an endless line, or a link into /proc or /dev: refused
    with one line, by name and by number alike (the file is read either way)."""
    for spec in ("app", "1234"):
        line = error_line(run(["--user", spec, dr[image], "--", "/bin/true"]), USER_EXIT)
        assert why in line, line


def test_passwd_link_out_of_the_image_resolves_inside(dr):
    """/etc/passwd -> the host's canary passwd: resolved inside the root, it is the image's file
    of that path; the host's users are unknown inside."""
    assert _status(inside(dr["passwd-out"], IDS, "--user", "insideonly")) == (4343, 4343, [])
    line = error_line(run(["--user", "hostonly", dr["passwd-out"], "--", "/bin/true"]), USER_EXIT)
    assert "hostonly" in line, line


def test_handoff_carries_the_images_user_as_numbers(dr, scratch):
    """The image's User reaches a receiver only as numbers, resolved inside the image; print
    shows what was asked."""
    import json
    plan = json.loads(run(["--print", dr["by-name"]]).stdout)
    assert plan["user"] == "nobody", plan
    plan = json.loads(run(["--print", "--user", "app", dr["by-name"]]).stdout)
    assert plan["user"] == "app", plan


# ---------------------------------------------------------------- environment

def test_env_over_the_images_env(images):
    out = inside(images.layers, "env", "--env", "UDTEST_VAR=over", "-e", "NEW=a=b",
                 "-e", "EMPTY=")
    env = dict(l.split("=", 1) for l in out.splitlines() if "=" in l)
    assert env["UDTEST_VAR"] == "over", out
    assert env["NEW"] == "a=b" and env["EMPTY"] == "", out
    assert env["UDTEST_SPACED"] == "a b  c", out
    assert out.count("UDTEST_VAR=") == 1, out


@pytest.mark.parametrize("arg", ["NOVALUE", "=x", ""])
def test_env_needs_key_and_value(images, arg):
    error_line(run(["--env", arg, images.layers, "--", "/bin/true"]), 64)


# ---------------------------------------------------------------- tmpfs and /dev/shm

def test_tmpfs_size_refuses_the_second_mib(dr):
    out = inside(dr["plain"], """
        dd if=/dev/zero of=/scratch/a bs=1024 count=2048 2>&1
        stat -c 'size %s' /scratch/a
        stat -c 'mode %a' /scratch
        grep ' /scratch ' /proc/self/mountinfo
    """, "--tmpfs", "/scratch:size=1m")
    lines = out.splitlines()
    assert "No space left on device" in out, out
    assert "size 1048576" in lines, out
    assert "mode 1777" in lines, out
    m = parse_mountinfo([l for l in lines if " /scratch " in l][0] + "\n")[0]
    assert "size=1024k" in m.super_opts, m
    assert {"nosuid", "nodev", "noexec"} <= m.opts, m


def test_tmpfs_options(dr):
    out = inside(dr["plain"], """
        stat -c 'mode %a' /a /b
        cp /bin/busybox /b/true && /b/true && echo exec-ok
        touch /c/x 2>&1
        grep -E ' /(a|b|c) ' /proc/self/mountinfo
    """, "--tmpfs", "/a:mode=0750,size=64k", "--tmpfs", "/b:exec,mode=755",
                 "--tmpfs", "/c:ro,noatime")
    lines = out.splitlines()
    assert lines[:2] == ["mode 750", "mode 755"], out
    assert "exec-ok" in lines, out
    assert "Read-only file system" in out, out
    mp = {m.mountpoint: m for m in parse_mountinfo("\n".join(l for l in lines if " - " in l) + "\n")}
    assert "noexec" not in mp["/b"].opts, mp["/b"]
    assert "ro" in mp["/c"].opts and "noatime" in mp["/c"].opts, mp["/c"]


@pytest.mark.parametrize("opts", ["size=1x", "size=", "mode=9", "mode=77777", "dev", "suid",
                                  "foo=bar", "bind", "shared", "uid=-1", "user",
                                  "tmpcopyup", "size=99999999999999999999k"])
def test_bad_tmpfs_options_are_one_line(dr, opts):
    line = error_line(run(["--tmpfs", f"/scratch:{opts}", dr["plain"], "--", "/bin/true"]), 64)
    assert "--tmpfs" in line, line


def test_tmpfs_target_with_colon_options_is_not_a_path(dr):
    out = inside(dr["plain"], "ls -d /scratch*", "--tmpfs", "/scratch:size=1m")
    assert out == "/scratch\n", out


@pytest.mark.parametrize("size,kib", [(None, 65536), ("1m", 1024), ("2g", 2097152),
                                      ("1536k", 1536), ("1048576", 1024), ("1.5m", 1536)])
def test_shm_size(dr, size, kib):
    opts = ["--shm-size", size] if size else []
    out = inside(dr["plain"], "grep ' /dev/shm ' /proc/self/mountinfo", *opts)
    m = parse_mountinfo(out)[0]
    assert f"size={kib}k" in m.super_opts, m


@pytest.mark.parametrize("size", ["0", "1x", "-1", "m", "1.2.3m"])
def test_bad_shm_size(dr, size):
    error_line(run(["--shm-size", size, dr["plain"], "--", "/bin/true"]), 64)


def test_print_shows_the_new_mounts(dr):
    import json
    p = run(["--print", "--tmpfs", "/s:size=1m,mode=700", "--shm-size", "8m", dr["plain"]])
    plan = json.loads(p.stdout)
    files = [m for m in plan["mounts"] if m["type"] == "file"]
    assert [m["dst"] for m in files] == ["/etc/hosts", "/etc/resolv.conf", "/etc/hostname"], plan
    assert all(m["readonly"] for m in files), files
    assert "127.0.0.1\tlocalhost" in files[0]["content"], files
    t = [m for m in plan["mounts"] if m["type"] == "tmpfs"][0]
    assert t["dst"] == "/s" and t["options"] == "mode=700,size=1m", t
    assert t["flags"] == ["nosuid", "nodev", "noexec"], t
    assert plan["shm_size"] == 8 * 1024 * 1024, plan
    p = run(["--print", "--no-network-files", dr["plain"]])
    assert not [m for m in json.loads(p.stdout)["mounts"] if m["type"] == "file"]
