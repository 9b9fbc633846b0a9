"""A second, real dockerd of the session's own, for what must not happen to the shared one:
`docker system prune -a`, stopping the daemon by pid in the middle of a test.

It runs Debian's dockerd with its own data root (under the session's /var/tmp directory, on the
same filesystem as everything else), exec root, socket, pidfile and containerd namespace, and
in a mount namespace of its own (`unshare --mount --propagation private`): whatever it mounts
never shows in the host's mount table. Its layer directories are ordinary directories on the
host, where the helper finds them as it finds the shared daemon's.
"""
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from udlib import DOCKER

START_TIMEOUT = 60


class SecondDaemon:
    def __init__(self, base, token):
        self.base = base
        self.root = os.path.join(base, "root")
        # Unix socket paths are short: containerd's lives under the exec root.
        self.exec_root = f"/run/udtest-d2-{token}"
        self.sock = os.path.join(self.exec_root, "docker.sock")
        self.pidfile = os.path.join(self.exec_root, "dockerd.pid")
        self.log_path = os.path.join(base, "dockerd.log")
        self.config = os.path.join(base, "daemon.json")
        self.proc = None
        os.makedirs(base, exist_ok=True)
        with open(self.config, "w") as f:
            json.dump({}, f)

    @property
    def host(self):
        return "unix://" + self.sock

    def docker(self, *args, check=True, timeout=300, **kw):
        p = subprocess.run([DOCKER, "-H", self.host, *args], capture_output=True, text=True,
                           timeout=timeout, **kw)
        if check and p.returncode != 0:
            raise AssertionError(f"docker -H {self.host} {' '.join(args)}: {p.stderr.strip()}")
        return p

    def answers(self):
        return os.path.exists(self.sock) and self.docker("version", check=False,
                                                         timeout=10).returncode == 0

    def start(self):
        os.makedirs(self.exec_root, exist_ok=True)
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "dockerd",
             "--config-file", self.config, "--data-root", self.root,
             "--exec-root", self.exec_root, "-H", self.host, "--pidfile", self.pidfile,
             "--iptables=false", "--ip6tables=false", "--bridge=none",
             "--containerd-namespace", "udtest2", "--containerd-plugins-namespace", "udtest2p"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self.answers():
                return self
            time.sleep(0.1)
        self.stop()
        with open(self.log_path) as f:
            tail = f.read()[-3000:]
        pytest.fail(f"the second dockerd did not answer within {START_TIMEOUT} s:\n{tail}")

    @property
    def pid(self):
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Stops the daemon by its pid (unshare exec'ed it: the same process) and waits."""
        if not self.pid:
            return
        os.kill(self.pid, sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def load_from_shared(self, *tags):
        """Copies images from the shared daemon (docker save | docker -H ... load)."""
        save = subprocess.Popen([DOCKER, "save", *tags], stdout=subprocess.PIPE)
        load = subprocess.run([DOCKER, "-H", self.host, "load", "-q"], stdin=save.stdout,
                              capture_output=True, text=True, timeout=300)
        save.stdout.close()
        assert save.wait(300) == 0 and load.returncode == 0, load.stderr

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
        shutil.rmtree(self.exec_root, ignore_errors=True)
