"""`make deb`: the Debian packages built, checked by lintian, installed with dpkg, serving an image
with nothing but `plugins = python3,docker` (no plugin-dir, no docker-helper), then purged: nothing
of ours is left, Debian's own uWSGI packages still are. The later tests use build/ binaries, never
the installed ones, and the purge runs whatever happened."""
import glob
import hashlib
import os
import subprocess

import pytest

from plugin_support import (UWSGI, Harness, form1_options, form2_options, free_port,
                            plug_images)

assert plug_images  # a fixture, used by name

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEB_DIR = os.path.join(ROOT, "build", "deb")
OURS = ["uwsgi-plugin-docker", "uwsgi-docker-rootfs"]
DEBIANS = ["uwsgi-core", "uwsgi-plugin-python3"]
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C",
       "HOME": "/root", "DEBIAN_FRONTEND": "noninteractive"}
INSTALLED_FILES = ["/usr/bin/uwsgi-docker-rootfs", "/usr/lib/uwsgi/plugins/docker_plugin.so",
                   "/usr/share/man/man1/uwsgi-docker-rootfs.1.gz",
                   "/usr/share/man/man7/uwsgi-plugin-docker.7.gz",
                   "/usr/share/doc/uwsgi-docker-rootfs", "/usr/share/doc/uwsgi-plugin-docker"]


def run(*args, timeout=600):
    return subprocess.run(list(args), capture_output=True, text=True, env=ENV, timeout=timeout)


def status(pkg):
    p = run("dpkg-query", "-W", "-f=${db:Status-Status}", pkg)
    return p.stdout.strip() if p.returncode == 0 else "unknown"


@pytest.fixture
def plug(scratch, plug_images):
    h = Harness(scratch, plug_images)
    yield h
    h.cleanup()


@pytest.fixture
def debs():
    for pkg in OURS:
        assert status(pkg) in ("unknown", "not-installed"), \
            f"{pkg} is already installed on this machine: the test would purge it"
    p = run("make", "-C", ROOT, "deb", timeout=900)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    found = {pkg: glob.glob(os.path.join(DEB_DIR, f"{pkg}_*.deb")) for pkg in OURS}
    assert all(len(v) == 1 for v in found.values()), found
    yield {pkg: v[0] for pkg, v in found.items()}
    run("dpkg", "--purge", *OURS)


def _served_by_the_installed_packages(plug, image, options, name):
    port = free_port()
    opts = [(k, v) for k, v in options(plug.workdir, port, image)
            if k not in ("plugin-dir", "docker-helper", "exec-as-root")]
    if options is form2_options:
        opts.append(("exec-as-root", f"uwsgi-docker-rootfs {image}"))
    assert ("plugins", "python3,docker") in opts
    u = plug.start(opts, name=name)
    d = u.wait_ready(port)
    assert d["version"] == "v1" and d["only_in_image"] == "image-only-content", d
    with open(f"/proc/{u.pid}/maps") as f:
        assert "/usr/lib/uwsgi/plugins/docker_plugin.so" in f.read()
    plug.stop_and_check(u)


def test_make_deb_install_serve_purge(plug, plug_images, debs):
    abi = hashlib.md5(run("uwsgi-core", "--dot-h").stdout.encode()).hexdigest()
    depends = run("dpkg-deb", "-f", debs["uwsgi-plugin-docker"], "Depends").stdout
    assert f"uwsgi-abi-{abi}" in depends and "uwsgi-docker-rootfs (= " in depends, depends
    lint = run("lintian", *debs.values())
    errors = [l for l in lint.stdout.splitlines() if l.startswith("E: ")]
    assert lint.returncode == 0 and not errors, lint.stdout + lint.stderr

    p = run("dpkg", "-i", *debs.values())
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert all(status(pkg) == "installed" for pkg in OURS)
    for path in INSTALLED_FILES:
        assert os.path.exists(path), path
    _served_by_the_installed_packages(plug, plug_images.v1, form1_options, "deb-form1")
    _served_by_the_installed_packages(plug, plug_images.v1, form2_options, "deb-form2")

    listed = run("dpkg", "-L", *OURS).stdout.split()
    p = run("dpkg", "--purge", *OURS)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    for pkg in OURS:
        assert status(pkg) in ("unknown", "not-installed"), pkg
        assert run("dpkg", "-L", pkg).returncode != 0, pkg
    left = [f for f in listed if os.path.exists(f) and not os.path.isdir(f)]
    assert left == [], f"files of ours left after the purge: {left}"
    for path in INSTALLED_FILES:
        assert not os.path.exists(path), path
    for pkg in DEBIANS:
        assert status(pkg) == "installed", f"{pkg} is no longer installed"
    assert os.access(UWSGI, os.X_OK)
