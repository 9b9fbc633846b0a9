"""The man pages are lint-clean and list exactly the options the programs take."""
import os
import re
import shutil
import subprocess

import pytest

from udlib import HELPER

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HELPER_MAN = os.path.join(ROOT, "man", "uwsgi-docker-rootfs.1")
PLUGIN_MAN = os.path.join(ROOT, "man", "uwsgi-plugin-docker.7")


def man_section(path, name):
    text = open(path).read()
    m = re.search(r"^\.SH %s\n(.*?)^\.SH " % re.escape(name), text, re.S | re.M)
    assert m, f"{path} has no {name} section"
    return m.group(1)


def tagged_options(section, pattern):
    """Options named on the line after each .TP (the tag line)."""
    lines = section.splitlines()
    found = set()
    for i, line in enumerate(lines):
        if line.strip() == ".TP" and i + 1 < len(lines):
            found.update(re.findall(pattern, lines[i + 1].replace("\\-", "-")))
    return found


@pytest.mark.parametrize("page", [HELPER_MAN, PLUGIN_MAN])
def test_man_page_is_lint_clean(page):
    if not shutil.which("mandoc"):
        pytest.fail("mandoc is missing (scripts/deps.sh installs it)")
    p = subprocess.run(["mandoc", "-T", "lint", "-W", "warning", page], capture_output=True, text=True)
    assert p.returncode == 0 and not p.stdout.strip(), p.stdout + p.stderr


def test_help_lists_exactly_the_man_page_options():
    man = tagged_options(man_section(HELPER_MAN, "OPTIONS"), r"(--[a-z][a-z-]*|-[a-zA-Z])\b")
    out = subprocess.run([HELPER, "--help"], capture_output=True, text=True, check=True).stdout
    help_opts = set(re.findall(r"^\s+(?:(-[a-zA-Z]), )?(--[a-z][a-z-]*)", out, re.M))
    flat = {o for pair in help_opts for o in pair if o}
    assert flat == man, f"--help only: {sorted(flat - man)}; man only: {sorted(man - flat)}"


def test_plugin_man_page_lists_exactly_the_plugin_options():
    plugin_dir = os.path.dirname(HELPER)
    out = subprocess.run(["uwsgi", "--plugin-dir", plugin_dir, "--plugin", "docker", "--help"],
                         capture_output=True, text=True).stdout
    registered = set(re.findall(r"^\s+--(docker-[a-z-]+)", out, re.M))
    assert registered, out[-2000:]
    man = tagged_options(man_section(PLUGIN_MAN, "OPTIONS"), r"\b(docker-[a-z-]+)")
    assert registered == man, f"plugin only: {sorted(registered - man)}; man only: {sorted(man - registered)}"
