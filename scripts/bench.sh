#!/bin/bash
# make bench: how long it takes to get a process running with an image as its root, medians side by
# side. Not a test: it exits 0 whatever the figures, non-zero only if a run itself failed.
#   usage: scripts/bench.sh HELPER      (as root, dockerd running; BENCH_N runs each, default 30)
#
#   helper         HELPER IMAGE -- /bin/true
#   helper legacy  HELPER --mount-api legacy IMAGE -- /bin/true
#   docker run     docker run --rm --network none IMAGE /bin/true
#   shell script   the helper's steps with standard tools: docker image inspect (CLI), then
#                  unshare -m, overlay, /proc, /dev, /sys, pivot_root, detach, exec /bin/true
# Targets (issue 2): helper <= 1/20 of docker run, <= 1/3 of the shell script.
set -euo pipefail

HELPER=${1:?usage: bench.sh HELPER}
N=${BENCH_N:-30}
WARMUP=3
IMAGE=uwsgi-docker-bench:latest
DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER=$(command -v docker)
PY=/usr/bin/python3

die() {
	printf 'bench: %s\n' "$*" >&2
	exit 1
}
[ "$(id -u)" -eq 0 ] || die "run as root (make bench)"
[ -x "$HELPER" ] || die "$HELPER is not built (make)"
[ -x "$DOCKER" ] || die "docker not found (make deps)"
[[ "$N" =~ ^[1-9][0-9]*$ ]] || die "BENCH_N must be a positive integer"

tmp=$(mktemp -d /tmp/uwsgi-docker-bench.XXXXXX)
trap 'rmdir "$tmp/root" 2>/dev/null; rm -rf "$tmp"' EXIT

# --- the image (kept between runs) -------------------------------------------------------------
if ! "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1; then
	echo "bench: building $IMAGE offline"
	mkdir -p "$tmp/context"
	cp /bin/busybox "$tmp/context/busybox"
	cat >"$tmp/context/Dockerfile" <<'EOF'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin
WORKDIR /
EOF
	DOCKER_BUILDKIT=0 "$DOCKER" build --network none -q -t "$IMAGE" "$tmp/context" >/dev/null ||
		die "docker build of $IMAGE failed"
	rm -rf "$tmp/context"
fi

# --- the same steps as a shell script ----------------------------------------------------------
# The overlay's upper/work live on a tmpfs mounted, inside the new mount namespace, on $tmp/root:
# on the host that directory stays empty and is removed at the end.
mkdir "$tmp/root"
script=$tmp/rootfs.sh
cat >"$script" <<'EOF'
#!/bin/sh
# usage: rootfs.sh DOCKER IMAGE DIR
set -e
docker=$1 image=$2 dir=$3
layers=$("$docker" image inspect --format \
	'{{.GraphDriver.Data.UpperDir}}{{with .GraphDriver.Data.LowerDir}}:{{.}}{{end}}' "$image")
exec unshare -m sh -ec '
layers=$1 r=$2
mount --make-rprivate /
mount -t tmpfs -o mode=700 rw "$r"
mkdir "$r/upper" "$r/work" "$r/new"
mount -t overlay -o "lowerdir=$layers,upperdir=$r/upper,workdir=$r/work" overlay "$r/new"
cd "$r/new"
mkdir -p proc dev sys .oldroot
mount -t proc -o nosuid,nodev,noexec proc proc
mount -t tmpfs -o mode=755,nosuid dev dev
mknod -m 666 dev/null c 1 3; mknod -m 666 dev/zero c 1 5; mknod -m 666 dev/full c 1 7
mknod -m 666 dev/random c 1 8; mknod -m 666 dev/urandom c 1 9; mknod -m 666 dev/tty c 5 0
ln -s /proc/self/fd dev/fd; ln -s /proc/self/fd/0 dev/stdin
ln -s /proc/self/fd/1 dev/stdout; ln -s /proc/self/fd/2 dev/stderr
mkdir dev/pts dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts dev/pts; ln -s pts/ptmx dev/ptmx
mount -t tmpfs -o mode=1777,nosuid,nodev shm dev/shm
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs sys
pivot_root . .oldroot
cd /
PATH=/bin:/usr/bin
umount -l /.oldroot
exec /bin/true
' rootfs "$layers" "$dir"
EOF

# --- timing --------------------------------------------------------------------------------------
uname_r=$(uname -r)
docker_v=$("$DOCKER" version --format '{{.Server.Version}}' 2>/dev/null || echo '?')

"$PY" - "$N" "$WARMUP" "$uname_r" "$docker_v" "$IMAGE" \
	"$HELPER" "$DOCKER" "$script" "$tmp/root" <<'EOF'
import statistics, subprocess, sys, time

n, warmup = int(sys.argv[1]), int(sys.argv[2])
kernel, docker_version, image, helper, docker, script, root = sys.argv[3:10]

variants = [
    ("helper", "uwsgi-docker-rootfs IMAGE -- /bin/true",
     [helper, image, "--", "/bin/true"]),
    ("helper-legacy", "same, --mount-api legacy",
     [helper, "--mount-api", "legacy", image, "--", "/bin/true"]),
    ("docker", "docker run --rm --network none IMAGE /bin/true",
     [docker, "run", "--rm", "--network", "none", image, "/bin/true"]),
    ("script", "shell script: docker inspect + unshare + mount + pivot_root",
     ["/bin/sh", script, docker, image, root]),
]

def run_once(argv):
    t0 = time.perf_counter()
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    dt = (time.perf_counter() - t0) * 1000.0
    if p.returncode != 0:
        err = p.stderr.decode(errors="replace").strip().splitlines()
        sys.exit("bench: run failed (status %d): %s\n  %s"
                 % (p.returncode, " ".join(argv), err[-1] if err else "(no message)"))
    return dt

load = open("/proc/loadavg").read().split()[0]
print("bench: %d runs each (round robin) after %d warm-ups; Linux %s, dockerd %s, %s; load %s"
      % (n, warmup, kernel, docker_version, image, load), flush=True)
# Round robin, so that a burst of load elsewhere on the machine hits every variant alike.
for key, label, argv in variants:
    for _ in range(warmup):
        run_once(argv)
times = {key: [] for key, _, _ in variants}
for i in range(n):
    for key, label, argv in variants:
        times[key].append(run_once(argv))
    if sys.stdout.isatty():
        print("\rbench: round %d/%d" % (i + 1, n), end="", flush=True)
if sys.stdout.isatty():
    print()
medians = {k: statistics.median(v) for k, v in times.items()}
spread = {k: (min(v), max(v)) for k, v in times.items()}

def ms(key):
    return "%.1f" % medians[key]

print()
print("| what | median ms | min–max ms |")
print("| --- | ---: | ---: |")
for key, label, _ in variants:
    lo, hi = spread[key]
    print("| %s | %s | %.1f–%.1f |" % (label, ms(key), lo, hi))
print()
print("| ratio | value | target | |")
print("| --- | ---: | ---: | --- |")
for base, target in (("docker", 20), ("script", 3)):
    for key in ("helper", "helper-legacy"):
        r = medians[key] / medians[base]
        name = "%s / %s" % ("helper" if key == "helper" else "helper (legacy)", base)
        print("| %s | 1/%.1f | ≤ 1/%d | %s |"
              % (name, 1 / r, target, "PASS" if r <= 1 / target else "MISS"))
EOF
