"""A real registry for the tests: Debian's docker-registry (2.8) on 127.0.0.1 with htpasswd auth
over plain HTTP (dockerd treats 127.0.0.0/8 registries as insecure). The session fixture starts it
and stops it by pid; test images (busybox-static and a marker file) are pushed there with the
docker CLI under a throwaway DOCKER_CONFIG, then removed locally, so that only a pull brings them
back."""
import base64
import io
import json
import os
import re
import socket
import subprocess
import tarfile
import time

import pytest

from udlib import DOCKER, docker

REGISTRY = "/usr/bin/docker-registry"
USER, PASSWORD = "regtester", "s3cret-pw-9f2"
SCHEMA2 = "application/vnd.docker.distribution.manifest.v2+json"


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def _wait_answering(addr, proc, log):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"docker-registry exited {proc.returncode}:\n{open(log).read()}")
        try:
            with socket.create_connection(addr.split(":"), timeout=1) as s:
                s.sendall(b"GET /v2/ HTTP/1.0\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.0 401"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail(f"docker-registry does not answer at {addr}:\n{open(log).read()}")


def _image_tar(path, marker):
    """busybox-static at /bin/busybox (and /bin/cat, /bin/sh) plus /marker."""
    with tarfile.open(path, "w") as t:
        for d in ("bin", "tmp"):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            t.addfile(ti)
        t.add("/bin/busybox", "bin/busybox")
        for a in ("cat", "sh"):
            ti = tarfile.TarInfo("bin/" + a)
            ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, "busybox", 0o777
            t.addfile(ti)
        data = marker.encode()
        ti = tarfile.TarInfo("marker")
        ti.size, ti.mode = len(data), 0o644
        t.addfile(ti, io.BytesIO(data))


class Registry:
    """One docker-registry with htpasswd auth in directory d: start() and stop() (by pid) may
    be called again, keeping its data and its address; push(repo_tag, marker) -> the pushed
    manifest's digest; push_tag(local, repo_tag) pushes an image the daemon has (the tag goes
    away again, locally)."""

    def __init__(self, d, log_level="warn"):
        for tool in (REGISTRY, "/usr/bin/htpasswd"):
            if not os.access(tool, os.X_OK):
                pytest.fail(f"{tool} is missing (scripts/deps.sh installs docker-registry and "
                            "apache2-utils)")
        self.dir = d
        os.makedirs(os.path.join(d, "data"))
        htpasswd = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], capture_output=True,
                                  text=True, check=True).stdout
        _write(os.path.join(d, "htpasswd"), htpasswd)
        self.addr = f"127.0.0.1:{_free_port()}"
        self.config = os.path.join(d, "config.yml")
        _write(self.config, "\n".join([
            "version: 0.1", "log:", f"  level: {log_level}", "storage:", "  filesystem:",
            f"    rootdirectory: {d}/data", "http:", f"  addr: {self.addr}",
            f"  secret: {os.urandom(8).hex()}", "auth:", "  htpasswd:", "    realm: udtest",
            f"    path: {d}/htpasswd", ""]))
        self.log = os.path.join(d, "registry.log")
        self.push_cfg = os.path.join(d, "push-config")
        os.mkdir(self.push_cfg, 0o700)
        self.proc = None
        self.counter = 0

    def start(self):
        with open(self.log, "a") as logf:
            self.proc = subprocess.Popen([REGISTRY, "serve", self.config], stdout=logf,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _wait_answering(self.addr, self.proc, self.log)
        p = subprocess.run([DOCKER, "--config", self.push_cfg, "login", "-u", USER,
                            "--password-stdin", self.addr], input=PASSWORD, capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        return self

    def stop(self):
        if not self.proc or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def push(self, repo_tag, marker):
        self.counter += 1
        tar = os.path.join(self.dir, f"img{self.counter}.tar")
        _image_tar(tar, marker)
        ref = f"{self.addr}/{repo_tag}"
        docker("import", tar, ref)
        try:
            out = docker("--config", self.push_cfg, "push", ref).stdout
        finally:
            docker("rmi", "-f", ref, check=False)
        m = re.search(r"digest: (sha256:[0-9a-f]{64})", out)
        assert m, out
        return m.group(1)

    def push_tag(self, local, repo_tag):
        ref = f"{self.addr}/{repo_tag}"
        docker("tag", local, ref)
        try:
            out = docker("--config", self.push_cfg, "push", ref).stdout
        finally:
            docker("rmi", ref, check=False)
        m = re.search(r"digest: (sha256:[0-9a-f]{64})", out)
        return m.group(1) if m else None

    def _http(self, method, path, body=None, ctype=None):
        import urllib.request
        req = urllib.request.Request(f"http://{self.addr}/v2/{path}", data=body, method=method)
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
        req.add_header("Accept", SCHEMA2)
        if ctype:
            req.add_header("Content-Type", ctype)
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.read()

    def retag(self, repo, src, dst):
        """Points repo:dst at the manifest of repo:src, in the registry alone (the daemon sees
        nothing of it): a push's last step, without its uploads. Returns the manifest."""
        manifest = self._http("GET", f"{repo}/manifests/{src}")
        self._http("PUT", f"{repo}/manifests/{dst}", manifest, SCHEMA2)
        return json.loads(manifest)

    def blob_data(self, digest):
        """The file that holds a blob in the registry's storage."""
        algo, hexa = digest.split(":")
        return os.path.join(self.dir, "data", "docker", "registry", "v2", "blobs", algo,
                            hexa[:2], hexa, "data")

    def requests(self, path_part):
        """How many requests the registry has logged (log level info) whose URI has path_part."""
        with open(self.log, errors="replace") as f:
            return sum(1 for line in f if "response completed" in line and path_part in line)

    def close(self):
        docker("--config", self.push_cfg, "logout", self.addr, check=False)
        self.stop()


@pytest.fixture(scope="session")
def registry(docker_ready, session_dir):
    """The session's registry (a Registry)."""
    reg = Registry(os.path.join(session_dir, "registry"))
    try:
        yield reg.start()
    finally:
        reg.close()


@pytest.fixture
def pulled():
    """Records refs a test may pull; removes their images afterwards and checks they are gone."""
    refs = []
    yield refs
    for ref in refs:
        p = docker("image", "inspect", "-f", "{{.Id}}", ref, check=False)
        if p.returncode == 0:
            docker("rmi", "-f", p.stdout.strip(), check=False)
    for ref in refs:
        assert docker("image", "inspect", ref, check=False).returncode != 0, f"{ref} left behind"


def _auths_config(scratch, addr, user=USER, password=PASSWORD):
    cfg = os.path.join(scratch, "docker-config")
    os.mkdir(cfg, 0o700)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    _write(os.path.join(cfg, "config.json"), json.dumps({"auths": {addr: {"auth": auth}}}), 0o600)
    return cfg


