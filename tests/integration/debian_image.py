"""A realistic test image: a real Debian 12 root (python3 + python3-flask from the apt mirror this
machine uses), and Flask app images built on top of it.

The base is `mmdebstrap --variant=minbase --include=python3,python3-flask bookworm` into a tar,
then `docker import`. It takes tens of seconds, so it is cached between test runs by its tag
(BASE_TAG): bump the tag's suffix when the recipe changes. App images are built with the legacy
builder and `--network none`, like the other test images (plugin_support._build). Its Python is
Debian's 3.11.2, the one uWSGI's python3 plugin embeds.

The app at /srv/app.py exposes `application` (the Flask app itself, a WSGI callable). `/` answers
JSON with the fields of the busybox test app (plugin_support.APP: version, pid, uid, environ,
root_listing, root_mount, mnt_ns, ...) plus "env" (the image's Env keys, as the app sees them),
"root_files" (same as root_listing) and "flask" (its version).
"""
import os
import shutil
import subprocess
import tempfile

import pytest

import udlib
from plugin_support import _build, _write

MMDEBSTRAP = "/usr/bin/mmdebstrap"
BASE_TAG = "ud-test/debian-flask:bookworm-1"
SUITE = "bookworm"
PACKAGES = "python3,python3-flask"
BASE_TIMEOUT = 900

FLASK_APP = r'''
import json
import os
import sys

import flask

ENV_KEYS = %(env_keys)r


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        return "ERR:" + type(e).__name__


def _root_mount():
    try:
        last = ""
        with open("/proc/self/mountinfo") as f:
            for line in f:
                pre, post = line.split(" - ", 1)
                if pre.split(" ")[4] == "/":
                    last = line
        return last.strip()
    except Exception as e:
        return "ERR:" + repr(e)


def _mounts():
    out = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                pre, post = line.split(" - ", 1)
                out.append([pre.split(" ")[4], post.split(" ")[0], pre.split(" ")[5]])
    except Exception as e:
        out.append(["ERR", repr(e), ""])
    return out


application = flask.Flask(__name__)


@application.route("/")
def index():
    q = flask.request.args
    root = sorted(os.listdir("/"))
    info = {
        "version": _read("/srv/version").strip(),
        "env": {k: os.environ.get(k) for k in ENV_KEYS},
        "pid": os.getpid(),
        "root_files": root,
        "root_listing": root,
        "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "egid": os.getegid(),
        "cwd": os.getcwd(),
        "environ": dict(os.environ),
        "root_mount": _root_mount(),
        "mnt_ns": os.readlink("/proc/self/ns/mnt"),
        "python": sys.version,
        "flask": getattr(flask, "__version__", "?"),
        "hostname": os.uname().nodename,
        "mounts": _mounts(),
    }
    if "read" in q:
        info["read"] = _read(q["read"])
    if "marker" in q:
        info["marker_exists"] = os.path.lexists(q["marker"])
    body = json.dumps(info)
    return flask.Response(body, status=200, mimetype="application/json")


@application.route("/light")
def light():
    """What a load test needs, and no more: which image and which worker answered."""
    body = json.dumps({"version": _read("/srv/version").strip(), "pid": os.getpid(),
                       "mnt_ns": os.readlink("/proc/self/ns/mnt")})
    return flask.Response(body, status=200, mimetype="application/json")
'''

SYNTAX_ERROR = "\ndef broken(:\n    pass\n"


def _apt_mirror():
    """The first Debian (non-security) URI of the machine's apt sources, or None."""
    texts = []
    for d, names in (("/etc/apt", ["sources.list"]),
                     ("/etc/apt/sources.list.d", sorted(os.listdir("/etc/apt/sources.list.d"))
                      if os.path.isdir("/etc/apt/sources.list.d") else [])):
        for n in names:
            try:
                with open(os.path.join(d, n)) as f:
                    texts.append(f.read())
            except OSError:
                pass
    for text in texts:
        for line in text.splitlines():
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            urls = []
            if words[0] == "URIs:":  # deb822
                urls = words[1:]
            elif words[0] == "deb":  # one-line: deb [opts] URL suite comp...
                urls = [w for w in words[1:] if "://" in w][:1]
            for u in urls:
                if "security" not in u:
                    return u
    return None


def image_exists(tag):
    return udlib.docker("image", "inspect", "--format", "{{.Id}}", tag, check=False,
                        timeout=60).returncode == 0


def debian_flask_base(session_dir):
    """The tag of the cached Debian 12 + python3 + python3-flask image, built (mmdebstrap, then
    docker import) if the daemon does not have it yet. Kept after the session on purpose."""
    if image_exists(BASE_TAG):
        return BASE_TAG
    if not os.access(MMDEBSTRAP, os.X_OK):
        pytest.fail(f"{MMDEBSTRAP} missing (scripts/deps.sh installs mmdebstrap)")
    tmp = tempfile.mkdtemp(prefix="debian-base-", dir=session_dir)
    try:
        tar = os.path.join(tmp, "root.tar")
        cmd = [MMDEBSTRAP, "--quiet", "--variant=minbase", f"--include={PACKAGES}", SUITE, tar]
        mirror = _apt_mirror()
        if mirror:
            cmd.append(mirror)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=BASE_TIMEOUT,
                           stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            pytest.fail(f"mmdebstrap failed ({p.returncode}):\n{p.stdout[-3000:]}\n"
                        f"{p.stderr[-3000:]}")
        p = udlib.docker("import", "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:"
                         "/usr/sbin:/usr/bin:/sbin:/bin", tar, BASE_TAG, check=False)
        if p.returncode != 0:
            pytest.fail(f"docker import of {BASE_TAG} failed: {p.stderr}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return BASE_TAG


def flask_app_image(base_tag, tag, version, env, broken=None, session_dir=None):
    """Builds `tag` FROM base_tag with the Flask app at /srv/app.py, /srv/version = version and
    the Env `env` (dict). broken: None, "syntax" (app.py does not compile) or "noruntime" (no
    /usr/lib/python3.11 in the image: Python cannot start, flask cannot be imported).
    Returns tag; the caller removes it."""
    if broken not in (None, "syntax", "noruntime"):
        raise ValueError(f"broken={broken!r}")
    ctx = tempfile.mkdtemp(prefix="flask-app-", dir=session_dir or "/tmp")
    try:
        app = FLASK_APP % {"env_keys": sorted(env)}
        if broken == "syntax":
            app += SYNTAX_ERROR
        _write(os.path.join(ctx, "app.py"), app)
        _write(os.path.join(ctx, "version"), f"{version}\n")
        lines = [f"FROM {base_tag}",
                 "COPY app.py /srv/app.py",
                 "COPY version /srv/version",
                 "RUN chmod 0755 /srv && chmod 0644 /srv/app.py /srv/version"]
        if broken == "noruntime":
            lines.append("RUN rm -rf /usr/lib/python3.11")
        if env:
            lines.append("ENV " + " ".join(f'{k}="{v}"' for k, v in env.items()))
        lines.append("WORKDIR /srv")
        _write(os.path.join(ctx, "Dockerfile"), "\n".join(lines) + "\n")
        _build(tag, ctx, os.path.join(ctx, "Dockerfile"))
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    return tag
