"""The shape of the C sources, checked as the project's style asks: no function over 80 lines,
no .c file over 800, and no include cycle among the project's own headers. Reads the tree only."""
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIRS = ["src", "hooks/docker"]
MAX_FUNCTION = 80
MAX_FILE = 800


def _sources(ext):
    for d in DIRS:
        for name in sorted(os.listdir(os.path.join(ROOT, d))):
            if name.endswith(ext):
                yield os.path.join(d, name)


def _blank_comments_and_strings(text):
    out, i, n = [], 0, len(text)
    while i < n:
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text[i] in "\"'":
            q, j = text[i], i + 1
            while j < n and text[j] != q:
                j += 2 if text[j] == "\\" else 1
            out.append(q + re.sub(r"[^\n]", " ", text[i + 1:j]) + q)
            i = j + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def function_lengths(path):
    """(name, first line, number of lines) of each top-level brace block that follows a
    function header."""
    clean = _blank_comments_and_strings(open(path, errors="replace").read())
    depth, start, line, stmt, found = 0, None, 1, 0, []
    for k, c in enumerate(clean):
        if c == "\n":
            line += 1
            if depth == 0 and clean[stmt:k].lstrip().startswith("#"):
                stmt = k + 1
        elif c == "{":
            if depth == 0:
                header, start = " ".join(clean[stmt:k].split()), line
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0 and start is not None:
                m = re.search(r"([A-Za-z_]\w*)\s*\([^;]*\)\s*$", header)
                if m and "=" not in header.split("(")[0] and \
                        not re.match(r"(typedef|struct|enum|union)\b", header):
                    found.append((m.group(1), start, line - start + 1))
                start, stmt = None, k + 1
        elif c == ";" and depth == 0:
            stmt = k + 1
    return found


def test_the_checker_sees_functions():
    """The length check must find the functions it judges (a broken parser passes anything)."""
    found = {name for name, _, _ in function_lengths(os.path.join(ROOT, "src/error.c"))}
    assert {"ud_fail", "ud_context", "ud_error_text"} <= found, found


@pytest.mark.parametrize("path", list(_sources(".c")))
def test_functions_and_files_are_short(path):
    full = os.path.join(ROOT, path)
    with open(full, errors="replace") as f:
        lines = sum(1 for _ in f)
    assert lines <= MAX_FILE, f"{path} has {lines} lines (at most {MAX_FILE})"
    long = [(n, s, l) for n, s, l in function_lengths(full) if l > MAX_FUNCTION]
    assert not long, f"functions over {MAX_FUNCTION} lines in {path}: {long}"


def test_no_include_cycle():
    graph = {}
    for path in list(_sources(".c")) + list(_sources(".h")):
        with open(os.path.join(ROOT, path)) as f:
            graph[os.path.basename(path)] = set(re.findall(r'^#include "([^"]+)"', f.read(), re.M))
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == "open":
                raise AssertionError("include cycle: " + " -> ".join(stack[stack.index(nxt):] +
                                                                     [nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"
    for node in sorted(graph):
        if node not in state:
            visit(node)
