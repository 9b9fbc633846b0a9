#!/usr/bin/python3
"""make bench, push to deploy (issue 13): a Flask app on a Debian 12 image, 4 workers, form 1 with
docker-follow = 2s on a tag of a real registry (Debian's docker-registry on 127.0.0.1, no auth).

  usage: scripts/bench_follow.py HELPER      (as root, dockerd running; the plugin next to HELPER)

BENCH_FOLLOW_N pushes (default 6), alternating v2 and v1 onto the tag, each after a random wait
(a push comes at any moment of the interval), under a continuous request loop: the time from
`docker push` returning to the first answer from the new image, against the
target interval + the pull (the helper's "pulled and prepared" time the plugin logs) + 1 s; failed
requests. The push is made from this host's daemon, whose tag is then removed again, so that the
instance sees what a push from elsewhere looks like (the daemon has no image of the new digest).
Removes its tags (the cached Debian base image is kept), its registry and every process it
started.
"""
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(SCRIPTS)
UWSGI = "/usr/bin/uwsgi"
DOCKER = "/usr/bin/docker"
REGISTRY = "/usr/bin/docker-registry"
INTERVAL_S = 2
WORKERS = 4


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def docker(*args):
    p = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        sys.exit(f"bench: docker {' '.join(args)} failed: {p.stderr.strip()}")
    return p.stdout


def start_registry(d):
    addr = f"127.0.0.1:{free_port()}"
    cfg = os.path.join(d, "registry.yml")
    with open(cfg, "w") as f:
        f.write("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                f"    rootdirectory: {d}/data\nhttp:\n  addr: {addr}\n")
    log = open(os.path.join(d, "registry.log"), "w")
    proc = subprocess.Popen([REGISTRY, "serve", cfg], stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://{addr}/v2/", timeout=1)
            return addr, proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("bench: docker-registry did not answer")


class Loop(threading.Thread):
    """GET / continuously (fresh connections): each answer's version, and failures."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.stop, self.answers, self.failures = port, False, [], 0
        self.kinds = {}

    def run(self):
        while not self.stop:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=10) as r:
                    v = json.loads(r.read())["version"]
                self.answers.append((time.monotonic(), v))
            except (OSError, ValueError, KeyError) as e:
                if not self.answers:  # still starting: nothing listens yet
                    time.sleep(0.05)
                    continue
                self.failures += 1
                k = type(e).__name__ + ":" + str(e)[:60]
                self.kinds[k] = self.kinds.get(k, 0) + 1
                time.sleep(0.01)

    def first(self, version, after):
        for t, v in list(self.answers):
            if t >= after and v == version:
                return t
        return None


def ini(d, helper, ref, port):
    opts = [("plugin-dir", os.path.dirname(helper)), ("plugins", "python3,docker"),
            ("master", "true"), ("processes", str(WORKERS)), ("http-socket", f"127.0.0.1:{port}"),
            ("docker-image", ref), ("docker-helper", helper), ("docker-follow", f"{INTERVAL_S}s"),
            ("uid", "nobody"), ("gid", "nogroup"), ("wsgi-file", "/srv/app.py"),
            ("disable-logging", "true"), ("logto", os.path.join(d, "uwsgi.log"))]
    path = os.path.join(d, "follow.ini")
    with open(path, "w") as f:
        f.write("[uwsgi]\n" + "".join(f"{k} = {v}\n" for k, v in opts))
    return path


def push(ref, image):
    """A push as from elsewhere: afterwards this daemon has no tag of it."""
    docker("tag", image, ref)
    docker("push", ref)
    t = time.monotonic()
    docker("rmi", ref)
    return t


def prepared_times(log):
    with open(log, errors="replace") as f:
        return [float(m.group(1)) for m in re.finditer(r"pulled and prepared in ([0-9.]+) s",
                                                       f.read())]


def wait(cond, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def rounds(n, loop, ref, images, log):
    out = []
    for i in range(n):
        version = ("v2", "v1")[i % 2]
        # A push comes at any moment of the interval, not right after the last rollout.
        time.sleep(random.uniform(0, INTERVAL_S))
        t0 = push(ref, images[version])
        if not wait(lambda: loop.first(version, t0), 120):
            with open(log, errors="replace") as f:
                tail = [l for l in f.read().splitlines() if "[docker]" in l][-8:]
            sys.exit(f"bench: the instance did not move to {version} within 120 s:\n  "
                     + "\n  ".join(tail))
        t1 = loop.first(version, t0)
        if not wait(lambda: len(prepared_times(log)) > i, 120):
            sys.exit("bench: no 'pulled and prepared' line in the log")
        out.append((t1 - t0, prepared_times(log)[i]))
        wait(lambda: open(log, errors="replace").read().count("is now") > i, 120)
    return out


def report(res, failures, answers):
    print("bench: push to deploy, docker-follow = %ds, Flask on Debian 12, %d workers, %d pushes"
          % (INTERVAL_S, WORKERS, len(res)))
    print()
    print("| push | push → first answer of the new image | pulled and prepared | target |")
    print("| ---: | ---: | ---: | ---: |")
    for i, (dt, prep) in enumerate(res, 1):
        print("| %d | %.2f s | %.2f s | ≤ %.2f s |" % (i, dt, prep, INTERVAL_S + prep + 1))
    worst = max(dt - (INTERVAL_S + prep + 1) for dt, prep in res)
    med = statistics.median(dt for dt, _ in res)
    med_margin = statistics.median(dt - (INTERVAL_S + prep + 1) for dt, prep in res)
    print()
    print("| target | value | target | |")
    print("| --- | ---: | ---: | --- |")
    print("| push → new answers, median | %.2f s | | |" % med)
    print("| median margin against interval + pull + 1 s | %+.2f s | ≤ 0 | %s |"
          % (med_margin, "PASS" if med_margin <= 0 else "MISS"))
    print("| worst margin against interval + pull + 1 s | %+.2f s | ≤ 0 | %s |"
          % (worst, "PASS" if worst <= 0 else "MISS"))
    print("| failed requests (%d answered) | %d | 0 | %s |"
          % (answers, failures, "PASS" if failures == 0 else "MISS"))


def main():
    helper = os.path.abspath(sys.argv[1])
    n = int(os.environ.get("BENCH_FOLLOW_N", "6"))
    sys.path.insert(0, os.path.join(REPO_ROOT, "tests", "integration"))
    os.environ["UD_HELPER"] = helper
    import debian_image
    tmp = tempfile.mkdtemp(prefix="uwsgi-docker-bench-follow.")
    os.chmod(tmp, 0o711)
    images = {"v1": "uwsgi-docker-bench-flask:follow-v1", "v2": "uwsgi-docker-bench-flask:follow-v2"}
    base = debian_image.debian_flask_base(tmp)
    for v, tag in images.items():
        debian_image.flask_app_image(base, tag, v, {}, session_dir=tmp)
    addr, reg = start_registry(tmp)
    ref = f"{addr}/bench/flask:live"
    port = free_port()
    u = None
    try:
        docker("tag", images["v1"], ref)
        docker("push", ref)
        u = subprocess.Popen([UWSGI, "--ini", ini(tmp, helper, ref, port)],
                             stdin=subprocess.DEVNULL, start_new_session=True)
        loop = Loop(port)
        loop.start()
        if not wait(lambda: loop.first("v1", 0), 120):
            sys.exit("bench: the instance did not answer")
        res = rounds(n, loop, ref, images, os.path.join(tmp, "uwsgi.log"))
        loop.stop = True
        loop.join(15)
        report(res, loop.failures, len(loop.answers))
        if loop.kinds:
            print("bench: failures by kind: %s" % loop.kinds)
    finally:
        if u:
            os.killpg(u.pid, signal.SIGINT)
            try:
                u.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(u.pid, signal.SIGKILL)
                u.wait(10)
        reg.terminate()
        reg.wait(10)
        # A pull or a push leaves repo@digest references behind, besides the tags.
        digests = subprocess.run([DOCKER, "images", "--digests", "--format",
                                  "{{.Repository}}@{{.Digest}}", ref.rsplit(":", 1)[0]],
                                 capture_output=True, text=True).stdout.split()
        for tag in (ref, *images.values(), *[d for d in digests if "@sha256:" in d]):
            subprocess.run([DOCKER, "rmi", tag], capture_output=True)
        if os.environ.get("BENCH_KEEP_TMP") != "1":
            subprocess.run(["rm", "-rf", tmp])
        else:
            print("bench: kept", tmp)


if __name__ == "__main__":
    main()
