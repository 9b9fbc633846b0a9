"""Builders of image archives for the export tests: layer tars (benign or hostile, with PAX xattrs),
image configs, and the two archive formats the helper must read from GET /images/{name}/get:
Docker's `manifest.json` layout (what `docker save` writes and `docker load` reads) and the OCI
layout (`oci-layout`, `index.json`, `blobs/sha256/`) that Docker 25+ writes.

Everything is built in memory with tarfile; digests are computed here, so that `docker load`
accepts the result (config digest = image id, sha256 of each uncompressed layer = its diffID) --
or, for the digest-mismatch case, deliberately does not match.
"""
import gzip
import hashlib
import io
import json
import struct
import subprocess
import tarfile

MTIME = 1700000000          # fixed, so that two builds of one layer give one diffID
VFS_CAP_REVISION_2 = 0x02000000
VFS_CAP_FLAGS_EFFECTIVE = 0x000001
CAP_NET_RAW = 13
CAP_NET_BIND_SERVICE = 10


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def file_caps(*caps, effective=True):
    """A security.capability value (struct vfs_cap_data, revision 2) granting caps (bit numbers)
    permitted, and effective if asked."""
    lo = hi = 0
    for c in caps:
        if c < 32:
            lo |= 1 << c
        else:
            hi |= 1 << (c - 32)
    magic = VFS_CAP_REVISION_2 | (VFS_CAP_FLAGS_EFFECTIVE if effective else 0)
    return struct.pack("<IIIII", magic, lo, 0, hi, 0)


def _pax_xattrs(xattrs):
    """SCHILY.xattr.* PAX records; binary values go through surrogateescape (tarfile then
    writes hdrcharset=BINARY and the raw bytes)."""
    out = {}
    for k, v in (xattrs or {}).items():
        if isinstance(v, str):
            v = v.encode()
        out["SCHILY.xattr." + k] = v.decode("utf-8", "surrogateescape")
    return out


def _info(name, kind, mode, uid=0, gid=0, xattrs=None, mtime=MTIME):
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.uid, ti.gid = uid, gid
    ti.uname = ti.gname = ""
    ti.mtime = mtime
    if xattrs:
        ti.pax_headers = _pax_xattrs(xattrs)
    return ti


class LayerBuilder:
    """Appends members in order (the order is part of what hostile layers test)."""

    def __init__(self):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)

    def dir(self, name, mode=0o755, **kw):
        self.tar.addfile(_info(name.rstrip("/") + "/", tarfile.DIRTYPE, mode, **kw))
        return self

    def file(self, name, data=b"", mode=0o644, **kw):
        if isinstance(data, str):
            data = data.encode()
        ti = _info(name, tarfile.REGTYPE, mode, **kw)
        ti.size = len(data)
        self.tar.addfile(ti, io.BytesIO(data))
        return self

    def symlink(self, name, target, **kw):
        ti = _info(name, tarfile.SYMTYPE, 0o777, **kw)
        ti.linkname = target
        self.tar.addfile(ti)
        return self

    def hardlink(self, name, target, **kw):
        ti = _info(name, tarfile.LNKTYPE, kw.pop("mode", 0o644), **kw)
        ti.linkname = target
        self.tar.addfile(ti)
        return self

    def chardev(self, name, major, minor, mode=0o666, **kw):
        ti = _info(name, tarfile.CHRTYPE, mode, **kw)
        ti.devmajor, ti.devminor = major, minor
        self.tar.addfile(ti)
        return self

    def blockdev(self, name, major, minor, mode=0o660, **kw):
        ti = _info(name, tarfile.BLKTYPE, mode, **kw)
        ti.devmajor, ti.devminor = major, minor
        self.tar.addfile(ti)
        return self

    def sparse(self, name, realsize, data=b"", mode=0o644, **kw):
        """A PAX 1.0 sparse member (what `tar --sparse` writes): `data` at offset 0, then a
        hole up to `realsize`. Only the map block and `data` travel in the archive."""
        ti = _info(f"GNUSparseFile.0/{name.rsplit('/', 1)[-1]}", tarfile.REGTYPE, mode, **kw)
        ti.pax_headers = {**ti.pax_headers, "GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                          "GNU.sparse.name": name, "GNU.sparse.realsize": str(realsize)}
        smap = f"1\n0\n{len(data)}\n".encode()
        smap += b"\0" * (-len(smap) % 512)
        ti.size = len(smap) + len(data)
        self.tar.addfile(ti, io.BytesIO(smap + data))
        return self

    def fifo(self, name, mode=0o644, **kw):
        self.tar.addfile(_info(name, tarfile.FIFOTYPE, mode, **kw))
        return self

    def busybox(self, path="/bin/busybox"):
        """bin/busybox (the host's busybox-static) and its applets as symlinks, plus the usual
        top-level directories."""
        applets = subprocess.run([path, "--list"], capture_output=True, text=True,
                                 check=True).stdout.split()
        for d in ("bin", "etc", "root"):
            self.dir(d)
        self.dir("tmp", 0o1777)
        with open(path, "rb") as f:
            self.file("bin/busybox", f.read(), 0o755)
        for a in applets:
            if a != "busybox":
                self.symlink("bin/" + a, "busybox")
        self.file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")
        return self

    def bytes(self):
        self.tar.close()
        return self.buf.getvalue()


def config(diff_ids, env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",),
           cmd=("/bin/sh",), workdir=""):
    """An image config (JSON bytes) for layers with these diffIDs (hex, bottom to top)."""
    doc = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Env": list(env), "Cmd": list(cmd), "WorkingDir": workdir},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + d for d in diff_ids]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"udtest layer {i}"}
                    for i in range(len(diff_ids))],
    }
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


class Image:
    """layers: uncompressed layer tars (bytes), bottom to top. diff_ids defaults to their
    sha256s; pass others to build an image whose config lies about a layer."""

    def __init__(self, layers, tag, diff_ids=None, **cfg):
        self.layers = list(layers)
        self.tag = tag
        self.diff_ids = list(diff_ids) if diff_ids else [sha256(l) for l in self.layers]
        self.config = config(self.diff_ids, **cfg)
        self.id = sha256(self.config)

    def inspect(self, graph_driver=None):
        """What a daemon's GET /images/{name}/json would answer (containerd image store shape
        unless graph_driver is given)."""
        cfg = json.loads(self.config)
        return {
            "Id": "sha256:" + self.id,
            "RepoTags": [self.tag],
            "RepoDigests": [],
            "Parent": "",
            "Comment": "",
            "Created": cfg["created"],
            "Config": {"Env": cfg["config"]["Env"], "Cmd": cfg["config"]["Cmd"],
                       "WorkingDir": cfg["config"]["WorkingDir"], "Entrypoint": None,
                       "Labels": None, "User": ""},
            "Architecture": "amd64",
            "Os": "linux",
            "Size": sum(len(l) for l in self.layers),
            "GraphDriver": graph_driver or {"Name": "overlayfs", "Data": None},
            "RootFS": {"Type": "layers", "Layers": ["sha256:" + d for d in self.diff_ids]},
            "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
        }


def _add(tar, name, data, mode=0o644):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = mode
    ti.mtime = MTIME
    tar.addfile(ti, io.BytesIO(data))


def _adddir(tar, name):
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE
    ti.mode = 0o755
    ti.mtime = MTIME
    tar.addfile(ti)


def docker_archive(img):
    """`docker save` format: <n>/layer.tar per layer (written first, as docker save does:
    its entries are sorted, and manifest.json sorts after the hex names), the config as
    <id>.json, then manifest.json and repositories."""
    buf = io.BytesIO()
    names = []
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for i, layer in enumerate(img.layers):
            d = sha256(f"{img.id}/{i}".encode())   # any unique directory name
            _adddir(t, d)
            _add(t, f"{d}/VERSION", b"1.0")
            _add(t, f"{d}/layer.tar", layer)
            names.append(f"{d}/layer.tar")
        _add(t, f"{img.id}.json", img.config)
        repo, _, tag = img.tag.rpartition(":")
        _add(t, "manifest.json", json.dumps(
            [{"Config": f"{img.id}.json", "RepoTags": [img.tag], "Layers": names}]).encode())
        _add(t, "repositories", json.dumps({repo: {tag: img.diff_ids[-1]}}).encode())
    return buf.getvalue()


def gzip_bytes(data):
    return gzip.compress(data, mtime=0)


def zstd_bytes(data):
    return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True,
                          check=True).stdout


LAYER_MEDIA = {
    "tar": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}


def oci_archive(img, compression="tar", with_docker_manifest=False):
    """OCI image layout as Docker 25+ `docker save` writes it: blobs/sha256/* first (layers,
    config, manifest), then oci-layout, index.json (and manifest.json when asked)."""
    comp = {"tar": lambda b: b, "gzip": gzip_bytes, "zstd": zstd_bytes}[compression]
    blobs = [comp(l) for l in img.layers]
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": "sha256:" + img.id, "size": len(img.config)},
        "layers": [{"mediaType": LAYER_MEDIA[compression], "digest": "sha256:" + sha256(b),
                    "size": len(b)} for b in blobs],
    }).encode()
    index = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": "sha256:" + sha256(manifest), "size": len(manifest),
                       "annotations": {"io.containerd.image.name": img.tag,
                                       "org.opencontainers.image.ref.name":
                                           img.tag.rpartition(":")[2]}}],
    }).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        _adddir(t, "blobs")
        _adddir(t, "blobs/sha256")
        seen = set()
        for b in blobs + [img.config, manifest]:
            h = sha256(b)
            if h not in seen:
                seen.add(h)
                _add(t, f"blobs/sha256/{h}", b)
        _add(t, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add(t, "index.json", index)
        if with_docker_manifest:
            _add(t, "manifest.json", json.dumps(
                [{"Config": f"blobs/sha256/{img.id}", "RepoTags": [img.tag],
                  "Layers": [f"blobs/sha256/{sha256(b)}" for b in blobs]}]).encode())
    return buf.getvalue()
