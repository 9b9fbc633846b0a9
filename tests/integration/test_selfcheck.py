"""The suite's own machinery: the host-snapshot comparison and the mountinfo parser must catch
what they are there to catch (otherwise every "host unchanged" check would pass vacuously)."""
from udlib import diff_snapshots, host_snapshot, parse_mountinfo

LINE = ("36 35 98:0 /mnt1 /mnt\\040point rw,noatime master:1 - ext3 /dev/root "
        "rw,errors=continue\n")


def test_parse_mountinfo():
    (m,) = parse_mountinfo(LINE)
    assert m.mountpoint == "/mnt point"
    assert m.fstype == "ext3" and m.source == "/dev/root"
    assert m.opts == {"rw", "noatime"}
    assert m.super_opts == {"rw", "errors=continue"}
    assert m.optional == ("master:1",)


def test_snapshot_diff_sees_mounts_and_entries():
    a = host_snapshot()
    assert diff_snapshots(a, a) == []
    b = {"mounts": a["mounts"] + [("/x", "tmpfs", "none", ("rw",), ())],
         "dirs": dict(a["dirs"], **{"/tmp": (a["dirs"]["/tmp"] or []) + ["stray-dir"]})}
    d = diff_snapshots(a, b)
    assert any("mount appeared" in x and "/x" in x for x in d), d
    assert any("new entry in /tmp: stray-dir" in x for x in d), d
    # A propagation change of an existing mount (e.g. / made private in the host namespace).
    root = [k for k in a["mounts"] if k[0] == "/"][0]
    c = {"mounts": [k for k in a["mounts"] if k != root] + [root[:4] + (("changed:1",),)],
         "dirs": a["dirs"]}
    assert diff_snapshots(a, c), "a propagation change went unnoticed"
