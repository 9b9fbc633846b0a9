"""How the plugin is built and installed: `uwsgi --build-plugin`, the uWSGI ABI check at load,
`make install` against a uWSGI whose plugin directory is relative, and `make deb` installed,
serving and purged. Debian's real uWSGI (uwsgi-core 2.0.21, uwsgi-plugin-python3) throughout."""
import hashlib
import os
import shutil
import subprocess

import pytest

from plugin_support import BUILD_DIR, UWSGI, Harness, form1_options, free_port, plug_images

assert plug_images  # a fixture, used by name

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAKE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C",
            "HOME": "/root", "PYTHON": "/usr/bin/python3"}


@pytest.fixture
def plug(scratch, plug_images):
    h = Harness(scratch, plug_images)
    yield h
    h.cleanup()


def running_abi():
    """Debian's name for the running uWSGI's ABI: the md5 of `uwsgi --dot-h` (uwsgi-abi-<md5>)."""
    out = subprocess.run([UWSGI, "--dot-h"], capture_output=True, check=True).stdout
    return hashlib.md5(out).hexdigest()


def _copy_tree(dst):
    """The files a build reads, as a scratch copy of the repository."""
    os.makedirs(dst)
    for name in ("src", "hooks", "man"):
        shutil.copytree(os.path.join(ROOT, name), os.path.join(dst, name),
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(os.path.join(ROOT, "Makefile"), dst)


def _with_plugin_dir(options, plugin_dir):
    return [(k, plugin_dir if k == "plugin-dir" else v) for k, v in options]


def test_build_plugin_builds_a_plugin_that_serves(plug, plug_images):
    tree = plug.path("tree")
    _copy_tree(tree)
    p = subprocess.run([UWSGI, "--build-plugin", "hooks/docker"], cwd=tree, env=MAKE_ENV,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert os.path.isfile(os.path.join(tree, "docker_plugin.so")), p.stdout[-2000:]
    # the same warnings as make, absolute include paths, the ABI of the header it compiled with
    line = next(l for l in p.stdout.splitlines() if "-o docker_plugin.so" in l)
    for flag in ("-Werror", "-Wshadow", "-Wformat=2", f"-I{tree}/src", f"-I{tree}/hooks/docker",
                 f'-DUD_UWSGI_ABI=\\"{running_abi()}\\"'):
        assert flag in line.split(), (flag, line)
    port = free_port()
    opts = _with_plugin_dir(form1_options(plug.workdir, port, plug_images.v1), tree)
    u = plug.start(opts, name="built")
    d = u.wait_ready(port)
    assert d["version"] == "v1" and d["only_in_image"] == "image-only-content", d
    with open(f"/proc/{u.pid}/maps") as f:
        assert f"{tree}/docker_plugin.so" in f.read(), "the master did not load the built plugin"
    plug.stop_and_check(u)


def test_abi_check_refuses_a_plugin_built_for_another_uwsgi_h(plug, plug_images):
    """A plugin compiled against a uwsgi.h whose struct uwsgi_server has one more field (what
    happened between 2.0.21 and 2.0.30): uWSGI stops at load with one line naming both ABIs and
    how to rebuild, before the helper or any app code runs."""
    b = plug.path("other-abi")
    os.mkdir(b)
    with open(os.path.join(BUILD_DIR, "uwsgi.h")) as f:
        header = f.read()
    assert header.count("struct uwsgi_server {") == 1
    changed = header.replace("struct uwsgi_server {", "struct uwsgi_server {\n\tint moved;")
    with open(os.path.join(b, "uwsgi.h"), "w") as f:
        f.write(changed)
    built_for = hashlib.md5(changed.encode()).hexdigest()
    p = subprocess.run(["make", "-C", ROOT, f"B={b}", f"{b}/docker_plugin.so"], env=MAKE_ENV,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    port = free_port()
    u = plug.start(_with_plugin_dir(form1_options(plug.workdir, port, plug_images.v1), b),
                   name="other-abi")
    rc = u.wait_exit(30)
    log = u.log()
    assert rc == 1, (rc, log[-3000:])
    lines = [l for l in log.splitlines() if l.startswith("[docker] ")]
    assert len(lines) == 1, log[-3000:]
    assert built_for in lines[0] and running_abi() in lines[0] and "rebuild" in lines[0], lines
    assert "spawned uWSGI" not in log and "WSGI app" not in log, log[-3000:]
    plug.stop_and_check(u, expect_rc=None, lazy=False)


ABI_CACHE = "/run/uwsgi-docker/uwsgi-abi"


def _abi_key():
    """The cache's key for the running uwsgi: /proc/self/exe's dev, inode, size, mtime, ctime."""
    st = os.stat(os.path.realpath(UWSGI))
    ns = lambda t: "%d.%09d" % divmod(t, 10**9)
    return "%d %d %d %s %s " % (st.st_dev, st.st_ino, st.st_size, ns(st.st_mtime_ns),
                                ns(st.st_ctime_ns))


def _load_plugin():
    return subprocess.run([UWSGI, "--plugin-dir", BUILD_DIR, "--plugins", "docker", "--version"],
                          capture_output=True, text=True, timeout=30)


def _write_cache(data, mode=0o600):
    with open(ABI_CACHE, "wb") as f:
        f.write(data)
    os.chmod(ABI_CACHE, mode)


def test_the_abi_cache_is_used_only_as_root_wrote_it():
    """The running binary's md5 is kept per binary (abi.c): a load reads it instead of hashing
    uwsgi.h, but only from a file root alone could have written; anything else is hashed again."""
    wrong = "0" * 32
    saved = open(ABI_CACHE, "rb").read() if os.path.exists(ABI_CACHE) else None
    try:
        if saved is not None:
            os.unlink(ABI_CACHE)
        p = _load_plugin()
        assert p.returncode == 0, p.stdout + p.stderr
        st = os.stat(ABI_CACHE)
        assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600)
        assert open(ABI_CACHE).read().splitlines()[0] == _abi_key() + running_abi()

        # The cache is what a load believes: a wrong md5 under the right key is refused.
        _write_cache((_abi_key() + wrong + "\n").encode())
        p = _load_plugin()
        assert p.returncode != 0 and wrong in p.stdout + p.stderr, p.stdout + p.stderr

        # The same line in a file others may write, or garbage: hashed again, and it loads.
        _write_cache((_abi_key() + wrong + "\n").encode(), 0o666)
        p = _load_plugin()
        assert p.returncode == 0, p.stdout + p.stderr
        assert open(ABI_CACHE).read().splitlines()[0] == _abi_key() + running_abi()
        assert os.stat(ABI_CACHE).st_mode & 0o777 == 0o600
        for junk in (os.urandom(7000), b"x" * 9000, (_abi_key() + "Z" * 32 + "\n").encode()):
            _write_cache(junk)
            p = _load_plugin()
            assert p.returncode == 0, p.stdout + p.stderr
    finally:
        if os.path.exists(ABI_CACHE):
            os.unlink(ABI_CACHE)
        if saved is not None:
            _write_cache(saved)


# What a pip-built uWSGI 2.0.30 says about its plugin directory (`uwsgi --cflags`, the part make
# reads): a relative one.
PIP_CFLAGS = r'-O2 -I. -Wall -DUWSGI_ZLIB -DUWSGI_PLUGIN_DIR="\".\"" -DUWSGI_VERSION="\"2.0.30\""'


def test_make_install_refuses_a_relative_plugin_dir_and_takes_plugin_dir(scratch):
    pip_uwsgi = os.path.join(scratch, "uwsgi")
    with open(pip_uwsgi, "w") as f:
        f.write("#!/bin/sh\n[ \"$1\" = --cflags ] && echo '%s' && exit 0\nexit 1\n" % PIP_CFLAGS)
    os.chmod(pip_uwsgi, 0o755)
    dest = os.path.join(scratch, "dest")
    p = subprocess.run(["make", "-C", ROOT, "install", f"UWSGI={pip_uwsgi}", f"DESTDIR={dest}"],
                       env=MAKE_ENV, capture_output=True, text=True, timeout=300)
    assert p.returncode != 0, p.stdout + p.stderr
    errs = [l for l in p.stderr.splitlines() if l.startswith("install: ")]
    assert len(errs) == 1 and "'.'" in errs[0] and "PLUGIN_DIR=" in errs[0], p.stderr
    assert not os.path.exists(dest), "make install wrote before refusing"
    assert not os.path.exists(os.path.join(ROOT, "docker_plugin.so"))
    p = subprocess.run(["make", "-C", ROOT, "install", f"UWSGI={UWSGI}", f"DESTDIR={dest}",
                        "PREFIX=/usr", "PLUGIN_DIR=/opt/uwsgi/plugins"], env=MAKE_ENV,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    for path in ("opt/uwsgi/plugins/docker_plugin.so", "usr/bin/uwsgi-docker-rootfs",
                 "usr/share/man/man7/uwsgi-plugin-docker.7"):
        assert os.path.isfile(os.path.join(dest, path)), path
