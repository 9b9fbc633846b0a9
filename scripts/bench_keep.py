"""make bench, kept layers (issue 10): what keeping the daemon's layer directories in the
snapshot store costs a start.

- seen before: `HELPER IMAGE -- /bin/true` (default, every layer already kept) against
  `HELPER --layers direct IMAGE -- /bin/true` (the daemon's directories as they are), round robin.
  Target: at most 1 ms more.
- first start of a new image id: the same on an image whose top layer has 10,000 files, that
  layer's snapshot removed before each default run. Target: at most 100 ms more per 10,000 files.

    usage: bench_keep.py HELPER      (root, dockerd running; builds its image once, kept by tag)
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import run_once  # noqa: E402

DOCKER = "/usr/bin/docker"
BUSYBOX = "/bin/busybox"
SMALL = "uwsgi-docker-bench-keep:small"
MANY = "uwsgi-docker-bench-keep:10k"
FILES = 10000
N = int(os.environ.get("BENCH_KEEP_N", "20"))


def docker(*args):
    return subprocess.run([DOCKER, *args], check=True, capture_output=True, text=True).stdout


def have(tag):
    return subprocess.run([DOCKER, "image", "inspect", tag], capture_output=True).returncode == 0


def build(tag, files):
    """FROM scratch: busybox, then (files > 0) one layer of `files` small files in 100 dirs."""
    ctx = tempfile.mkdtemp(prefix="uwsgi-docker-bench-keep.")
    try:
        os.makedirs(os.path.join(ctx, "root", "bin"))
        shutil.copy(BUSYBOX, os.path.join(ctx, "root", "bin", "busybox"))
        os.symlink("busybox", os.path.join(ctx, "root", "bin", "true"))
        steps = ["FROM scratch", "COPY root/ /"]
        if files:
            for i in range(files):
                d = os.path.join(ctx, "many", "d%02d" % (i % 100))
                os.makedirs(d, exist_ok=True)
                with open(os.path.join(d, "f%05d" % i), "w") as f:
                    f.write(str(i))
            steps.append("COPY many/ /many/")
        with open(os.path.join(ctx, "Dockerfile"), "w") as f:
            f.write("\n".join(steps) + "\n")
        env = dict(os.environ, DOCKER_BUILDKIT="0")
        subprocess.run([DOCKER, "build", "-q", "--network", "none", "-t", tag, ctx], check=True,
                       capture_output=True, env=env)
    finally:
        shutil.rmtree(ctx)


def top_layer(tag):
    info = json.loads(docker("image", "inspect", tag))[0]
    return info["RootFS"]["Layers"][-1].split(":", 1)[1], info["GraphDriver"]["Data"]["UpperDir"]


def median_pair(a, b, before_a=None):
    ta, tb = [], []
    for argv in (a, b):
        run_once(argv)
    for _ in range(N):
        if before_a:
            before_a()
        ta.append(run_once(a))
        tb.append(run_once(b))
    return ta, tb


def row(label, t):
    print("| %s | %.1f | %.1f–%.1f |" % (label, statistics.median(t), min(t), max(t)))


def main():
    helper = sys.argv[1]
    for tag, files in ((SMALL, 0), (MANY, FILES)):
        if not have(tag):
            build(tag, files)
    hexid, upper = top_layer(MANY)
    store = os.path.join(os.path.dirname(os.path.dirname(upper)), "uwsgi-docker")
    kept = os.path.join(store, "sha256", hexid)

    def forget():
        # The bench's own image, used by no namespace: its snapshot may go.
        shutil.rmtree(kept, ignore_errors=True)

    run = [helper, SMALL, "--", "/bin/true"]
    direct = [helper, "--layers", "direct", SMALL, "--", "/bin/true"]
    seen, seen_direct = median_pair(run, direct)
    run = [helper, MANY, "--", "/bin/true"]
    direct = [helper, "--layers", "direct", MANY, "--", "/bin/true"]
    first, first_direct = median_pair(run, direct, before_a=forget)
    print("bench: kept layers, %d runs each (alternating)" % N)
    print()
    print("| what | median ms | min–max ms |")
    print("| --- | ---: | ---: |")
    row("IMAGE -- /bin/true, layers kept (seen before)", seen)
    row("same, --layers direct", seen_direct)
    row("%d-file image, first start (its layer linked into the store)" % FILES, first)
    row("same, --layers direct", first_direct)
    d_seen = statistics.median(seen) - statistics.median(seen_direct)
    d_first = statistics.median(first) - statistics.median(first_direct)
    print()
    print("| target | value | target | |")
    print("| --- | ---: | ---: | --- |")
    print("| a start of an image seen before, kept − direct | %+.1f ms | ≤ 1 ms | %s |"
          % (d_seen, "PASS" if d_seen <= 1 else "MISS"))
    print("| first start, kept − direct, per 10,000 files | %+.1f ms | ≤ 100 ms | %s |"
          % (d_first * 10000 / FILES, "PASS" if d_first * 10000 / FILES <= 100 else "MISS"))


if __name__ == "__main__":
    main()
