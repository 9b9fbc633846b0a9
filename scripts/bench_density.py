#!/usr/bin/python3
"""make bench, density: an Emperor with many small vassals, form 1 against plain uWSGI.

  usage: scripts/bench_density.py HELPER      (as root, dockerd running; the plugin is next to HELPER)

A real uWSGI Emperor (emperor-use-clone = pid,uts,ipc) over a directory of BENCH_DENSITY_N vassal
ini files (default 100): master, 1 worker, http-socket on 127.0.0.1 (a port each), uid nobody.
The docker variant adds docker-image (form 1) and docker-helper; plain uWSGI runs the same ini
without them, the app file on the host. For BENCH_DENSITY_ROUNDS rounds (default 3), alternating,
after one warm-up run of each:
  time    from starting the Emperor until every vassal has answered GET / with 200
  memory  then the PSS (/proc/PID/smaps_rollup) of the Emperor's whole process tree: the Emperor,
          the vassals' masters, their workers, form 1's PID-namespace inits, anything else in it
Then SIGINT to the Emperor, a bounded wait, SIGKILL by pid of anything of the run left, and a
check that nothing is: no process of the run, the host's mount table as before.
Targets (issue 10): time docker/plain <= 1.2, memory docker/plain <= +5 %.

The image (busybox, the host's /usr/lib/python3.11, the app) is built offline once and kept by
its tag. Exits 0 whatever the figures, non-zero (one line on stderr) if a run itself failed.
"""
import collections
import hashlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

UWSGI = "/usr/bin/uwsgi"
DOCKER = "/usr/bin/docker"
BUSYBOX = "/bin/busybox"
PYLIB = "/usr/lib/python3.11"
IMAGE_REPO = "uwsgi-docker-bench-density"
INIT_COMM = "uwsgi-docker-in"  # "uwsgi-docker-init", as the kernel keeps it (15 bytes)
TIME_TARGET = 1.2
MEM_TARGET_PCT = 5.0
STOP_TIMEOUT = 60.0

APP = '''BODY = b"ok\\n"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def application(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]
'''
DOCKERFILE = '''FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY python3.11 /usr/lib/python3.11
COPY app.py /srv/app.py
WORKDIR /srv
'''


class RunFailed(Exception):
    pass


def posint(name, default):
    v = os.environ.get(name, str(default))
    if not v.isdigit() or int(v) < 1:
        raise RunFailed(f"{name} must be a positive integer")
    return int(v)


# ---------------------------------------------------------------- the image and the vassals

def image_tag():
    """Kept by tag between runs; the tag changes with what goes into the image."""
    h = hashlib.sha256((DOCKERFILE + APP).encode()).hexdigest()[:12]
    return f"{IMAGE_REPO}:{h}"


def build_image(tmp, tag):
    if subprocess.run([DOCKER, "image", "inspect", tag], capture_output=True).returncode == 0:
        return
    print(f"bench: building {tag} offline", flush=True)
    ctx = os.path.join(tmp, "context")
    os.mkdir(ctx)
    shutil.copy(BUSYBOX, os.path.join(ctx, "busybox"))

    def link_or_copy(s, d):  # hard links when the same filesystem: nothing written twice
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)
    shutil.copytree(PYLIB, os.path.join(ctx, "python3.11"), symlinks=True,
                    copy_function=link_or_copy)
    for name, text in (("app.py", APP), ("Dockerfile", DOCKERFILE)):
        with open(os.path.join(ctx, name), "w") as f:
            f.write(text)
    env = dict(os.environ, DOCKER_BUILDKIT="0")
    p = subprocess.run([DOCKER, "build", "-q", "--network", "none", "--rm", "--force-rm",
                        "-t", tag, ctx], capture_output=True, text=True, env=env, timeout=600)
    shutil.rmtree(ctx, ignore_errors=True)
    if p.returncode != 0:
        raise RunFailed(f"docker build of {tag} failed: {(p.stdout + p.stderr).strip()[-500:]}")


def free_ports(n):
    """n distinct ports free right now (all held open together, so none twice)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def write_vassals(vdir, ports, build_dir, helper, image, hostapp):
    """One ini per port; image None: plain uWSGI, the app on the host."""
    os.mkdir(vdir, 0o755)
    for i, port in enumerate(ports):
        opts = [("plugin-dir", build_dir),
                ("plugins", "python3,docker" if image else "python3"),
                ("master", "true"), ("processes", "1"),
                ("http-socket", f"127.0.0.1:{port}")]
        if image:
            opts += [("docker-image", image), ("docker-helper", helper)]
        opts += [("uid", "nobody"), ("gid", "nogroup"),
                 ("wsgi-file", "/srv/app.py" if image else os.path.join(hostapp, "app.py")),
                 ("disable-logging", "true")]
        with open(os.path.join(vdir, f"v{i:03d}.ini"), "w") as f:
            f.write("[uwsgi]\n" + "".join(f"{k} = {v}\n" for k, v in opts))


# ---------------------------------------------------------------- processes, memory, mounts

Proc = collections.namedtuple("Proc", "pid ppid sid comm start")


def proc_table():
    out = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        rest = stat.rsplit(")", 1)[1].split()
        if rest[0] in ("Z", "X"):
            continue
        out[int(p)] = Proc(int(p), int(rest[1]), int(rest[3]), comm, int(rest[19]))
    return out


def tree_of(root, table):
    """root's descendants (and root), plus anything left in its session (an orphan reparented
    to init still belongs to the run)."""
    kids = collections.defaultdict(list)
    for pr in table.values():
        kids[pr.ppid].append(pr.pid)
    seen, todo = set(), [root]
    while todo:
        p = todo.pop()
        if p in seen or p not in table:
            continue
        seen.add(p)
        todo.extend(kids[p])
    seen |= {pr.pid for pr in table.values() if pr.sid == root}
    return {p: table[p] for p in seen}


def role(pr, tree, root):
    if pr.pid == root:
        return "Emperor"
    if pr.comm == INIT_COMM:
        return "PID-namespace inits"
    if pr.ppid == root:
        return "vassal masters"
    parent = tree.get(pr.ppid)
    if parent and parent.ppid == root:
        return "workers"
    return "other"


def smaps_kb(pid):
    """(PSS, USS) in kB, or None if the process is gone."""
    vals = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("Pss", "Private_Clean", "Private_Dirty"):
                    vals[k] = int(v.split()[0])
    except (OSError, ValueError):
        return None
    return vals.get("Pss", 0), vals.get("Private_Clean", 0) + vals.get("Private_Dirty", 0)


def memory(root):
    """{role: [processes, PSS kB, USS kB]} over root's tree, and the tree."""
    tree = tree_of(root, proc_table())
    by_role = collections.defaultdict(lambda: [0, 0, 0])
    for pr in tree.values():
        kb = smaps_kb(pr.pid)
        if kb is None:
            continue
        r = by_role[role(pr, tree, root)]
        r[0] += 1
        r[1] += kb[0]
        r[2] += kb[1]
    return dict(by_role), tree


# dockerd's own mounts (containers, build steps of others on the shared daemon) and other
# sessions' pins under /tmp/udtest-*: not this run's to judge.
FOREIGN = ("/var/lib/docker/", "/run/docker/", "/var/run/docker/", "/var/lib/containers/",
           "/run/containers/", "/run/netns/", "/tmp/udtest-")


def host_mounts():
    c = collections.Counter()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, post = line.split(" - ", 1)
            point, fstype = pre.split()[4], post.split()[0]
            if not point.startswith(FOREIGN):
                c[(point, fstype)] += 1
    return c


# ---------------------------------------------------------------- one run

def answers_200(port, deadline):
    """Waits until port answers GET / with 200: True, or False once the connection failed in a
    way worth retrying (refused: not bound yet; reset: a vassal that restarted)."""
    try:
        with socket.create_connection(("127.0.0.1", port),
                                      timeout=max(0.1, deadline - time.monotonic())) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            data = b""
            while True:  # the request waits in the listen queue until the worker is up
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        return data.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200"))
    except OSError:
        return False


class Run:
    """One Emperor over one vassal directory."""

    def __init__(self, tmp, name, ports, vdir):
        self.dir = os.path.join(tmp, name)
        os.mkdir(self.dir, 0o755)
        self.ports, self.vdir = ports, vdir
        self.log_path = os.path.join(self.dir, "log")
        self.proc, self.seen, self.cpu = None, {}, None

    def start(self):
        self.mounts_before = host_mounts()
        self.log = open(self.log_path, "wb")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [UWSGI, "--emperor", self.vdir, "--emperor-use-clone", "pid,uts,ipc"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=self.dir)

    def fail(self, what):
        try:
            with open(self.log_path, errors="replace") as f:
                tail = [l for l in f.read().splitlines() if "[docker]" in l or "rror" in l][-10:]
        except OSError:
            tail = []
        raise RunFailed(what + "".join("\n  " + l for l in tail))

    def wait_all(self, timeout):
        """Seconds from start() until every port has answered with 200. One port at a time: the
        total is what counts, and one poller at a time costs the machine next to nothing."""
        deadline = self.t0 + timeout
        for port in self.ports:
            while not answers_200(port, deadline):
                if self.proc.poll() is not None:
                    self.fail(f"the Emperor exited with status {self.proc.returncode}")
                if time.monotonic() > deadline:
                    self.fail(f"port {port} did not answer within {timeout:.0f} s")
                time.sleep(0.002)
        return time.monotonic() - self.t0

    def measure(self):
        mem, tree = memory(self.proc.pid)
        self.seen.update(tree)
        return mem

    def stop(self):
        """SIGINT, a bounded wait, SIGKILL by pid of what is left; then nothing may be."""
        if self.proc.returncode is None:
            self.seen.update(tree_of(self.proc.pid, proc_table()))
            os.kill(self.proc.pid, signal.SIGINT)
            self.reap(STOP_TIMEOUT)
        left = self.leftovers()
        deadline = time.monotonic() + 5
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = self.leftovers()
        for pr in left:
            try:
                os.kill(pr.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.returncode is None:
            self.proc.kill()
            self.reap(10)
        self.log.close()
        if left:
            self.fail("processes of the run still alive %.0f s after SIGINT (killed): %s"
                      % (STOP_TIMEOUT, [(p.pid, p.comm) for p in left[:10]]))
        self.check_mounts()

    def reap(self, timeout):
        """Waits for the Emperor with wait4(): its rusage then holds the CPU time of the whole
        tree, every process of which was reaped by its parent."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status, ru = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                self.proc.returncode = os.waitstatus_to_exitcode(status)
                self.cpu = ru.ru_utime + ru.ru_stime
                return
            time.sleep(0.02)

    def leftovers(self):
        """Processes of this run: seen in its tree (same pid and start time), or in the
        Emperor's session (every vassal, worker and init stays in it)."""
        out = []
        for pr in proc_table().values():
            old = self.seen.get(pr.pid)
            if (old and old.start == pr.start) or pr.sid == self.proc.pid:
                out.append(pr)
        return out

    def check_mounts(self):
        deadline = time.monotonic() + 2
        while True:
            after = host_mounts()
            if after == self.mounts_before:
                return
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        appeared = sorted((after - self.mounts_before).elements())
        vanished = sorted((self.mounts_before - after).elements())
        raise RunFailed(f"host mount table changed: appeared {appeared}, vanished {vanished}")


# ---------------------------------------------------------------- report

def mib(kb):
    return "%.1f" % (kb / 1024)


def report(n, rounds, times, mems, cpus):
    med = {k: statistics.median(v) for k, v in times.items()}
    pss = {k: [sum(r[1] for r in m.values()) for m in mems[k]] for k in mems}
    mpss = {k: statistics.median(v) for k, v in pss.items()}
    labels = (("docker", "docker-image (form 1)"), ("plain", "plain uWSGI"))
    print()
    print(f"| density ({n} vassals, 1 worker each, {rounds} rounds) | median | min–max |")
    print("| --- | ---: | ---: |")
    for k, label in labels:
        print("| start → all %d answered, %s | %.0f ms | %.0f–%.0f ms |"
              % (n, label, med[k] * 1000, min(times[k]) * 1000, max(times[k]) * 1000))
    for k, label in labels:
        print("| PSS of the process tree, %s | %s MiB | %s–%s MiB |"
              % (label, mib(mpss[k]), mib(min(pss[k])), mib(max(pss[k]))))
    # Less noisy than wall time on a shared machine; the daemon's own CPU is not in it.
    for k, label in labels:
        print("| CPU time of the tree, start to stop (user + sys), %s | %.2f s | %.2f–%.2f s |"
              % (label, statistics.median(cpus[k]), min(cpus[k]), max(cpus[k])))
    print()
    print("| PSS by process, median | docker-image: processes | MiB | USS MiB "
          "| plain: processes | MiB | USS MiB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    roles = ("Emperor", "vassal masters", "workers", "PID-namespace inits", "other")
    for r in roles:
        cells = []
        for k, _ in labels:
            rows = [m.get(r, [0, 0, 0]) for m in mems[k]]
            cells += ["%d" % statistics.median(x[0] for x in rows),
                      mib(statistics.median(x[1] for x in rows)),
                      mib(statistics.median(x[2] for x in rows))]
        if any(c not in ("0", "0.0") for c in cells):
            print("| %s | %s |" % (r, " | ".join(cells)))
    tr = med["docker"] / med["plain"]
    mp = (mpss["docker"] / mpss["plain"] - 1) * 100
    print()
    print("| density | value | target | |")
    print("| --- | ---: | ---: | --- |")
    print("| start → all answered, docker-image / plain | %.2f | ≤ %.1f | %s |"
          % (tr, TIME_TARGET, "PASS" if tr <= TIME_TARGET else "MISS"))
    print("| PSS, docker-image vs plain | %+.1f %% | ≤ +%.0f %% | %s |"
          % (mp, MEM_TARGET_PCT, "PASS" if mp <= MEM_TARGET_PCT else "MISS"))
    print("| CPU time of the tree, docker-image / plain | %.2f | | |"
          % (statistics.median(cpus["docker"]) / statistics.median(cpus["plain"])))


# ---------------------------------------------------------------- main

def check_setup(helper):
    if os.getuid() != 0:
        raise RunFailed("run as root (make bench)")
    for path, what in ((helper, "is not built (make)"),
                       (os.path.join(os.path.dirname(helper), "docker_plugin.so"),
                        "is not built (make)"),
                       (UWSGI, "not found (package uwsgi-core)"),
                       (PYLIB, "not found (package uwsgi-plugin-python3)"),
                       (BUSYBOX, "not found (package busybox-static)"),
                       (DOCKER, "not found (make deps)")):
        if not os.path.exists(path):
            raise RunFailed(f"{path} {what}")


def one_run(tmp, name, ports, vdir, timeout):
    r = Run(tmp, name, ports, vdir)
    r.start()
    try:
        t = r.wait_all(timeout)
        mem = r.measure()
    finally:
        r.stop()
    return t, mem, r.cpu


def main():
    if len(sys.argv) != 2:
        raise RunFailed("usage: bench_density.py HELPER")
    helper = os.path.abspath(sys.argv[1])
    build_dir = os.path.dirname(helper)
    n = posint("BENCH_DENSITY_N", 100)
    rounds = posint("BENCH_DENSITY_ROUNDS", 3)
    check_setup(helper)
    tmp = tempfile.mkdtemp(prefix="uwsgi-docker-bench-density.")
    os.chmod(tmp, 0o711)  # the app file is read by uid nobody
    try:
        tag = image_tag()
        build_image(tmp, tag)
        hostapp = os.path.join(tmp, "hostapp")
        os.mkdir(hostapp, 0o755)
        with open(os.path.join(hostapp, "app.py"), "w") as f:
            f.write(APP)
        os.chmod(os.path.join(hostapp, "app.py"), 0o644)
        ports = free_ports(n)
        vdirs = {"plain": os.path.join(tmp, "vassals-plain"),
                 "docker": os.path.join(tmp, "vassals-docker")}
        write_vassals(vdirs["plain"], ports, build_dir, helper, None, hostapp)
        write_vassals(vdirs["docker"], ports, build_dir, helper, tag, hostapp)
        load = open("/proc/loadavg").read().split()[0]
        print("\nbench: density: an Emperor (emperor-use-clone = pid,uts,ipc) with %d vassals, "
              "1 worker each, docker-image = %s vs plain uWSGI; %d rounds alternating after a "
              "warm-up; load %s" % (n, tag, rounds, load), flush=True)
        timeout = 60 + 1.0 * n
        times, mems, cpus = ({"plain": [], "docker": []} for _ in range(3))
        for i in range(rounds + 1):
            for k in ("plain", "docker"):
                t, mem, cpu = one_run(tmp, f"{k}-{i}", ports, vdirs[k], timeout)
                if i:
                    times[k].append(t)
                    mems[k].append(mem)
                    cpus[k].append(cpu)
        report(n, rounds, times, mems, cpus)
        print("\nbench: density: load %s at the end"
              % open("/proc/loadavg").read().split()[0])
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", tmp], capture_output=True, timeout=120)


if __name__ == "__main__":
    try:
        main()
    except RunFailed as e:
        sys.exit(f"bench: run failed: {e}")
