"""Shared by the Python parts of scripts/bench.sh."""
import subprocess
import sys
import time


def run_once(argv):
    """Runs argv once; its wall time in ms. A failed run ends the bench with its last line."""
    t0 = time.perf_counter()
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    dt = (time.perf_counter() - t0) * 1000.0
    if p.returncode != 0:
        err = p.stderr.decode(errors="replace").strip().splitlines()
        sys.exit("bench: run failed (status %d): %s\n  %s"
                 % (p.returncode, " ".join(argv), err[-1] if err else "(no message)"))
    return dt
