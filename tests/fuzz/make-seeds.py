#!/usr/bin/python3
"""Writes the committed seed corpora under tests/fuzz/corpus/<target>/ (run it to regenerate).

`make fuzz` also seeds daemon_json with tests/fixtures, the captured answers.
Hand-off seeds are built in the wire format of src/handoff.h, so that the fuzzer starts from
messages the decoder accepts.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
HEX = "0123456789abcdef" * 4
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWCGROUP = (
    0x00020000, 0x04000000, 0x08000000, 0x40000000, 0x02000000)


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def handoff(types, entries, version=1, flags=0):
    payload = b"".join(e.encode() + b"\0" for e in entries)
    hdr = b"UDNS" + struct.pack("<HHII", version, len(types), len(payload), flags)
    return hdr + b"".join(struct.pack("<I", t) for t in types) + payload


REFERENCES = {
    "short": "busybox",
    "tag": "library/busybox:1.36",
    "registry-port": "localhost:5000/team/app:v1.2-rc_3",
    "host-digest": "docker.io/library/debian:12@sha256:" + HEX,
    "id": "sha256:" + HEX,
    "id-prefix": "sha256:0123abc",
    "ip-host": "127.0.0.1:5000/a__b/c-d.e",
    "dotdot": "../../containers/json",
    "versions": "1.41\n1.9",
}
MEMBERS = {
    "plain": "etc/passwd",
    "dot-slash": "./usr/bin/env",
    "whiteout": "./etc/.wh.shadow",
    "opaque": "var/cache/.wh..wh..opq",
    "hardlink": "usr/bin/b\0./usr/bin/a",
    "dotdot": "a/../../etc/passwd",
    "absolute-link": "x\0/etc/shadow",
    "diff-id": "sha256:" + HEX,
}
HANDOFFS = {
    "minimal": handoff([CLONE_NEWNS], ["image=busybox", "id=sha256:" + HEX]),
    "full": handoff([CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWNET, CLONE_NEWCGROUP],
                    ["image=app:1", "id=sha256:" + HEX, "layers=3", "workdir=/srv",
                     "env=PATH=/usr/bin:/bin", "env=FOO=bar", "future=ignored"]),
    "two-ns": handoff([CLONE_NEWUTS, CLONE_NEWNS], ["image=x", "id=y", "layers=100000",
                                                     "env=A=", "workdir="]),
    "no-mnt": handoff([CLONE_NEWIPC], ["image=x", "id=y"]),
    "repeated": handoff([CLONE_NEWNS], ["image=x", "image=y", "id=z"]),
    "user": handoff([CLONE_NEWNS], ["image=x", "id=y", "user=65534:65534"]),
    "user-max": handoff([CLONE_NEWNS], ["image=x", "id=y", "user=2147483647:0"]),
    "user-error": handoff([CLONE_NEWNS], ["image=x", "id=y",
                                          "user_error=no user 'ghost' in the image's /etc/passwd"]),
    "user-both": handoff([CLONE_NEWNS], ["image=x", "id=y", "user=1:1", "user_error=x"]),
}

JSON = {
    "version": '{"ApiVersion":"1.41","MinAPIVersion":"1.12"}',
    "info": '{"Driver":"overlay2","DockerRootDir":"/var/lib/docker",'
            '"DriverStatus":[["driver-type","io.containerd.snapshotter.v1"],["x"]]}',
    "inspect": '{"Id":"sha256:%s","Config":{"Env":["A=b"],"WorkingDir":"/w"},'
               '"GraphDriver":{"Name":"overlay2","Data":{"UpperDir":"/s/a/diff",'
               '"LowerDir":"/s/b/diff:/s/c/diff"}},"RootFS":{"Layers":["sha256:%s"]}}' % (HEX, HEX),
    # one wrong type each, past the top level (tests/fixtures has the top-level ones)
    "env-entry-number": '{"Id":"x","Config":{"Env":["A=b",1]}}',
    "data-array": '{"Id":"x","GraphDriver":{"Name":"overlay2","Data":[]}}',
    "layers-string": '{"Id":"x","RootFS":{"Layers":"sha256:x"}}',
    "status-shapes": '{"Driver":"overlayfs","DriverStatus":[1,[],["driver-type",null],'
                     '["driver-type","containerd"]]}',
}

for name, doc in JSON.items():
    write("daemon_json", name, doc)
for name, ref in REFERENCES.items():
    write("reference", name, ref)
for name, member in MEMBERS.items():
    write("tar_member", name, member)
for name, msg in HANDOFFS.items():
    write("handoff", name, msg)
