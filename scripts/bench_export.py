#!/usr/bin/python3
"""make bench, export speed (issue 10): the first start of an image on storage without usable
layer directories (Docker 29's containerd store) goes through GET /images/{id}/get; the
daemon's stream is the floor.

  usage: scripts/bench_export.py HELPER [OTHER_HELPER...]   (as root, dockerd running;
         other helpers, e.g. an older build, are timed in the same rounds for comparison)

A ~250 MB image (busybox; 12,000 small files; 100 medium ones; two of 32 MB; random content, so
that nothing compresses; 5 layers), built offline once and kept by its tag. A warm-up round,
then BENCH_EXPORT_N rounds (default 7), the order within a round turned round every round:
  docker save     docker save IMAGE >/dev/null
  cold export     HELPER --layers export --cache-dir DIR IMAGE -- /bin/true, a new DIR each run
Target (issue 10): median cold export <= 1.2 x median docker save. Exits 0 whatever the figures,
non-zero (one line on stderr) only if a run itself failed. Removes its temporary directory (the
caches in it) at the end.
"""
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, SCRIPTS)
from benchlib import run_once  # noqa: E402

DOCKER = "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else shutil.which("docker")
IMAGE = "uwsgi-docker-bench-export250:v1"
TARGET = 1.2
SMALL_FILES, SMALL_DIRS = 12000, 200
MEDIUM_FILES = 100
BIG_FILES, BIG_SIZE = 2, 32 << 20
DOCKERFILE = """FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY small /usr/share/small
COPY medium /opt/medium
COPY big /srv/big
"""


def die(msg):
    sys.exit(f"bench: {msg}")


def write_random(path, size):
    with open(path, "wb") as f:
        f.write(os.urandom(size))


def build_context(ctx):
    """Sizes from a fixed seed (the same shape every build), content from /dev/urandom."""
    rng = random.Random(10)
    shutil.copy("/bin/busybox", os.path.join(ctx, "busybox"))
    for i in range(SMALL_FILES):
        d = os.path.join(ctx, "small", "d%03d" % (i % SMALL_DIRS))
        os.makedirs(d, exist_ok=True)
        # Log-uniform from 100 B to 32 KiB: most files small, as in a Python or Node tree.
        write_random(os.path.join(d, "f%05d" % i), int(100 * 2 ** rng.uniform(0, 8.4)))
    os.makedirs(os.path.join(ctx, "medium"))
    for i in range(MEDIUM_FILES):
        write_random(os.path.join(ctx, "medium", "m%03d" % i), rng.randint(64 << 10, 2 << 20))
    os.makedirs(os.path.join(ctx, "big"))
    for i in range(BIG_FILES):
        write_random(os.path.join(ctx, "big", "b%d" % i), BIG_SIZE)
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write(DOCKERFILE)


def ensure_image(tmp):
    if subprocess.run([DOCKER, "image", "inspect", IMAGE], capture_output=True).returncode == 0:
        return
    print(f"bench: building {IMAGE} offline (~250 MB)", flush=True)
    ctx = os.path.join(tmp, "context")
    os.mkdir(ctx)
    build_context(ctx)
    p = subprocess.run([DOCKER, "build", "--network", "none", "-q", "-t", IMAGE, ctx],
                       env=dict(os.environ, DOCKER_BUILDKIT="0"), capture_output=True, text=True)
    if p.returncode != 0:
        die(f"docker build of {IMAGE} failed: {p.stderr.strip()}")


def image_facts():
    """Size in MB and layer count, as the daemon reports them."""
    out = subprocess.run([DOCKER, "image", "inspect", "--format",
                          "{{.Size}} {{len .RootFS.Layers}}", IMAGE],
                         capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]) / 1e6, int(out[1])


def posint(name, default):
    v = os.environ.get(name, str(default))
    if not v.isdigit() or int(v) < 1:
        die(f"{name} must be a positive integer")
    return int(v)


def main():
    if len(sys.argv) < 2:
        die("usage: bench_export.py HELPER [OTHER_HELPER...]")
    helpers = sys.argv[1:]
    n = posint("BENCH_EXPORT_N", 7)
    # Under /var/tmp (root's, sticky) and mode 0700: the cache's trust walk accepts it.
    tmp = tempfile.mkdtemp(prefix="uwsgi-docker-bench-export.", dir="/var/tmp")
    variants = [("save", "docker save IMAGE >/dev/null")]
    variants += [(h, "export mode, first run (export + unpack into an empty cache)"
                  + ("" if i == 0 else ", " + h)) for i, h in enumerate(helpers)]
    times = {k: [] for k, _ in variants}
    try:
        ensure_image(tmp)
        mb, layers = image_facts()
        load = open("/proc/loadavg").read().split()[0]
        print(f"bench: export speed, {IMAGE} ({mb:.0f} MB, {layers} layers, "
              f"{SMALL_FILES + MEDIUM_FILES + BIG_FILES + 1} files), {n} rounds after a warm-up; "
              f"load {load}", flush=True)
        for i in range(n + 1):
            # Each cold run gets a cache of its own, and none is removed before the end: ext4
            # without a journal skips every inode freed in the last 60 s (360 s while its inode
            # table block is dirty) at each allocation, so unpacking 12,000 files just after
            # removing 12,000 took 3 s more here -- a cost of the bench, not of an export.
            # The order turns round every round, so that drift hits every variant alike.
            for j, (k, _) in enumerate(variants if i % 2 else variants[::-1]):
                cache = os.path.join(tmp, f"cache{i}.{j}")
                argv = ([DOCKER, "save", IMAGE] if k == "save" else
                        [k, "--layers", "export", "--cache-dir", cache, IMAGE, "--", "/bin/true"])
                dt = run_once(argv)
                if i:  # round 0 warms the daemon's and the page cache
                    times[k].append(dt)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    print()
    print("| what | median ms | min–max ms |")
    print("| --- | ---: | ---: |")
    for k, label in variants:
        print(f"| {label} | {med[k]:.0f} | {min(times[k]):.0f}–{max(times[k]):.0f} |")
    print()
    # Beside the ratio of the medians, the median of each round's own ratio: on a shared machine
    # a slow minute slows both runs of a round, and that ratio sees less of it.
    print("| ratio | value | median of the rounds' ratios | target | |")
    print("| --- | ---: | ---: | ---: | --- |")
    for k, _ in variants[1:]:
        r = med[k] / med["save"]
        paired = statistics.median(a / b for a, b in zip(times[k], times["save"]))
        name = "cold export / docker save" + ("" if k == helpers[0] else f" ({k})")
        print(f"| {name} | {r:.2f} | {paired:.2f} | ≤ {TARGET} | "
              f"{'PASS' if r <= TARGET else 'FAIL'} |")


if __name__ == "__main__":
    main()
