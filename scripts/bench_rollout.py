#!/usr/bin/python3
"""make bench, rollouts: a real framework app (Flask on a Debian 12 image), 4 workers, 4 clients.

  usage: scripts/bench_rollout.py HELPER      (as root, dockerd running; the plugin is next to HELPER)

1. Gaps (BENCH_GAP_RELOADS reloads each, default 3): the longest gap between two successive answers
   (any client) across each reload, and failed requests, for
     plain uWSGI, full reload     the same Flask app on the host (uWSGI's default: no lazy-apps)
     form 1, full reload          docker-image = :live, re-tagged between :v1 and :v2 before each
     form 1, rollout              the same, touch-chain-reload (ends at "[docker] rolled out image")
   Targets: rollout gap <= 50 ms and <= 1/20 of plain uWSGI's full-reload gap; 0 failed.
2. Soak (BENCH_SOAK full reloads + BENCH_SOAK rollouts, default 30, interleaved): form 1, every
   reload onto the other image; then the same counts of full + chain reloads on plain uWSGI
   (lazy-apps, which chain reloads need). Target: form 1, 0 failed requests.

Each run is scripts/soak.py (its JSON on stdout), bounded by a timeout. Exits 0 whatever the
figures, non-zero (one line on stderr) if a run itself failed. Removes its tags (the cached Debian
base image is kept), its temporary directory and every process it started.
"""
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(SCRIPTS)
UWSGI = "/usr/bin/uwsgi"
PY = "/usr/bin/python3"
DOCKER = "/usr/bin/docker"
PLAIN_PLUGINS = "/usr/lib/uwsgi/plugins"
IMAGE_REPO = "uwsgi-docker-bench-flask"
V1, V2, LIVE = IMAGE_REPO + ":v1", IMAGE_REPO + ":v2", IMAGE_REPO + ":live"
WORKERS = CLIENTS = 4
GAP_TARGET_S = 0.050
GAP_RATIO_TARGET = 20


class RunFailed(Exception):
    pass


def posint(name, default):
    v = os.environ.get(name, str(default))
    if not v.isdigit() or int(v) < 1:
        raise RunFailed(f"{name} must be a positive integer")
    return int(v)


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_pids(sid):
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(rest[3]) == sid and rest[0] != "Z":
            out.append(int(p))
    return out


def kill_session_of(pidfile):
    """SIGKILL what is left of a uWSGI instance (its session: soak.py starts it in its own)."""
    try:
        with open(pidfile) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return
    for p in session_pids(pid):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def docker(*args, timeout=120):
    p = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise RunFailed(f"docker {' '.join(args)} failed: {p.stderr.strip()}")
    return p.stdout


class Instance:
    """One uWSGI ini: form 1 (docker-image = :live) or plain uWSGI with the app on the host."""

    def __init__(self, tmp, name, helper=None, hostapp=None, lazy=False):
        self.name = name
        self.dir = os.path.join(tmp, name)
        os.mkdir(self.dir, 0o755)
        self.port = free_port()
        self.reload = os.path.join(self.dir, "reload")
        self.chain = os.path.join(self.dir, "chain")
        past = time.time() - 60  # uWSGI compares whole seconds: start in the past
        for p in (self.reload, self.chain):
            open(p, "w").close()
            os.utime(p, (past, past))
        self.pidfile = os.path.join(self.dir, "pid")
        if helper:
            opts = [("plugin-dir", os.path.dirname(helper)), ("plugins", "python3,docker")]
        else:
            opts = [("plugin-dir", PLAIN_PLUGINS), ("plugins", "python3")]
        opts += [("master", "true"), ("processes", str(WORKERS)),
                 ("http-socket", f"127.0.0.1:{self.port}")]
        if helper:
            opts += [("docker-image", LIVE), ("docker-helper", helper)]
        if lazy:
            opts += [("lazy-apps", "true")]
        opts += [("uid", "nobody"), ("gid", "nogroup"),
                 ("wsgi-file", "/srv/app.py" if helper else os.path.join(hostapp, "app.py")),
                 ("touch-reload", self.reload), ("touch-chain-reload", self.chain),
                 ("pidfile", self.pidfile), ("disable-logging", "true")]
        self.ini = os.path.join(self.dir, "uwsgi.ini")
        with open(self.ini, "w") as f:
            f.write("[uwsgi]\n" + "".join(f"{k} = {v}\n" for k, v in opts))

    def soak(self, full, chain, pause, interleave=False, retag=False, tag=""):
        log = os.path.join(self.dir, f"log-{tag}")
        argv = [PY, os.path.join(SCRIPTS, "soak.py"), "--ini", self.ini, "--port", str(self.port),
                "--log", log, "--full", str(full), "--chain", str(chain),
                "--clients", str(CLIENTS), "--pause", str(pause), "--path", "/light"]
        if interleave:
            argv.append("--interleave")
        if retag:
            argv += ["--retag", f"{V1},{V2},{LIVE}"]
        timeout = 120 + 30 * (full + chain)
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=self.dir)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGTERM)  # soak.py stops its uWSGI on SIGTERM
            try:
                out, err = p.communicate(timeout=40)
            except subprocess.TimeoutExpired:
                p.kill()
                out, err = p.communicate(timeout=10)
            raise RunFailed(f"{self.name}: soak.py did not finish within {timeout} s"
                            + self.tail(log))
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(10)
            kill_session_of(self.pidfile)
        try:
            res = json.loads(out)
        except ValueError:
            raise RunFailed(f"{self.name}: soak.py exited {p.returncode}: "
                            f"{err.strip()[-500:] or 'no JSON'}" + self.tail(log))
        done = res["reloads_done"]
        if done["full"] != full or done["chain"] != chain:
            raise RunFailed(f"{self.name}: {done['full']}/{full} full and {done['chain']}/{chain} "
                            f"chain reloads completed: {err.strip()[-300:]}" + self.tail(log))
        if retag:
            moved = [r for r in res["per_reload"]
                     if r["versions_after"] and r["versions_after"] != [r["version_before"]]
                     and len(r["versions_after"]) == 1]
            res["not_moved"] = len(res["per_reload"]) - len(moved)
        return res

    @staticmethod
    def tail(log, n=15):
        try:
            with open(log, errors="replace") as f:
                lines = f.read().splitlines()[-n:]
        except OSError:
            return ""
        return "\n" + "\n".join("  " + l for l in lines)


def host_app(tmp):
    """The Flask app of the image, on the host, reading its version from a file next to it."""
    import debian_image
    d = os.path.join(tmp, "hostapp")
    os.mkdir(d, 0o755)
    version = os.path.join(d, "version")
    src = debian_image.FLASK_APP % {"env_keys": []}
    if '"/srv/version"' not in src:
        raise RunFailed("debian_image.FLASK_APP no longer reads /srv/version")
    with open(os.path.join(d, "app.py"), "w") as f:
        f.write(src.replace('"/srv/version"', repr(version)))
    with open(version, "w") as f:
        f.write("host\n")
    for p in ("app.py", "version"):
        os.chmod(os.path.join(d, p), 0o644)
    return d


def ms(s):
    return "%.0f" % (s * 1000)


def main():
    t_start = time.monotonic()
    if len(sys.argv) != 2:
        raise RunFailed("usage: bench_rollout.py HELPER")
    helper = os.path.abspath(sys.argv[1])
    gap_n = posint("BENCH_GAP_RELOADS", 3)
    soak_n = posint("BENCH_SOAK", 30)
    if os.getuid() != 0:
        raise RunFailed("run as root (make bench)")
    for path, what in ((helper, "is not built (make)"),
                       (os.path.join(os.path.dirname(helper), "docker_plugin.so"),
                        "is not built (make)"),
                       (UWSGI, "not found (package uwsgi-core)"),
                       (os.path.join(PLAIN_PLUGINS, "python3_plugin.so"),
                        "not found (package uwsgi-plugin-python3)")):
        if not os.path.exists(path):
            raise RunFailed(f"{path} {what}")
    if subprocess.run([PY, "-c", "import flask"], capture_output=True).returncode != 0:
        raise RunFailed("python3-flask is not installed on the host (make deps)")

    os.environ["UD_HELPER"] = helper
    sys.path.insert(0, os.path.join(REPO_ROOT, "tests", "integration"))
    tmp = tempfile.mkdtemp(prefix="uwsgi-docker-bench-rollout.")
    os.chmod(tmp, 0o711)
    tags = []
    try:
        import debian_image
        print("\nbench: rollouts: the Flask app on Debian 12 (%s), %d workers, %d clients"
              % (debian_image.BASE_TAG, WORKERS, CLIENTS), flush=True)
        try:
            base = debian_image.debian_flask_base(tmp)
            for tag, v in ((V1, "v1"), (V2, "v2")):
                tags.append(tag)
                debian_image.flask_app_image(base, tag, v, {}, session_dir=tmp)
        except BaseException as e:  # pytest.fail raises an exception outside Exception
            if isinstance(e, KeyboardInterrupt):
                raise
            raise RunFailed(f"building the Flask images: {str(e).strip()[-500:]}")
        tags.append(LIVE)
        docker("tag", V1, LIVE)
        hostapp = host_app(tmp)

        # 1. gaps
        print("bench: gaps: %d full reloads of plain uWSGI; %d full reloads and %d rollouts of "
              "form 1" % (gap_n, gap_n, gap_n), flush=True)
        plain = Instance(tmp, "plain-full", hostapp=hostapp).soak(gap_n, 0, 1.0, tag="gap")
        form1 = Instance(tmp, "form1-gap", helper=helper).soak(gap_n, gap_n, 1.0, retag=True,
                                                              tag="gap")

        def by_kind(res, kind):
            return [r for r in res["per_reload"] if r["kind"] == kind]

        rows = [("plain uWSGI, full reload", by_kind(plain, "full")),
                ("form 1, full reload onto the other image", by_kind(form1, "full")),
                ("form 1, rollout onto the other image", by_kind(form1, "chain"))]

        # 2. soak
        print("bench: soak: %d full reloads + %d rollouts of form 1 (interleaved), then %d full + "
              "%d chain reloads of plain uWSGI (lazy-apps)" % (soak_n, soak_n, soak_n, soak_n),
              flush=True)
        t = time.monotonic()
        s_form1 = Instance(tmp, "form1-soak", helper=helper).soak(
            soak_n, soak_n, 0.5, interleave=True, retag=True, tag="soak")
        s_form1_t = time.monotonic() - t
        t = time.monotonic()
        s_plain = Instance(tmp, "plain-soak", hostapp=hostapp, lazy=True).soak(
            soak_n, soak_n, 0.5, interleave=True, tag="soak")
        s_plain_t = time.monotonic() - t

        print()
        print("| reload (%d each, %d workers, %d clients) | longest gap, median | max "
              "| reload time, median | failed |" % (gap_n, WORKERS, CLIENTS))
        print("| --- | ---: | ---: | ---: | ---: |")
        for label, rs in rows:
            g = [r["longest_gap_s"] for r in rs]
            print("| %s | %s ms | %s ms | %s ms | %d |"
                  % (label, ms(statistics.median(g)), ms(max(g)),
                     ms(statistics.median(r["seconds"] for r in rs)), sum(r["failed"] for r in rs)))
        plain_gap = max(r["longest_gap_s"] for r in rows[0][1])
        roll_gap = max(r["longest_gap_s"] for r in rows[2][1])
        failed = plain["failed"] + form1["failed"]
        print()
        print("| rollout | value | target | |")
        print("| --- | ---: | ---: | --- |")
        print("| form 1 rollout: longest gap (max of %d) | %s ms | ≤ %s ms | %s |"
              % (gap_n, ms(roll_gap), ms(GAP_TARGET_S),
                 "PASS" if roll_gap <= GAP_TARGET_S else "MISS"))
        r = roll_gap / plain_gap if plain_gap else float("inf")
        print("| form 1 rollout gap / plain uWSGI full-reload gap (max/max) | 1/%.1f | ≤ 1/%d | %s |"
              % (1 / r if r else float("inf"), GAP_RATIO_TARGET,
                 "PASS" if r <= 1 / GAP_RATIO_TARGET else "MISS"))
        print("| failed requests across the gap runs (form 1 %d, plain %d) | %d | 0 | %s |"
              % (form1["failed"], plain["failed"], failed, "PASS" if not failed else "MISS"))
        print("| form 1 reloads that did not move to the other image | %d | 0 | %s |"
              % (form1["not_moved"] + s_form1["not_moved"],
                 "PASS" if not form1["not_moved"] + s_form1["not_moved"] else "MISS"))

        print()
        print("| soak (%d full + %d chain, %d clients) | requests | failed | failed: full / chain "
              "/ idle | failures by kind | longest gap: full / chain | time |"
              % (soak_n, soak_n, CLIENTS))
        print("| --- | ---: | ---: | ---: | --- | ---: | ---: |")
        for label, res, secs in (("form 1 (chain = rollout)", s_form1, s_form1_t),
                                 ("plain uWSGI (lazy-apps)", s_plain, s_plain_t)):
            ph = res["failures_by_phase"]
            kinds = ", ".join("%s %d" % kv for kv in sorted(res["failures_by_kind"].items()))
            g = res["per_reload_longest_gap_s"]
            print("| %s | %d | %d | %d / %d / %d | %s | %s / %s ms | %.0f s |"
                  % (label, res["requests"], res["failed"], ph.get("full", 0), ph.get("chain", 0),
                     ph.get("idle", 0), kinds or "–", ms(max(g["full"])), ms(max(g["chain"])),
                     secs))
        print()
        print("| soak | value | target | |")
        print("| --- | ---: | ---: | --- |")
        print("| failed requests, form 1, %d full reloads + %d rollouts | %d | 0 | %s |"
              % (soak_n, soak_n, s_form1["failed"], "PASS" if not s_form1["failed"] else "MISS"))
        print("| failed requests, plain uWSGI, %d full + %d chain reloads | %d | | |"
              % (soak_n, soak_n, s_plain["failed"]))
        for label, res in (("form 1", s_form1), ("plain uWSGI", s_plain)):
            for f in res["failure_samples"][:3]:
                print("bench: failed request (%s, %s): %s at %s: %s"
                      % (label, f["phase"], f["error"], f["stage"], f["msg"]))
        print("\nbench: rollouts done in %.0f s" % (time.monotonic() - t_start))
    finally:
        for tag in reversed(tags):
            subprocess.run([DOCKER, "rmi", tag], capture_output=True, timeout=120,
                           stdin=subprocess.DEVNULL)
        subprocess.run(["rm", "-rf", "--one-file-system", tmp], capture_output=True, timeout=120)


if __name__ == "__main__":
    try:
        main()
    except RunFailed as e:
        sys.exit(f"bench: run failed: {e}")
