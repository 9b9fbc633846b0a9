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
import types

import pytest

from udlib import DOCKER, docker

REGISTRY = "/usr/bin/docker-registry"
USER, PASSWORD = "regtester", "s3cret-pw-9f2"


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


@pytest.fixture(scope="session")
def registry(docker_ready, session_dir):
    """The registry, and reg.push(repo_tag, marker) -> the pushed manifest's digest."""
    for tool in (REGISTRY, "/usr/bin/htpasswd"):
        if not os.access(tool, os.X_OK):
            pytest.fail(f"{tool} is missing (scripts/deps.sh installs docker-registry and "
                        "apache2-utils)")
    d = os.path.join(session_dir, "registry")
    os.makedirs(os.path.join(d, "data"))
    htpasswd = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], capture_output=True,
                              text=True, check=True).stdout
    _write(os.path.join(d, "htpasswd"), htpasswd)
    addr = f"127.0.0.1:{_free_port()}"
    _write(os.path.join(d, "config.yml"), "\n".join([
        "version: 0.1", "log:", "  level: warn", "storage:", "  filesystem:",
        f"    rootdirectory: {d}/data", "http:", f"  addr: {addr}", f"  secret: {os.urandom(8).hex()}",
        "auth:", "  htpasswd:", "    realm: udtest", f"    path: {d}/htpasswd", ""]))
    log = os.path.join(d, "registry.log")
    with open(log, "w") as logf:
        proc = subprocess.Popen([REGISTRY, "serve", os.path.join(d, "config.yml")],
                                stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    push_cfg = os.path.join(d, "push-config")
    os.mkdir(push_cfg, 0o700)
    try:
        _wait_answering(addr, proc, log)
        p = subprocess.run([DOCKER, "--config", push_cfg, "login", "-u", USER, "--password-stdin",
                            addr], input=PASSWORD, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        counter = [0]

        def push(repo_tag, marker):
            counter[0] += 1
            tar = os.path.join(d, f"img{counter[0]}.tar")
            _image_tar(tar, marker)
            ref = f"{addr}/{repo_tag}"
            docker("import", tar, ref)
            try:
                out = docker("--config", push_cfg, "push", ref).stdout
            finally:
                docker("rmi", "-f", ref, check=False)
            m = re.search(r"digest: (sha256:[0-9a-f]{64})", out)
            assert m, out
            return m.group(1)

        def push_tag(local, repo_tag):
            """Pushes an image the daemon has under another name; only the tag goes away."""
            ref = f"{addr}/{repo_tag}"
            docker("tag", local, ref)
            try:
                docker("--config", push_cfg, "push", ref)
            finally:
                docker("rmi", ref, check=False)

        yield types.SimpleNamespace(addr=addr, push=push, push_tag=push_tag, dir=d)
    finally:
        docker("--config", push_cfg, "logout", addr, check=False)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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


