"""Push to deploy (issue 13): `uwsgi-docker-rootfs --check IMAGE` against a real registry
(Debian's docker-registry on 127.0.0.1, registry_support.py), and instances that follow their
tag (docker-follow)."""
import re

from registry_support import _auths_config, _free_port
from udlib import describe, docker, error_line, run

DIGEST = r"sha256:[0-9a-f]{64}"


def _check(ref, cfg, *opts):
    p = run(["--check", "--docker-config", cfg, *opts, ref], timeout=120)
    m = re.fullmatch(rf"local ({DIGEST}|none)\nregistry ({DIGEST})\n", p.stdout)
    return p, (m.group(1), m.group(2)) if m else None


def test_check_says_whether_the_tag_moved(registry, scratch, pulled):
    cfg = _auths_config(scratch, registry.addr)
    repo = "udfollow/check"
    ref = f"{registry.addr}/{repo}:live"
    pulled.append(ref)
    first = registry.push(f"{repo}:live", "check-1\n")
    # Not on this machine yet: the registry has what the daemon does not.
    p, got = _check(ref, cfg)
    assert p.returncode == 1 and got == ("none", first), describe(p)
    assert run(["--docker-config", cfg, ref, "--", "/bin/cat", "/marker"],
               timeout=120).stdout == "check-1\n"
    p, got = _check(ref, cfg)
    assert p.returncode == 0 and got == (first, first) and p.stderr == "", describe(p)
    # Someone pushes: the registry moved, the daemon's image did not (nothing is pulled).
    keep = f"{registry.addr}/{repo}:keep"
    docker("tag", ref, keep)
    try:
        second = registry.push(f"{repo}:live", "check-2\n")
        docker("tag", keep, ref)
    finally:
        docker("rmi", keep, check=False)
    p, got = _check(ref, cfg)
    assert p.returncode == 1 and got == (first, second) and second != first, describe(p)
    p = run(["--pull", "never", ref, "--", "/bin/cat", "/marker"])
    assert p.stdout == "check-1\n", describe(p)


def test_check_failures_are_one_line_each(registry, scratch, pulled):
    cfg = _auths_config(scratch, registry.addr)
    digest = registry.push("udfollow/fail:v1", "fail\n")
    unknown = f"{registry.addr}/udfollow/fail:no-such-tag"
    pulled.append(unknown)
    line = error_line(run(["--check", "--docker-config", cfg, unknown]), 65)
    assert unknown in line and "manifest unknown" in line, line
    # No credentials: the registry's own words.
    line = error_line(run(["--check", "--docker-config", scratch,
                           f"{registry.addr}/udfollow/fail:v1"]), 65)
    assert "no basic auth credentials" in line, line
    nowhere = f"127.0.0.1:{_free_port()}/udfollow/nowhere:v1"
    line = error_line(run(["--check", "--docker-config", cfg, nowhere]), 66)
    assert nowhere in line and "connection refused" in line, line
    pinned = f"{registry.addr}/udfollow/fail@{digest}"
    line = error_line(run(["--check", pinned]), 64)
    assert "digest" in line and "cannot move" in line, line
    line = error_line(run(["--check", "--print", pinned]), 64)
