"""The helper is never setuid: installed setuid or setgid it refuses to run (exit 70), and a
non-root caller is refused too, before anything is mounted."""
import os
import shutil
import subprocess

import pytest

from udlib import HELPER, describe, error_line, helper_env

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture
def helper_copy(scratch):
    """A root-owned copy of the helper that nobody can execute; removed right after the test
    (a setuid-root copy must not outlive it)."""
    os.chmod(scratch, 0o755)
    path = os.path.join(scratch, "uwsgi-docker-rootfs")
    shutil.copy(HELPER, path)
    os.chown(path, 0, 0)
    yield path
    os.unlink(path)


def _as_nobody(path, image):
    return subprocess.run([*NOBODY, path, image, "--", "/bin/true"], capture_output=True,
                          text=True, timeout=60, env=helper_env(), stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("mode", [0o4755, 0o2755, 0o6755], ids=["setuid", "setgid", "both"])
def test_refuses_setuid_or_setgid_install(images, helper_copy, mode):
    os.chmod(helper_copy, mode)
    try:
        p = _as_nobody(helper_copy, images.busybox)
    finally:
        os.chmod(helper_copy, 0o755)
    error_line(p, 70)


def test_refuses_non_root(images, helper_copy):
    p = _as_nobody(helper_copy, images.busybox)
    error_line(p, 70)


def test_root_copy_still_works(images, helper_copy):
    """The copy itself is fine: the refusals above are about the ids, not the path."""
    p = subprocess.run([helper_copy, images.busybox, "--", "/bin/true"], capture_output=True,
                       text=True, timeout=60, env=helper_env(), stdin=subprocess.DEVNULL)
    assert p.returncode == 0, describe(p)
