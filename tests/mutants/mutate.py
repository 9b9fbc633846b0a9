#!/usr/bin/python3
"""Applies one edit to a source file: mutate.py FILE PATTERN REPLACEMENT.

PATTERN is a Python regular expression (re.S) that must match exactly once in FILE; otherwise
this fails loudly, so that a mutant never silently becomes the unmutated code when the source
moves on."""
import re
import sys

path, pattern, repl = sys.argv[1:4]
with open(path) as f:
    text = f.read()
new, n = re.subn(pattern, repl, text, flags=re.S)
if n != 1:
    sys.exit(f"mutate: {path}: pattern matched {n} times (expected once): {pattern!r}")
with open(path, "w") as f:
    f.write(new)
