#!/bin/bash
# make bench: how long it takes to get a process running with an image as its root, and what serving
# a uWSGI app from an image costs; medians side by side. Not a test: it exits 0 whatever the figures,
# non-zero only if a run itself failed. Traffic goes to 127.0.0.1 only; about 25 minutes in all.
#   usage: scripts/bench.sh HELPER      (as root, dockerd running; the plugin is next to HELPER)
#
# 1. The helper (BENCH_N runs each, default 30):
#   helper         HELPER IMAGE -- /bin/true
#   helper legacy  HELPER --mount-api legacy IMAGE -- /bin/true
#   docker run     docker run --rm --network none IMAGE /bin/true
#   shell script   the helper's steps with standard tools: docker image inspect (CLI), then
#                  unshare -m, overlay, /proc, /dev, /sys, pivot_root, detach, exec /bin/true
# Targets (issue 2): helper <= 1/20 of docker run, <= 1/3 of the shell script.
#
# 2. uWSGI with the docker plugin (a trivial WSGI app, 2 workers, http-socket on 127.0.0.1), form 1
#    (docker-image) against the same app and ini under plain uWSGI on the host:
#   start          uwsgi --ini until the first HTTP answer (BENCH_UWSGI_N runs each, default 12)
#   requests/s     wrk, one connection per request (HTTP/1.0), BENCH_RPS_SECONDS (default 5) per
#                  round, BENCH_RPS_ROUNDS rounds (default 3) alternating between the two
#   reload         under a continuous request loop, re-tag the image and touch-reload,
#                  BENCH_RELOADS times (default 3): the longest gap between answers, failed requests
#
# 3b. Kept layers (scripts/bench_keep.py): what keeping the daemon's layer directories costs a start.
# 3c. Push to deploy (scripts/bench_follow.py): a push to the followed tag until the new answers.
#
# 4. Rollouts (scripts/bench_rollout.py): a Flask app on a Debian 12 image, 4 workers, 4 clients;
#    the longest gap across a rollout vs full reloads, then a soak (BENCH_SOAK full reloads and
#    rollouts, default 30 each) against plain uWSGI. Targets (issue 9): rollout gap <= 50 ms and
#    <= 1/20 of plain uWSGI's full-reload gap; 0 failed requests.
set -euo pipefail

HELPER=${1:?usage: bench.sh HELPER}
SCRIPTS=$(cd "$(dirname "$0")" && pwd)
N=${BENCH_N:-30}
WARMUP=3
UWSGI_N=${BENCH_UWSGI_N:-12}
RPS_SECONDS=${BENCH_RPS_SECONDS:-5}
RPS_ROUNDS=${BENCH_RPS_ROUNDS:-3}
RELOADS=${BENCH_RELOADS:-3}
IMAGE=uwsgi-docker-bench:latest
APP_REPO=uwsgi-docker-bench-app
BUILD_DIR=$(cd "$(dirname "$HELPER")" && pwd)
PLUGIN=$BUILD_DIR/docker_plugin.so
UWSGI=/usr/bin/uwsgi
PYLIB=/usr/lib/python3.11
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
[ -f "$PLUGIN" ] || die "$PLUGIN is not built (make)"
[ -x "$UWSGI" ] || die "$UWSGI not found (package uwsgi-core)"
[ -d "$PYLIB" ] || die "$PYLIB not found (package uwsgi-plugin-python3)"
command -v wrk >/dev/null || die "wrk not found (make deps)"
for v in BENCH_N BENCH_UWSGI_N BENCH_RPS_SECONDS BENCH_RPS_ROUNDS BENCH_RELOADS; do
	[[ "${!v:-1}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer"
done

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

PYTHONPATH=$SCRIPTS "$PY" - "$N" "$WARMUP" "$uname_r" "$docker_v" "$IMAGE" \
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

from benchlib import run_once

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

# ==================================================================================================
# 2. uWSGI with the docker plugin
# ==================================================================================================
# The app images: the host's Python stdlib (what Debian's python3 plugin embeds) + a trivial app.
# :v2 differs from :v1 only in /srv/version (the build cache serves the rest); :latest is re-tagged
# between them by the reload bench. The same app file, with its version file, on the host for plain
# uWSGI (readable by uid nobody, as the app is loaded after the privileges drop).
echo
echo "bench: building $APP_REPO:v1 and :v2 offline"
ctx=$tmp/app-context
mkdir -p "$ctx"
cp -al "$PYLIB" "$ctx/python3.11" 2>/dev/null || cp -a "$PYLIB" "$ctx/python3.11"
cat >"$ctx/app.py" <<'EOF'
import os

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "version"), "rb") as f:
    BODY = f.read()
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def application(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]
EOF
cat >"$ctx/Dockerfile" <<'EOF'
FROM scratch
COPY python3.11 /usr/lib/python3.11
COPY app.py /srv/app.py
WORKDIR /srv
COPY version /srv/version
EOF
for v in v1 v2; do
	echo "$v" >"$ctx/version"
	DOCKER_BUILDKIT=0 "$DOCKER" build --network none -q -t "$APP_REPO:$v" "$ctx" >"$tmp/build.log" 2>&1 ||
		{ cat "$tmp/build.log" >&2; die "docker build of $APP_REPO:$v failed"; }
done
"$DOCKER" tag "$APP_REPO:v1" "$APP_REPO:latest"
hostapp=$tmp/hostapp
mkdir -m 0755 "$hostapp"
cp "$ctx/app.py" "$hostapp/app.py"
echo v1 >"$hostapp/version"
chmod 0644 "$hostapp/app.py" "$hostapp/version"
chmod 0711 "$tmp"
rm -rf "$ctx"

"$PY" - "$tmp" "$BUILD_DIR" "$HELPER" "$UWSGI" "$DOCKER" "$APP_REPO" "$hostapp" \
	"$UWSGI_N" "$RPS_SECONDS" "$RPS_ROUNDS" "$RELOADS" <<'EOF'
import http.client, os, re, signal, socket, statistics, subprocess, sys, threading, time, types

tmp, build_dir, helper, uwsgi, docker, repo, hostapp = sys.argv[1:8]
n, rps_seconds, rps_rounds, reloads = map(int, sys.argv[8:12])
READY_TIMEOUT, STOP_TIMEOUT = 30.0, 20.0


class RunFailed(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, timeout=10.0):
    """GET / on a fresh connection; the body, or an exception."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", "/")
        r = c.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError("HTTP %d" % r.status)
        return body
    finally:
        c.close()


def session_pids(sid):
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % p) as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(rest[3]) == sid and rest[0] != "Z":
            out.append(int(p))
    return out


class Uwsgi:
    """One uWSGI instance: form 1 (docker-image) or plain uWSGI on the host, same ini otherwise."""
    count = 0

    def __init__(self, image):
        Uwsgi.count += 1
        self.image = image
        self.port = free_port()
        self.dir = os.path.join(tmp, "uwsgi-%d" % Uwsgi.count)
        os.mkdir(self.dir)
        self.log_path = os.path.join(self.dir, "log")
        self.reload_path = os.path.join(self.dir, "reload")
        with open(self.reload_path, "w"):
            pass
        # uWSGI compares touch files' mtimes in whole seconds: start with one in the past.
        os.utime(self.reload_path, (time.time() - 60, time.time() - 60))
        opts = [("plugin-dir", build_dir),
                ("plugins", "python3,docker" if image else "python3"),
                ("master", "true"),
                ("processes", "2"),
                ("http-socket", "127.0.0.1:%d" % self.port)]
        if image:
            opts += [("docker-image", image), ("docker-helper", helper)]
        opts += [("uid", "nobody"),
                 ("gid", "nogroup"),
                 ("wsgi-file", "/srv/app.py" if image else os.path.join(hostapp, "app.py")),
                 ("touch-reload", self.reload_path),
                 ("pidfile", os.path.join(self.dir, "pid")),
                 ("disable-logging", "true")]
        self.ini = os.path.join(self.dir, "uwsgi.ini")
        with open(self.ini, "w") as f:
            f.write("[uwsgi]\n" + "".join("%s = %s\n" % o for o in opts))
        self.proc = None

    def start(self):
        self.log = open(self.log_path, "wb")
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen([uwsgi, "--ini", self.ini], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=self.dir)
        return self

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def fail(self, what):
        lines = []  # the log's last lines, repeats folded
        for l in self.log_text().splitlines():
            if lines and lines[-1][0] == l:
                lines[-1][1] += 1
            else:
                lines.append([l, 1])
        tail = "\n".join("  " + l + (" (%d times)" % k if k > 1 else "") for l, k in lines[-25:])
        raise RunFailed("%s (%s)\n%s" % (what, "docker-image" if self.image else "plain", tail))

    def first_answer(self):
        """Seconds from start() to the first HTTP answer (polled every millisecond)."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.fail("uWSGI exited with status %d before answering" % self.proc.returncode)
            try:
                get(self.port)
                return time.perf_counter() - self.t0
            except (OSError, http.client.HTTPException, RuntimeError):
                time.sleep(0.001)
        self.fail("no answer within %d s" % READY_TIMEOUT)

    def wait_apps_loaded(self):
        """With lazy-apps (form 1) each worker loads the app after fork; a SIGINT during Python's
        import becomes a KeyboardInterrupt there and delays the shutdown. Wait for every load."""
        if not self.image:
            return
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            log = self.log_text()
            if len(re.findall(r"spawned uWSGI worker", log)) <= \
                    len(re.findall(r"WSGI app 0 .* ready", log)):
                return
            time.sleep(0.02)
        self.fail("workers did not load the app within %d s" % READY_TIMEOUT)

    def wait_workers_idle(self):
        """A worker that gets SIGINT in its first milliseconds after fork, before it installs its
        own handler, ignores it (Python's handler, inherited from the master, only sets a flag),
        and the master then waits for it for good. Wait (bounded) until every worker sleeps in its
        event loop; with lazy-apps (form 1), also until every worker has loaded the app."""
        try:
            self.wait_apps_loaded()
        except RunFailed:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            states = []
            for p in os.listdir("/proc"):
                if not p.isdigit():
                    continue
                try:
                    with open("/proc/%s/stat" % p) as f:
                        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                    if ppid != self.proc.pid:
                        continue
                    with open("/proc/%s/wchan" % p) as f:
                        states.append(f.read())
                except (OSError, ValueError):
                    continue
            if len(states) >= 2 and all(w in ("do_epoll_wait", "ep_poll") for w in states):
                return
            time.sleep(0.005)

    def stop(self):
        """SIGINT to the master, bounded wait; SIGKILL (by pid) to whatever of it is left."""
        if self.proc is None:
            return
        ok = True
        if self.proc.poll() is None:
            self.wait_workers_idle()
            os.kill(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                ok = False
        deadline = time.monotonic() + 5
        while session_pids(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = session_pids(self.proc.pid)
        for p in left:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()
        proc, self.proc = self.proc, None
        if not ok or left:
            self.fail("did not stop within %d s of SIGINT" % STOP_TIMEOUT)
        if proc.returncode != 0:
            self.fail("exited with status %d after SIGINT" % proc.returncode)


instances = []


def new(image):
    u = Uwsgi(image)
    instances.append(u)
    return u


def tag(src, dst):
    subprocess.run([docker, "tag", src, dst], check=True)


LATEST = repo + ":latest"
fmt_ms = lambda s: "%.0f" % (s * 1000)
rows = []

try:
    load = open("/proc/loadavg").read().split()[0]
    print("\nbench: uWSGI %s, 2 workers, trivial app: docker-image = %s (form 1) vs plain uWSGI "
          "with the app on the host; load %s"
          % (subprocess.run([uwsgi, "--version"], capture_output=True, text=True).stdout.strip(),
             LATEST, load), flush=True)

    # (a) start -> first answer, round robin after one warm-up each
    print("bench: start → first answer, %d runs each" % n, flush=True)
    starts = {"image": [], "plain": []}
    for i in range(n + 1):
        for key, image in (("image", LATEST), ("plain", None)):
            u = new(image).start()
            dt = u.first_answer()
            u.stop()
            if i:
                starts[key].append(dt)
        if sys.stdout.isatty():
            print("\rbench: start round %d/%d" % (i, n), end="", flush=True)
    if sys.stdout.isatty():
        print()

    # (b) requests per second, alternating rounds on two running instances
    lua = os.path.join(tmp, "http10.lua")
    with open(lua, "w") as f:  # one connection per request, as uWSGI's http-socket closes it
        f.write('local req = "GET / HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\n\\r\\n"\n'
                'request = function() return req end\n')

    def wrk(port, seconds):
        p = subprocess.run(["wrk", "-t1", "-c4", "-d%ds" % seconds, "-s", lua,
                            "http://127.0.0.1:%d/" % port], capture_output=True, text=True)
        m = re.search(r"Requests/sec:\s+([\d.]+)", p.stdout)
        if p.returncode != 0 or not m:
            raise RunFailed("wrk failed: %s%s" % (p.stdout, p.stderr))
        errors = re.search(r"Socket errors: (.*)", p.stdout)
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", p.stdout)
        if errors or non2xx:
            raise RunFailed("wrk saw errors: %s" % p.stdout)
        return float(m.group(1))

    print("bench: requests/s, %d rounds of %d s each" % (rps_rounds, rps_seconds), flush=True)
    rps = {"image": [], "plain": []}
    running = {"image": new(LATEST).start(), "plain": new(None).start()}
    for key, u in running.items():
        u.first_answer()
        u.wait_apps_loaded()
        wrk(u.port, 1)  # warm-up
    for i in range(rps_rounds):
        for key, u in running.items():
            rps[key].append(wrk(u.port, rps_seconds))
    for u in running.values():
        u.stop()

    # (c) full reloads under a continuous request loop (2 client threads): form 1 onto a re-tagged
    # image; plain uWSGI, for comparison, onto a rewritten version file (the app reads it at load)
    def switch_to(image, version):
        if image:
            tag("%s:%s" % (repo, version), LATEST)
        else:
            with open(os.path.join(hostapp, "version"), "w") as f:
                f.write(version + "\n")

    def reload_run(image):
        switch_to(image, "v1")
        u = new(image).start()
        u.first_answer()
        u.wait_apps_loaded()
        answers, failures, lock, stop = [], [], threading.Lock(), threading.Event()

        def client():
            while not stop.is_set():
                t = time.monotonic()
                try:
                    body = get(u.port, timeout=15).strip().decode()
                    with lock:
                        answers.append((time.monotonic(), body))
                except Exception as e:  # every kind of failure counts
                    with lock:
                        failures.append((t, repr(e)))

        threads = [threading.Thread(target=client, daemon=True) for _ in range(2)]
        for t in threads:
            t.start()
        gaps, switches, version = [], [], "v1"
        try:
            time.sleep(1)
            for i in range(reloads):
                version = "v2" if version == "v1" else "v1"
                switch_to(image, version)
                t_touch = time.monotonic()
                os.utime(u.reload_path)
                deadline = t_touch + READY_TIMEOUT
                while True:
                    with lock:
                        fresh = [t for t, b in answers if t > t_touch and b == version]
                    if fresh:
                        break
                    if time.monotonic() > deadline or u.proc.poll() is not None:
                        u.fail("no answer from %s within %d s of touch-reload"
                               % (version, READY_TIMEOUT))
                    time.sleep(0.01)
                t_new = min(fresh)
                time.sleep(1)  # the new generation serves for a second
                with lock:
                    times = sorted(t for t, _ in answers if t_touch - 1 <= t <= t_new)
                gaps.append(max(b - a for a, b in zip(times, times[1:])))
                switches.append(t_new - t_touch)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
        u.stop()
        switch_to(image, "v1")
        return types.SimpleNamespace(gaps=gaps, switches=switches, answered=len(answers),
                                     failures=failures)

    print("bench: %d full reloads each under a request loop" % reloads, flush=True)
    reload = {"image": reload_run(LATEST), "plain": reload_run(None)}

    def med(v):
        return statistics.median(v)

    print()
    print("| uWSGI | median | min–max |")
    print("| --- | ---: | ---: |")
    for key, label in (("image", "docker-image"), ("plain", "plain uWSGI")):
        print("| start → first HTTP answer, %s | %s ms | %s–%s ms |"
              % (label, fmt_ms(med(starts[key])), fmt_ms(min(starts[key])),
                 fmt_ms(max(starts[key]))))
    for key, label in (("image", "docker-image"), ("plain", "plain uWSGI")):
        print("| requests/s, %s | %.0f | %.0f–%.0f |"
              % (label, med(rps[key]), min(rps[key]), max(rps[key])))
    for key, label in (("image", "docker-image, re-tagged image"), ("plain", "plain uWSGI")):
        g = reload[key].gaps
        print("| full reload, %s: longest gap between answers | %s ms | %s–%s ms |"
              % (label, fmt_ms(med(g)), fmt_ms(min(g)), fmt_ms(max(g))))
    for key, label in (("image", "docker-image"), ("plain", "plain uWSGI")):
        w = reload[key].switches
        print("| full reload, %s: touch → first answer of the new generation | %s ms | %s–%s ms |"
              % (label, fmt_ms(med(w)), fmt_ms(min(w)), fmt_ms(max(w))))
    print()
    print("| uWSGI ratio | value | target | |")
    print("| --- | ---: | ---: | --- |")
    r = med(rps["image"]) / med(rps["plain"])
    print("| requests/s, docker-image / plain | %.2f | ≥ 0.9 | %s |" % (r, "PASS" if r >= 0.9 else "MISS"))
    r = med(starts["image"]) / med(starts["plain"])
    print("| start → first answer, docker-image / plain | %.2f | | |" % r)
    d = (med(starts["image"]) - med(starts["plain"])) * 1000
    print("| start → first answer, docker-image − plain | %+.1f ms | ≤ 5 ms | %s |"
          % (d, "PASS" if d <= 5 else "MISS"))
    for key, label in (("image", "docker-image"), ("plain", "plain uWSGI")):
        r = reload[key]
        print("| failed requests across %d reloads, %s (%d answered) | %d | 0 | %s |"
              % (reloads, label, r.answered, len(r.failures), "PASS" if not r.failures else "MISS"))
        for t, e in r.failures[:5]:
            print("bench: failed request (%s): %s" % (label, e))
    print("\nbench: %d starts each (after one warm-up), %d × %d s of wrk -t1 -c4 each, %d reloads "
          "each" % (n, rps_rounds, rps_seconds, reloads))
except RunFailed as e:
    sys.exit("bench: run failed: %s" % e)
finally:
    for u in instances:
        try:
            if u.proc is not None:
                u.stop()
        except RunFailed:
            pass
EOF

# ==================================================================================================
# 3. Export mode: the layer cache (issue 4)
# ==================================================================================================
# A ~50 MB image (busybox + 48 MB of random data in its own layer), kept between runs. The first run
# exports and unpacks it into an empty cache (BENCH_EXPORT_COLD runs, default 3, each on a fresh
# cache); the warm run finds every layer cached. Beside them: the direct path (the daemon's own
# overlay2 dirs) and docker run, BENCH_N runs each, round robin. Target: warm ≤ 1.2 × direct.
EXPORT_IMAGE=uwsgi-docker-bench-export:latest
COLD=${BENCH_EXPORT_COLD:-3}
[[ "$COLD" =~ ^[1-9][0-9]*$ ]] || die "BENCH_EXPORT_COLD must be a positive integer"
if ! "$DOCKER" image inspect "$EXPORT_IMAGE" >/dev/null 2>&1; then
	echo "bench: building $EXPORT_IMAGE offline"
	ectx=$tmp/export-context
	mkdir -p "$ectx"
	cp /bin/busybox "$ectx/busybox"
	head -c $((48 * 1024 * 1024)) /dev/urandom >"$ectx/data"
	cat >"$ectx/Dockerfile" <<'EOF'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY data /data
EOF
	DOCKER_BUILDKIT=0 "$DOCKER" build --network none -q -t "$EXPORT_IMAGE" "$ectx" >/dev/null ||
		die "docker build of $EXPORT_IMAGE failed"
	rm -rf "$ectx"
fi
echo
PYTHONPATH=$SCRIPTS "$PY" - "$N" "$COLD" "$HELPER" "$DOCKER" "$EXPORT_IMAGE" "$tmp/cache" <<'EOF'
import shutil, statistics, subprocess, sys, time

n, cold_n = int(sys.argv[1]), int(sys.argv[2])
helper, docker, image, cache = sys.argv[3:7]

from benchlib import run_once

export = [helper, "--layers", "export", "--cache-dir", cache, image, "--", "/bin/true"]
cold = []
for _ in range(cold_n):
    shutil.rmtree(cache, ignore_errors=True)
    cold.append(run_once(export))
variants = [
    ("warm", "export mode, warm (every layer cached)", export),
    ("direct", "direct mode (the daemon's overlay2 dirs)",
     [helper, "--layers", "direct", image, "--", "/bin/true"]),
    ("docker", "docker run --rm --network none IMAGE /bin/true",
     [docker, "run", "--rm", "--network", "none", image, "/bin/true"]),
]
for _, _, argv in variants:
    run_once(argv)
times = {k: [] for k, _, _ in variants}
for _ in range(n):
    for k, _, argv in variants:
        times[k].append(run_once(argv))
shutil.rmtree(cache, ignore_errors=True)
med = {k: statistics.median(v) for k, v in times.items()}
print("bench: export mode on %s (~50 MB), %d cold runs, %d runs each otherwise" % (image, cold_n, n))
print()
print("| what | median ms | min–max ms |")
print("| --- | ---: | ---: |")
print("| export mode, first run (export + unpack into an empty cache) | %.1f | %.1f–%.1f |"
      % (statistics.median(cold), min(cold), max(cold)))
for k, label, _ in variants:
    print("| %s | %.1f | %.1f–%.1f |" % (label, med[k], min(times[k]), max(times[k])))
print()
r = med["warm"] / med["direct"]
print("| ratio | value | target | |")
print("| --- | ---: | ---: | --- |")
print("| export warm / direct | %.2f | ≤ 1.2 | %s |" % (r, "PASS" if r <= 1.2 else "MISS"))
EOF

# Export speed (issue 10): a ~250 MB image's cold export vs docker save (scripts/bench_export.py).
"$PY" "$SCRIPTS/bench_export.py" "$HELPER"

# ==================================================================================================
# Kept layers (scripts/bench_keep.py): a start of an image seen before, kept vs --layers direct
# (target: at most 1 ms more); the first start of a 10,000-file image (at most 100 ms more).
# ==================================================================================================
echo
"$PY" "$SCRIPTS/bench_keep.py" "$HELPER"

# ==================================================================================================
# Push to deploy (scripts/bench_follow.py): docker-follow = 2s, the Flask app, 4 workers; from
# docker push returning to the first answer of the new image (target: interval + pull + 1 s).
# ==================================================================================================
echo
"$PY" "$SCRIPTS/bench_follow.py" "$HELPER"

# ==================================================================================================
# 4. Rollouts: a Flask app on a Debian 12 image, 4 workers, 4 clients (scripts/bench_rollout.py)
# ==================================================================================================
# Longest gap across a rollout vs full reloads (form 1, plain uWSGI), then a soak of BENCH_SOAK full
# reloads + BENCH_SOAK rollouts (default 30 each) against the same on plain uWSGI.
"$PY" "$SCRIPTS/bench_rollout.py" "$HELPER"
"$PY" "$SCRIPTS/bench_density.py" "$HELPER"
