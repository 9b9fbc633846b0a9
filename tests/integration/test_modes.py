"""--print, --pin, --rw-path and many runs at once."""
import json
import os
import selectors
import stat
import subprocess
import time

import pytest

from udlib import (HELPER, MOUNT_APIS, STORAGE, assert_layers_unchanged, describe, error_line,
                   helper_env, host_mount_table, host_mounts, inside, kept_dirs, layer_dirs,
                   layers_snapshot, parse_mountinfo, run, without_confine, NETWORK_FILES,
                   NETWORK_FILE_MOUNTS)


def _readline(proc, timeout):
    """One line of proc.stdout, or '' after timeout seconds (the process is then stuck)."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        if not sel.select(timeout):
            return ""
        return proc.stdout.readline()
    finally:
        sel.close()


def _is_mounted(path):
    return any(m.mountpoint == path for m in host_mounts())


# ------------------------------------------------------------------------------ --print

def _print(args):
    p = run(["--print", *args])
    assert p.returncode == 0, describe(p)
    try:
        return json.loads(p.stdout)
    except ValueError as e:
        raise AssertionError(f"--print output is not JSON ({e}):\n{p.stdout}")


def test_print_plan_defaults(images):
    info = images.info[images.layers]
    plan = _print([images.layers])
    assert plan["image"] == images.layers
    assert plan["id"] == info["Id"]
    assert plan["driver"] == "overlay2"
    # Kept: the snapshot store in the daemon's storage root, one directory per diffID.
    assert plan["layers_mode"] == "snapshot"
    assert plan["storage_root"] == STORAGE + "/uwsgi-docker"
    assert plan["layers"] == kept_dirs(info)
    direct = _print(["--layers", "direct", images.layers])
    assert direct["layers_mode"] == "direct" and direct["storage_root"] == STORAGE
    assert direct["layers"] == layer_dirs(info)      # UpperDir, then each LowerDir entry
    assert plan["rw"] == {"mode": "tmpfs", "path": None}
    assert plan["mount_api"] == "auto"
    assert plan["namespaces"] == ["mnt"]
    assert plan["hostname"] is None
    assert plan["workdir"] == "/srv/work"
    assert "UDTEST_VAR=hello" in plan["env"]
    assert "UDTEST_SPACED=a b  c" in plan["env"]
    mounts = plan["mounts"]
    assert [(m["type"], m["dst"]) for m in mounts] == [
        ("overlay", "/"), ("proc", "/proc"), ("dev", "/dev"), ("sys", "/sys")] + \
        NETWORK_FILE_MOUNTS, mounts
    assert mounts[0]["readonly"] is False
    assert mounts[3]["readonly"] is True
    assert all(m["readonly"] for m in mounts[4:]), mounts


def test_print_plan_with_options(images, scratch):
    a, b = os.path.join(scratch, "a"), os.path.join(scratch, "b")
    os.mkdir(a)
    os.mkdir(b)
    plan = _print(["--read-only", "--no-proc", "--bind", f"{a}:/in", "--ro-bind", b,
                   "--tmpfs", "/scratch", "--unshare", "uts,net", "--hostname", "h1",
                   "--mount-api", "legacy", images.busybox])
    assert plan["rw"] == {"mode": "none", "path": None}
    assert plan["mount_api"] == "legacy"
    assert plan["namespaces"][0] == "mnt"
    assert sorted(plan["namespaces"]) == ["mnt", "net", "uts"]
    assert plan["hostname"] == "h1"
    assert plan["workdir"] == ""
    mounts = plan["mounts"]
    assert [(m["type"], m["dst"]) for m in mounts] == [
        ("overlay", "/"), ("dev", "/dev"), ("sys", "/sys")] + NETWORK_FILE_MOUNTS + [
        ("bind", "/in"), ("bind", b), ("tmpfs", "/scratch")], mounts
    assert mounts[0]["readonly"] is True
    assert mounts[6]["src"] == a and mounts[6]["readonly"] is False
    assert mounts[7]["src"] == b and mounts[7]["readonly"] is True


def test_print_rw_path_creates_nothing(images, scratch):
    d = os.path.join(scratch, "rw")
    plan = _print(["--rw-path", d, images.busybox])
    assert plan["rw"] == {"mode": "path", "path": d}
    assert not os.path.exists(d), "--print created the --rw-path directory"


def test_print_120_layers(images):
    info = images.info[images.many]
    plan = _print(["--mount-api", "legacy", images.many])
    assert len(plan["layers"]) == 120
    assert plan["layers"] == kept_dirs(info)
    plan = _print(["--mount-api", "legacy", "--layers", "direct", images.many])
    assert plan["layers"] == layer_dirs(info) and len(plan["layers"]) == 120


def test_print_single_layer(images):
    info = images.info[images.single]
    plan = _print([images.single])
    assert plan["layers"] == kept_dirs(info) and len(plan["layers"]) == 1
    plan = _print(["--layers", "direct", images.single])
    assert plan["layers"] == layer_dirs(info) and len(plan["layers"]) == 1


@pytest.mark.parametrize("form", ["short", "tag", "library", "docker.io", "id", "hex",
                                  "prefix"])
def test_reference_forms(images, form):
    """What `docker` accepts, the helper accepts."""
    image_id = images.info[images.layers]["Id"]
    short = images.layers.rsplit(":", 1)[0]
    ref = {
        "short": short,
        "tag": f"{short}:latest",
        "library": f"library/{short}",
        "docker.io": f"docker.io/library/{short}:latest",
        "id": image_id,
        "hex": image_id.split(":", 1)[1],
        "prefix": image_id.split(":", 1)[1][:12],
    }[form]
    plan = _print([ref])
    assert plan["id"] == image_id
    assert plan["image"] == ref


@pytest.mark.parametrize("how", ["-H unix://", "-H path", "--docker-host", "DOCKER_HOST",
                                 "DOCKER_HOST=tcp"])
def test_docker_host_forms(images, how):
    args, env = [], helper_env()
    if how == "-H unix://":
        args = ["-H", "unix:///var/run/docker.sock"]
    elif how == "-H path":
        args = ["-H", "/var/run/docker.sock"]
    elif how == "--docker-host":
        args = ["--docker-host", "unix:///var/run/docker.sock"]
    elif how == "DOCKER_HOST":
        env = helper_env(DOCKER_HOST="unix:///var/run/docker.sock")
    else:  # not unix://: ignored, the default socket is used
        env = helper_env(DOCKER_HOST="tcp://127.0.0.1:1")
    p = run([*args, "--print", images.busybox], env=env)
    assert p.returncode == 0, describe(p)
    assert json.loads(p.stdout)["id"] == images.info[images.busybox]["Id"]


# ------------------------------------------------------------------------------ --pin

def test_pin_then_nsenter_then_umount(images, scratch):
    pin = os.path.join(scratch, "pinned-ns")          # does not exist yet: the helper creates it
    before = host_mount_table()
    p = run(["--pin", pin, images.layers])
    try:
        assert p.returncode == 0, describe(p)
        pinned = [m for m in host_mounts() if m.mountpoint == pin]
        assert len(pinned) == 1 and pinned[0].fstype == "nsfs", pinned

        def nsenter(*cmd):
            r = subprocess.run(["nsenter", f"--mount={pin}", *cmd], capture_output=True,
                               text=True, timeout=30, env=helper_env())
            assert r.returncode == 0, f"nsenter {cmd}: {r.returncode} {r.stdout} {r.stderr}"
            return r.stdout

        assert nsenter("cat", "/data/keep") == "keep\n"
        out = nsenter("/bin/sh", "-c", "cat /proc/self/mountinfo")
        mounts = parse_mountinfo(out)
        assert set(without_confine(m.mountpoint for m in mounts)) == {
            "/", "/proc", "/dev", "/dev/pts", "/dev/shm", "/sys"} | NETWORK_FILES, out
        assert [m for m in mounts if m.mountpoint == "/"][0].fstype == "overlay"
        # The namespace (and its tmpfs rw layer) lives on between entries while pinned.
        nsenter("/bin/sh", "-c", "echo pinned > /pinfile")
        assert nsenter("cat", "/pinfile") == "pinned\n"
        assert not os.path.exists("/pinfile")
    finally:
        if _is_mounted(pin):
            subprocess.run(["umount", pin], check=True)
    assert not _is_mounted(pin)
    assert host_mount_table() == before
    # What stays is the empty file the helper created, mode 0600 (man page, --pin).
    st = os.lstat(pin)
    assert stat.S_ISREG(st.st_mode) and st.st_size == 0
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)


def test_pin_onto_existing_file(images, scratch):
    pin = os.path.join(scratch, "existing")
    open(pin, "w").close()
    p = run(["--pin", pin, images.busybox])
    try:
        assert p.returncode == 0, describe(p)
        r = subprocess.run(["nsenter", f"--mount={pin}", "cat", "/etc/udtest-base"],
                           capture_output=True, text=True, timeout=30, env=helper_env())
        assert r.stdout == "base\n", r
    finally:
        if _is_mounted(pin):
            subprocess.run(["umount", pin], check=True)


# ------------------------------------------------------------------------------ --rw-path

@pytest.mark.parametrize("api", MOUNT_APIS)
def test_rw_path_persists(images, scratch, api):
    d = os.path.join(scratch, "rw")
    info = images.info[images.layers]
    before = layers_snapshot(info)
    inside(images.layers, "echo persisted > /persist.txt; echo more >> /data/keep; rm /data/opaque/new",
           "--rw-path", d, "--mount-api", api)
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert {"upper", "work"} <= set(os.listdir(d))
    with open(os.path.join(d, "upper", "persist.txt")) as f:
        assert f.read() == "persisted\n"
    out = inside(images.layers, "cat /persist.txt /data/keep; ls /data/opaque | wc -l",
                 "--rw-path", d, "--mount-api", api)
    assert [x.strip() for x in out.splitlines()] == ["persisted", "keep", "more", "0"], out
    assert_layers_unchanged(before, layers_snapshot(info))


def _run_until_ok(args, attempts=10):
    """The namespace of a finished run is torn down by the kernel just after the run ends; until
    then the rw path is (rightly) still in use. Only that refusal is retried, a bounded number
    of times, and said so on stdout; any other result is returned at once."""
    for i in range(attempts):
        p = run(args)
        if p.returncode != 68 or "in use by another live namespace" not in p.stderr:
            if i:
                print(f"the rw path was still in use for {i} attempt(s) after the run ended")
            return p
        time.sleep(0.3)
    return p


def test_rw_path_refused_while_a_command_runs(images, scratch):
    d = os.path.join(scratch, "rw")
    first = subprocess.Popen([HELPER, "--rw-path", d, images.layers, "--", "/bin/sh", "-c",
                              "echo ready; read x; echo bye"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=helper_env())
    try:
        line = _readline(first, 30)
        assert line == "ready\n", f"first run did not start: {line!r}"
        p = run(["--rw-path", d, images.layers, "--", "/bin/true"])
        msg = error_line(p, 68)
        assert d in msg, msg
    finally:
        try:
            out, err = first.communicate(input="\n", timeout=30)
        except subprocess.TimeoutExpired:
            first.kill()
            out, err = first.communicate()
    assert first.returncode == 0, err
    assert out == "bye\n"
    p = _run_until_ok(["--rw-path", d, images.layers, "--", "/bin/true"])
    assert p.returncode == 0, describe(p)


def test_rw_path_refused_while_pinned(images, scratch):
    d = os.path.join(scratch, "rw")
    pin = os.path.join(scratch, "pin")
    p = run(["--rw-path", d, "--pin", pin, images.layers])
    try:
        assert p.returncode == 0, describe(p)
        p = run(["--rw-path", d, images.layers, "--", "/bin/true"])
        error_line(p, 68)
        p = run(["--rw-path", d, "--pin", os.path.join(scratch, "pin2"), images.layers])
        error_line(p, 68)
        assert not _is_mounted(os.path.join(scratch, "pin2"))
        assert not os.path.lexists(os.path.join(scratch, "pin2")), "stray pin file after failure"
    finally:
        if _is_mounted(pin):
            subprocess.run(["umount", pin], check=True)
    p = _run_until_ok(["--rw-path", d, images.layers, "--", "/bin/true"])
    assert p.returncode == 0, describe(p)


# ------------------------------------------------------------------------------ many at once

@pytest.mark.parametrize("api", MOUNT_APIS)
def test_ten_runs_at_once(images, api):
    procs = [subprocess.Popen([HELPER, "--mount-api", api, images.layers, "--", "/bin/sh", "-c",
                               f"cat /data/keep; echo {i} > /mine; cat /mine; "
                               "readlink /proc/self/ns/mnt"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=helper_env())
             for i in range(10)]
    results = [(p, *p.communicate(timeout=60)) for p in procs]
    host_mnt = os.readlink("/proc/self/ns/mnt")
    for i, (p, out, err) in enumerate(results):
        assert p.returncode == 0, f"run {i}: exit {p.returncode}: {err}"
        lines = out.splitlines()
        assert lines[:2] == ["keep", str(i)], out     # its own rw layer: its own /mine
        assert lines[2] != host_mnt
