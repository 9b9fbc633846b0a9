# `uwsgi --build-plugin hooks/docker` (or `python3 uwsgiconfig.py --plugin PATH/hooks/docker` in a
# uWSGI source tree): builds the same docker_plugin.so as `make`, with uWSGI's own flags and header.
#
# uwsgiconfig.py's build_plugin() runs this file with exec(): no __file__, and the working
# directory is wherever uwsgi was started. GCC_LIST is joined to the plugin directory as given
# on the command line; everything else (CFLAGS) must be absolute, so the directory is found from
# build_plugin()'s own `path`, checked to be the directory that holds this file.
import glob
import hashlib
import inspect
import os
import shlex
import sys


def _plugin_dir():
    frame = inspect.currentframe()
    while frame is not None:
        path = frame.f_locals.get("path")
        if isinstance(path, str) and os.path.isfile(os.path.join(path, "uwsgiplugin.py")):
            return os.path.abspath(path)
        frame = frame.f_back
    for i, arg in enumerate(sys.argv[:-1]):
        if arg in ("--extra-plugin", "--plugin"):
            return os.path.abspath(sys.argv[i + 1])
    raise SystemExit("uwsgiplugin.py: cannot tell where hooks/docker is")


def _uwsgi_abi():
    """The md5 of `uwsgi --dot-h` for the header this build compiles against (abi.c compares
    it with the running uwsgi's). build_plugin() puts -I. first: a uWSGI source tree's uwsgi.h;
    --build-plugin writes the running uwsgi's into .uwsgi_plugins_builder/ (without the newline
    that --dot-h prints after it)."""
    for header in ("uwsgi.h", ".uwsgi_plugins_builder/uwsgi.h"):
        if os.path.isfile(header):
            with open(header, "rb") as f:
                return hashlib.md5(f.read() + b"\n").hexdigest()
    raise SystemExit("uwsgiplugin.py: no uwsgi.h in . or .uwsgi_plugins_builder/")


_DIR = _plugin_dir()
_SRC = os.path.join(os.path.dirname(os.path.dirname(_DIR)), "src")

NAME = "docker"
# The Makefile's PLUGIN_WARN and the rest of its plugin command line.
CFLAGS = ["-Wall", "-Wextra", "-Werror", "-Wshadow", "-Wformat=2", "-D_GNU_SOURCE",
          "-I" + shlex.quote(_SRC), "-I" + shlex.quote(_DIR),
          "-DUD_UWSGI_ABI=\\\"%s\\\"" % _uwsgi_abi()]
LDFLAGS = []
LIBS = ["-ldl"]
# The plugin's sources and the helper's modules it shares (the Makefile's PLUGIN_SRCS).
GCC_LIST = sorted(os.path.basename(c)[:-2] for c in glob.glob(os.path.join(_DIR, "*.c"))) + \
    ["../../src/" + m for m in ("handoff", "error", "caps", "util")]
