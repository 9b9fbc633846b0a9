#!/usr/bin/python3
"""Load + reload soak for a uWSGI instance: does any request fail across full and chain reloads?

Starts `/usr/bin/uwsgi --ini INI` (its own session), waits until it answers on the http-socket
port, then runs K client threads, each doing GET / sequentially over a NEW TCP connection every
time (http.client, like tests/integration/plugin_support.RequestLoop). Meanwhile it performs N full
reloads (touch-reload file; done when the log shows the last worker spawned again and an answer
comes from a pid not seen before the touch) and M chain reloads (touch-chain-reload file; done at
"chain reloading complete"), pausing S seconds between them.

Every failed request is recorded with its exception class, message and the stage it failed in
(connect / send / response). Every uWSGI log line is time-stamped on arrival (the output is piped
through this script, or the ini's `logto` file is tailed), so each failure can be set against the
nearest preceding "Gracefully killing worker" line. The kernel's TcpExtTCPAbortOnClose counter
(RSTs sent because a socket was closed with unread data, e.g. a process exiting with an accepted,
unread connection) is read before and after.

Output: one JSON object on stdout. The uWSGI log (time-stamped, seconds since start) goes to --log.

  --retag SRC1,SRC2,DST
                     tags SRC1 onto DST before uWSGI starts, then before each reload the other one
                     (SRC2, SRC1, SRC2, ...), so every full reload and every rollout moves to a
                     different image (an instance with docker-image = DST, form 1). A full reload is
                     then done only once an answer comes with a version other than the one before.
  --chain-done REGEX the log line that ends a chain reload; default: "rolled out image" (the docker
                     plugin's rollout) if the ini has docker-image, else "chain reloading complete".
                     In form 1 a "rollout of image ... stopped" line counts as a failed reload.

The JSON has, besides the totals, per_reload_longest_gap_s (a list per kind, in order: the longest
gap between two successive answers, any client, ending between the touch and the reload's end, or
shortly after it) and per_reload (kind, seconds, longest gap, failed requests, versions before and
after).

  --plain-demo DIR   writes a self-contained plain-uWSGI ini + trivial WSGI app into DIR (4 workers,
                     lazy-apps, master, http-socket on 127.0.0.1, Debian's python3 plugin) and soaks
                     that; the other options default from it.

Run with /usr/bin/python3 (any Python 3 works: only the standard library is used).
"""
import argparse
import bisect
import configparser
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

UWSGI = "/usr/bin/uwsgi"
READY_TIMEOUT = 30.0
RELOAD_TIMEOUT = 60.0
REQUEST_TIMEOUT = 10.0
PATH = ["/"]  # what the clients ask for (--path)
NEAR = 0.25  # a failure this soon after "Gracefully killing worker" counts as "right after"

PLAIN_APP = '''import os


def application(environ, start_response):
    body = ('{"version": "plain", "pid": %d}' % os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_plain_demo(d, port):
    os.makedirs(d, exist_ok=True)
    d = os.path.abspath(d)
    with open(os.path.join(d, "app.py"), "w") as f:
        f.write(PLAIN_APP)
    for n in ("reload.touch", "chain.touch"):
        open(os.path.join(d, n), "a").close()
    ini = os.path.join(d, "plain.ini")
    with open(ini, "w") as f:
        f.write("\n".join([
            "[uwsgi]",
            "plugins-dir = /usr/lib/uwsgi/plugins",
            "plugin = python3",
            "master = true",
            "workers = 4",
            "lazy-apps = true",
            f"http-socket = 127.0.0.1:{port}",
            f"chdir = {d}",
            f"wsgi-file = {d}/app.py",
            f"touch-reload = {d}/reload.touch",
            f"touch-chain-reload = {d}/chain.touch",
            "need-app = true",
            "die-on-term = true",
            "disable-logging = true",
            "",
        ]))
    return ini


def read_ini(path):
    cp = configparser.RawConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    try:
        cp.read(path)
        return dict(cp["uwsgi"]) if cp.has_section("uwsgi") else {}
    except configparser.Error:
        return {}


def abort_on_close():
    """TcpExtTCPAbortOnClose of this network namespace."""
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
        for i in range(0, len(lines) - 1, 2):
            names, values = lines[i].split(), lines[i + 1].split()
            if names[0] == "TcpExt:":
                return int(dict(zip(names[1:], values[1:]))["TCPAbortOnClose"])
    except (OSError, KeyError, ValueError):
        pass
    return None


class Log:
    """uWSGI's log lines with their arrival times (monotonic), from a pipe or a tailed file."""

    def __init__(self, out_path, t0):
        self.lines = []  # (monotonic, text)
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.t0 = t0
        self.out = open(out_path, "w") if out_path else None
        self.stop = threading.Event()

    def add(self, line):
        t = time.monotonic()
        line = line.rstrip("\n")
        with self.cond:
            self.lines.append((t, line))
            self.cond.notify_all()
        if self.out:
            self.out.write(f"{t - self.t0:10.4f} {line}\n")
            self.out.flush()

    def from_pipe(self, pipe):
        def run():
            for raw in iter(pipe.readline, b""):
                self.add(raw.decode("utf-8", "replace"))
        threading.Thread(target=run, daemon=True).start()

    def from_file(self, path):
        def run():
            while not os.path.exists(path) and not self.stop.is_set():
                time.sleep(0.01)
            with open(path, "rb") as f:
                f.seek(0, os.SEEK_END)
                buf = b""
                while not self.stop.is_set():
                    chunk = f.read()
                    if not chunk:
                        time.sleep(0.002)
                        continue
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        self.add(line.decode("utf-8", "replace"))
        threading.Thread(target=run, daemon=True).start()

    def mark(self):
        with self.lock:
            return len(self.lines)

    def wait_for(self, pattern, since, timeout):
        """The first line at index >= since matching pattern (a regex), or None at the timeout."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            i = since
            while True:
                while i < len(self.lines):
                    if rx.search(self.lines[i][1]):
                        return self.lines[i]
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(min(left, 0.5))

    def times_of(self, pattern):
        rx = re.compile(pattern)
        with self.lock:
            return [t for t, line in self.lines if rx.search(line)]


def get(port):
    """One GET / over a new connection: (pid, None) or (None, (stage, class, message))."""
    answer, err = get_answer(port)
    return (answer[0] if answer else None), err


def get_answer(port, path=None):
    """One GET / over a new connection: ((pid, version), None) or (None, (stage, class, msg));
    pid is "PID@MNT_NS" if the answer has an mnt_ns field."""
    stage = "connect"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    try:
        conn.connect()
        stage = "send"
        conn.request("GET", path or PATH[0])
        stage = "response"
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            return None, (stage, f"HTTP{r.status}", body[:200].decode("utf-8", "replace"))
        d = json.loads(body)
        # pid alone does not tell generations apart when workers live in a pid namespace (the
        # docker plugin's): with the app's mnt_ns (each generation has its own), it does.
        ident = f"{d.get('pid')}@{d['mnt_ns']}" if d.get("mnt_ns") else d.get("pid")
        return (ident, d.get("version")), None
    except Exception as e:  # every kind of failure counts
        return None, (stage, type(e).__name__, str(e)[:200])
    finally:
        conn.close()


class Clients:
    """K client processes (not threads: with threads in one interpreter, the GIL and this
    script's own log readers put gaps of their own between answers, ~100 ms seen). Each process
    stamps its requests with CLOCK_MONOTONIC, which all processes share, and sends them here."""

    def __init__(self, port, k):
        import multiprocessing
        self.port = port
        self.mp = multiprocessing.get_context("fork")
        self.stop = self.mp.Event()
        self.queue = self.mp.Queue()
        self.lock = threading.Lock()
        self.ok = []        # (monotonic end, pid, version)
        self.failures = []  # (monotonic start, monotonic end, client, stage, class, message)
        self.procs = [self.mp.Process(target=self.run, args=(i,), daemon=True) for i in range(k)]
        self.collector = threading.Thread(target=self.collect, daemon=True)

    def start(self):
        for p in self.procs:
            p.start()
        self.collector.start()

    def run(self, i):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        path = PATH[0]
        while not self.stop.is_set():
            t = time.monotonic()
            answer, err = get_answer(self.port, path)
            e = time.monotonic()
            self.queue.put(("fail", (t, e, i) + err) if err else ("ok", (e,) + answer))
            if err:
                time.sleep(0.005)  # no busy loop while nothing listens
        self.queue.put(("done", i))

    def collect(self):
        done = 0
        while done < len(self.procs):
            try:
                kind, item = self.queue.get(timeout=REQUEST_TIMEOUT + 10)
            except Exception:
                return
            with self.lock:
                if kind == "ok":
                    self.ok.append(item)
                elif kind == "fail":
                    self.failures.append(item)
                else:
                    done += 1

    def ok_since(self, t):
        with self.lock:
            return [a for a in self.ok if a[0] >= t]

    def pids_since(self, t):
        return {a[1] for a in self.ok_since(t)}

    def last_version(self):
        with self.lock:
            return self.ok[-1][2] if self.ok else None

    def finish(self):
        self.stop.set()
        self.collector.join(REQUEST_TIMEOUT + 15)
        for p in self.procs:
            p.join(5)
            if p.is_alive():
                p.kill()
        with self.lock:
            self.ok.sort()
            self.failures.sort()


def touch(path, counter):
    """A strictly newer mtime each time (uWSGI compares whole seconds)."""
    counter[0] += 1
    t = int(time.time()) + counter[0]
    os.utime(path, (t, t))


def docker_tag(src, dst):
    p = subprocess.run(["docker", "tag", src, dst], capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise SystemExit(f"soak: docker tag {src} {dst} failed: {p.stderr.strip()}")


def soak(args):
    t0 = time.monotonic()
    ini = read_ini(args.ini)
    retag = args.retag.split(",") if args.retag else None
    if retag and (len(retag) != 3 or not all(retag)):
        raise SystemExit("soak: --retag takes SRC1,SRC2,DST")
    chain_done = args.chain_done or (r"rolled out image" if ini.get("docker-image")
                                     else r"chain reloading complete")
    chain_stop = r"rollout of image .* stopped" if ini.get("docker-image") else None
    if retag:
        docker_tag(retag[0], retag[2])
    workers = int(ini.get("workers") or ini.get("processes") or 1)
    logto = ini.get("logto") or ini.get("daemonize")
    log = Log(args.log, t0)
    if logto:
        log.from_file(logto)
    proc = subprocess.Popen([UWSGI, "--ini", args.ini], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL if logto else subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    if not logto:
        log.from_pipe(proc.stdout)
    result = {"ini": os.path.abspath(args.ini), "port": args.port, "workers": workers,
              "clients": args.clients, "uwsgi_pid": proc.pid}
    clients = None
    windows = []  # (kind, start, end, ok)
    versions = []  # (version before the touch, versions answered after the end)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            pid, err = get(args.port)
            if pid is not None:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"soak: uWSGI did not answer on port {args.port}: {err}")
            time.sleep(0.1)
        time.sleep(0.5)
        aoc0 = abort_on_close()
        clients = Clients(args.port, args.clients)
        start = time.monotonic()
        clients.start()
        time.sleep(args.pause)
        counter = [0]
        plan = [("full", args.touch_reload)] * args.full + [("chain", args.touch_chain)] * args.chain
        if args.interleave:
            f = [p for p in plan if p[0] == "full"]
            c = [p for p in plan if p[0] == "chain"]
            plan = [x for pair in zip(f, c) for x in pair] + f[len(c):] + c[len(f):]
        for n, (kind, path) in enumerate(plan):
            if not path:
                raise SystemExit(f"soak: no touch file for a {kind} reload")
            if retag:
                docker_tag(retag[(n + 1) % 2], retag[2])
            before = clients.pids_since(time.monotonic() - 2.0)
            v_before = clients.last_version()
            mark = log.mark()
            ts = time.monotonic()
            touch(path, counter)
            if kind == "full":
                ok = log.wait_for(r"binary reloading uWSGI", mark, RELOAD_TIMEOUT) is not None
                m2 = log.mark()
                ok = ok and log.wait_for(rf"spawned uWSGI worker {workers} ", m2,
                                         RELOAD_TIMEOUT) is not None
                end = time.monotonic() + RELOAD_TIMEOUT
                while ok and time.monotonic() < end:
                    # With --retag the new generation answers with the other version (pids, and
                    # the mnt_ns inode numbers of a pid namespace's workers, can repeat).
                    if retag:
                        if any(a[2] != v_before for a in clients.ok_since(ts)):
                            break
                    elif clients.pids_since(ts) - before:
                        break
                    time.sleep(0.01)
                else:
                    ok = False
            else:
                pattern = chain_done + (f"|{chain_stop}" if chain_stop else "")
                line = log.wait_for(pattern, mark, RELOAD_TIMEOUT)
                ok = line is not None and re.search(chain_done, line[1]) is not None
            te = time.monotonic()
            windows.append((kind, ts, te, ok))
            versions.append([v_before, None])
            if not ok:
                print(f"soak: {kind} reload #{len(windows)} did not complete", file=sys.stderr)
                break
            time.sleep(args.pause)
            versions[-1][1] = sorted({str(a[2]) for a in clients.ok_since(te)})
        clients.finish()
        stop_t = time.monotonic()
        aoc1 = abort_on_close()
    finally:
        if clients:
            clients.stop.set()
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGINT)
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        log.stop.set()
    result.update(report(clients, windows, log, start, stop_t, args.pause))
    result.update(per_reload(clients, windows, versions, args.pause))
    result["tcp_abort_on_close_delta"] = (aoc1 - aoc0) if None not in (aoc0, aoc1) else None
    result["elapsed_s"] = round(stop_t - start, 2)
    return result


def phase_of(t, windows, pause):
    """full / chain while a reload runs (or within `pause` after it), else idle."""
    for kind, s, e, _ in windows:
        if s <= t <= e + min(pause, 1.0):
            return kind
    return "idle"


def report(clients, windows, log, start, stop, pause):
    ok = sorted(clients.ok, key=lambda a: a[0])
    fails = sorted(clients.failures)
    kills = sorted(log.times_of(r"Gracefully killing worker"))
    out = {
        "reloads_done": {"full": sum(1 for w in windows if w[0] == "full" and w[3]),
                         "chain": sum(1 for w in windows if w[0] == "chain" and w[3])},
        "reload_seconds_max": {k: round(max([e - s for kk, s, e, _ in windows if kk == k] or [0]), 3)
                               for k in ("full", "chain")},
        "requests": len(ok) + len(fails),
        "ok": len(ok),
        "failed": len(fails),
        "distinct_pids": len({a[1] for a in ok}),
    }
    by_kind, by_phase = {}, {}
    for f in fails:
        key = f"{f[4]}@{f[3]}"
        by_kind[key] = by_kind.get(key, 0) + 1
        ph = phase_of(f[0], windows, pause)
        by_phase[ph] = by_phase.get(ph, 0) + 1
    out["failures_by_kind"] = by_kind
    out["failures_by_phase"] = by_phase
    # Gaps between consecutive successful answers (any client), attributed to where they end.
    gaps = {"overall": 0.0, "full": 0.0, "chain": 0.0, "idle": 0.0}
    prev = start
    for t, *_ in ok:
        g = t - prev
        ph = phase_of(t, windows, pause)
        gaps["overall"] = max(gaps["overall"], g)
        gaps[ph] = max(gaps[ph], g)
        prev = t
    out["longest_gap_s"] = {k: round(v, 4) for k, v in gaps.items()}
    # Each failure against the nearest "Gracefully killing worker" line before its end.
    near, deltas, samples = 0, [], []
    for f in fails:
        before = [k for k in kills if k <= f[1] + 0.002]
        d = (f[1] - before[-1]) if before else None
        if d is not None:
            deltas.append(d)
            if d <= NEAR:
                near += 1
        if len(samples) < 12:
            samples.append({"t": round(f[0] - start, 4), "dur": round(f[1] - f[0], 4),
                            "client": f[2], "stage": f[3], "error": f[4], "msg": f[5],
                            "phase": phase_of(f[0], windows, pause),
                            "after_graceful_kill_s": None if d is None else round(d, 4)})
    out["graceful_kill_lines"] = len(kills)
    out["failures_within_%gs_after_graceful_kill" % NEAR] = near
    out["failure_delay_after_graceful_kill_s"] = (
        {"min": round(min(deltas), 4), "max": round(max(deltas), 4),
         "median": round(sorted(deltas)[len(deltas) // 2], 4)} if deltas else None)
    out["failure_samples"] = samples
    return out


def per_reload(clients, windows, versions, pause):
    """Each reload's longest gap between two successive answers (any client) that ends between
    its touch and its end + min(pause, 1 s); its failed requests (started in that window)."""
    times = sorted(a[0] for a in clients.ok)
    fails = sorted(f[0] for f in clients.failures)
    rows, gaps = [], {"full": [], "chain": []}
    for (kind, s, e, ok), (v_before, v_after) in zip(windows, versions):
        w_end = e + min(pause, 1.0)
        i = bisect.bisect_left(times, s)
        j = bisect.bisect_right(times, w_end)
        longest = max((times[k] - times[k - 1] for k in range(max(i, 1), j)), default=None)
        if longest is None:  # no answer at all in the window: up to its end
            longest = w_end - (times[i - 1] if i else s)
        failed = bisect.bisect_right(fails, w_end) - bisect.bisect_left(fails, s)
        gaps[kind].append(round(longest, 4))
        rows.append({"kind": kind, "ok": ok, "seconds": round(e - s, 3),
                     "longest_gap_s": round(longest, 4), "failed": failed,
                     "version_before": v_before, "versions_after": v_after})
    return {"per_reload_longest_gap_s": gaps, "per_reload": rows}


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("soak: terminated (SIGTERM)"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ini")
    ap.add_argument("--port", type=int)
    ap.add_argument("--log", help="where the time-stamped uWSGI log goes")
    ap.add_argument("--touch-reload")
    ap.add_argument("--touch-chain")
    ap.add_argument("--full", type=int, default=30)
    ap.add_argument("--chain", type=int, default=30)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--path", default="/", help="the path the clients GET (default /)")
    ap.add_argument("--pause", type=float, default=0.5)
    ap.add_argument("--interleave", action="store_true", help="alternate full and chain reloads")
    ap.add_argument("--retag", metavar="SRC1,SRC2,DST",
                    help="docker tag SRC1/SRC2 alternately onto DST before each reload")
    ap.add_argument("--chain-done", metavar="REGEX", help="the log line that ends a chain reload")
    ap.add_argument("--plain-demo", metavar="DIR",
                    help="write a plain-uWSGI ini + app into DIR and soak it")
    args = ap.parse_args()
    PATH[0] = args.path
    if args.plain_demo:
        args.port = args.port or free_port()
        args.ini = write_plain_demo(args.plain_demo, args.port)
        d = os.path.dirname(args.ini)
        args.touch_reload = args.touch_reload or os.path.join(d, "reload.touch")
        args.touch_chain = args.touch_chain or os.path.join(d, "chain.touch")
        args.log = args.log or os.path.join(d, "uwsgi.log")
    if not args.ini or not args.port:
        ap.error("--ini and --port are required (or --plain-demo DIR)")
    ini = read_ini(args.ini)
    args.touch_reload = args.touch_reload or ini.get("touch-reload")
    args.touch_chain = args.touch_chain or ini.get("touch-chain-reload")
    json.dump(soak(args), sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
