"""Every fd the project opens is close-on-exec from the moment it exists (runc CVE-2024-21626):
not thanks to the helper's final close_range(CLOSE_RANGE_CLOEXEC) before COMMAND, which covers
only that one exec (not the plugin's posix_spawn of the helper, not a fork in between, not a
thread that execs first).

Two checks: a static one over the sources (every call that creates an fd names its CLOEXEC
flag), and a behavioural one: the helper runs under strace -k, and every fd-creating system call
made from the helper's own code (the first frame outside libc) carries the flag; fds that
libraries open without it must be closed before the helper execs COMMAND."""
import glob
import os
import re
import subprocess

import pytest

from udlib import HELPER, MOUNT_APIS, describe, helper_env

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))

# call -> the flag that must appear among its arguments (any of them)
STATIC_RULES = {
    "open": ["O_CLOEXEC"], "openat": ["O_CLOEXEC"], "sys_openat2": ["O_CLOEXEC"],
    "creat": None,                                   # never: it cannot take O_CLOEXEC
    "socket": ["SOCK_CLOEXEC"], "socketpair": ["SOCK_CLOEXEC"], "accept4": ["SOCK_CLOEXEC"],
    "accept": None, "pipe": None, "dup": None, "dup2": None,
    "pipe2": ["O_CLOEXEC"], "dup3": ["O_CLOEXEC"],
    "fcntl": None,                                   # checked below: F_DUPFD needs _CLOEXEC
    "memfd_create": ["MFD_CLOEXEC"], "epoll_create1": ["EPOLL_CLOEXEC"], "epoll_create": None,
    "eventfd": ["EFD_CLOEXEC"], "signalfd": ["SFD_CLOEXEC"], "timerfd_create": ["TFD_CLOEXEC"],
    "inotify_init1": ["IN_CLOEXEC"], "inotify_init": None,
    "fopen": None,                                   # checked below: mode has "e"
    "mkstemp": None, "tmpfile": None, "popen": None, "mkostemp": ["O_CLOEXEC"],
    "recvmsg": ["MSG_CMSG_CLOEXEC"],                 # the only recvmsg receives SCM_RIGHTS
    "open_tree": ["OPEN_TREE_CLOEXEC"], "fsopen": ["FSOPEN_CLOEXEC"],
    "fsmount": ["FSMOUNT_CLOEXEC"], "fspick": ["FSPICK_CLOEXEC"],
    "pidfd_open": None,                              # always CLOEXEC by the kernel: allowed
}

# Deliberate exceptions: (file, call text) -> why. Kept short; each one is read by a reviewer.
ALLOWED = {
    ("hooks/docker/form2.c", "dup(sv[1])"):
        "form 2: the exec-as-root hook's /bin/sh -c must inherit this end (UWSGI_DOCKER_FD)",
    ("hooks/docker/helper.c", "dup2(errw, 2)"):
        "the helper's child between clone and exec: its stderr, which the helper inherits",
    ("hooks/docker/helper.c", "dup2(sock, 3)"):
        "the helper's child between clone and exec: the hand-off socket, as fd 3 of the helper",
    ("hooks/docker/helper.c", "dup2(outw, 1)"):
        "the helper's child between clone and exec: docker-follow's --check answers on stdout",
}


def _sources():
    files = sorted(glob.glob(os.path.join(ROOT, "src", "*.c")) +
                   glob.glob(os.path.join(ROOT, "hooks", "docker", "*.c")))
    assert files, f"no sources under {ROOT}"
    return files


def _strip_comments_and_strings(text):
    """Comments become spaces (line numbers kept); string literals stay (fopen modes)."""
    def blank(m):
        return re.sub(r"[^\n]", " ", m.group(0))
    return re.sub(r"/\*.*?\*/|//[^\n]*", blank, text, flags=re.S)


def _calls(text, name):
    """(line, argument text) of each call of name(...), balanced parentheses."""
    for m in re.finditer(r"(?<![\w.>])" + re.escape(name) + r"\s*\(", text):
        line_start = text.rfind("\n", 0, m.start()) + 1
        if text[line_start:m.start()].replace('\\"', "").count('"') % 2:
            continue   # inside a string literal: a message, not a call
        # skip definitions and prototypes: "int sys_openat2(int dirfd, ..."
        before = text[max(0, text.rfind("\n", 0, m.start())):m.start()]
        if re.search(r"\b(int|void|static|FILE\s*\*|ssize_t)\s*\**\s*$", before):
            continue
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        yield text.count("\n", 0, m.start()) + 1, name + "(" + text[m.end():i - 1] + ")"


def static_violations(files):
    bad = []
    for path in files:
        rel = os.path.relpath(path, ROOT)
        with open(path) as f:
            text = _strip_comments_and_strings(f.read())
        for name, flags in STATIC_RULES.items():
            for line, call in _calls(text, name):
                args = call[len(name) + 1:-1]
                if (rel, call) in ALLOWED:
                    continue
                if name == "fcntl":
                    ok = not re.search(r"\bF_DUPFD\b", args)
                elif name == "fopen":
                    mode = re.search(r'"([^"]*)"\s*$', args)
                    ok = bool(mode and "e" in mode.group(1))
                elif name == "pidfd_open":
                    ok = True
                elif flags is None:
                    ok = False
                else:
                    ok = any(re.search(r"\b" + f + r"\b", args) for f in flags)
                if not ok:
                    bad.append(f"{rel}:{line}: {' '.join(call.split())}")
        # openat2 by hand: the open_how's flags
        for m in re.finditer(r"\.flags\s*=\s*([^,}]*)", text):
            line = text.count("\n", 0, m.start()) + 1
            near = text[m.start():m.start() + 400]
            value = m.group(1).strip()
            if "SYS_openat2" in near and "O_CLOEXEC" not in value and \
                    not re.search(r"\bflags$", value):   # a wrapper's parameter: its callers are checked
                bad.append(f"{rel}:{line}: open_how .flags = {m.group(1).strip()}")
    return bad


def test_every_fd_creating_call_in_the_sources_names_cloexec():
    bad = static_violations(_sources())
    assert not bad, "calls that create an fd without its CLOEXEC flag:\n  " + "\n  ".join(bad)


def test_the_static_check_sees_what_it_is_for(tmp_path):
    """The scan must flag each kind of mistake (or it would pass vacuously)."""
    src = tmp_path / "bad.c"
    src.write_text("\n".join([
        "int f(int d) {",
        "  int a = open(\"/x\", O_RDONLY);",
        "  int b = openat(d, \"x\",",
        "                 O_PATH | O_DIRECTORY);  /* O_CLOEXEC in a comment does not count */",
        "  int c = fcntl(d, F_DUPFD, 3);",
        "  int s = socket(AF_UNIX, SOCK_STREAM, 0);",
        "  ssize_t n = recvmsg(d, &msg, 0);",
        "  FILE *fp = fopen(\"/x\", \"r\");",
        "  int t = open_tree(d, \"\", OPEN_TREE_CLONE);",
        "  int g = dup(d);",
        "  struct open_how how = {.flags = O_PATH, .resolve = 0};",
        "  int h = syscall(SYS_openat2, d, \"x\", &how, sizeof(how));",
        "  int ok = open(\"/x\", O_RDONLY | O_CLOEXEC);",
        "}"]) + "\n")
    bad = static_violations([str(src)])
    lines = sorted(int(b.split(":")[1]) for b in bad)
    assert lines == [2, 3, 5, 6, 7, 8, 9, 10, 11], bad


# ---------------------------------------------------------------- behaviour, under strace

FD_SYSCALLS = {
    # syscall -> regex over its argument text that must match (the CLOEXEC flag)
    "open": r"O_CLOEXEC", "openat": r"O_CLOEXEC", "openat2": r"O_CLOEXEC",
    "creat": None, "socket": r"SOCK_CLOEXEC", "socketpair": r"SOCK_CLOEXEC",
    "accept": None, "accept4": r"SOCK_CLOEXEC", "pipe": None, "pipe2": r"O_CLOEXEC",
    "dup": None, "dup2": None, "dup3": r"O_CLOEXEC", "fcntl": r"F_DUPFD_CLOEXEC",
    "memfd_create": r"MFD_CLOEXEC", "open_tree": r"OPEN_TREE_CLOEXEC",
    "fsopen": r"FSOPEN_CLOEXEC", "fsmount": r"FSMOUNT_CLOEXEC", "fspick": r"FSPICK_CLOEXEC",
    "epoll_create1": r"EPOLL_CLOEXEC", "eventfd2": r"EFD_CLOEXEC",
    "inotify_init1": r"IN_CLOEXEC", "recvmsg": r"MSG_CMSG_CLOEXEC",
}
_ENTRY = re.compile(r"^(\d+) +(?:<\.\.\. (\w+) resumed>|(\w+)\()(.*?)\) += (-?\d+)")


def _strace_entries(path):
    """(pid, syscall, args, result, frames) from strace -f -k output; frames are the binary
    paths of the stack, innermost first."""
    out, cur, pending = [], None, {}
    with open(path) as f:
        for line in f:
            if line.startswith(" > "):
                if cur is not None:
                    cur[4].append(line[3:].split("(", 1)[0].strip())
                continue
            cur = None
            if line.rstrip().endswith("<unfinished ...>"):
                m = re.match(r"^(\d+) +(\w+)\((.*)<unfinished", line)
                if m:
                    pending[m.group(1)] = m.group(3)
                continue
            m = _ENTRY.match(line)
            if not m:
                continue
            pid, resumed, name, args, res = m.groups()
            if resumed:
                name, args = resumed, pending.pop(pid, "") + args
            cur = [pid, name, args, int(res), []]
            out.append(cur)
    return out


def _first_own_frame(frames):
    for fr in frames:
        base = os.path.basename(fr)
        if base.startswith(("libc.so", "ld-linux", "libpthread")):
            continue
        return fr
    return ""


def _fd_results(name, args, res):
    """The fds a successful call created."""
    if name in ("pipe", "pipe2", "socketpair"):
        m = re.search(r"\[(\d+), (\d+)\]", args)
        return [int(m.group(1)), int(m.group(2))] if m else []
    if name == "recvmsg":
        m = re.search(r"SCM_RIGHTS, cmsg_data=\[([\d, ]+)\]", args)
        return [int(x) for x in m.group(1).split(",")] if m else []
    if name == "fcntl" and not re.search(r"F_DUPFD", args):
        return []
    return [res]


def strace_run(args, tmp_path, env=None):
    if not os.path.exists("/usr/bin/strace"):
        pytest.fail("strace is missing (Debian package strace; scripts/deps.sh should install it)")
    log = str(tmp_path / "strace.txt")
    traced = ",".join(sorted(set(FD_SYSCALLS) | {"close", "close_range", "execve"}))
    p = subprocess.run(["/usr/bin/strace", "-f", "-qq", "-k", "-s", "0", "-o", log,
                        "-e", "trace=" + traced, HELPER, *args],
                       capture_output=True, text=True, timeout=120,
                       env=helper_env() if env is None else env, stdin=subprocess.DEVNULL)
    return p, _strace_entries(log)


def _is_helper(frame, helper):
    return bool(frame) and os.path.realpath(frame) == helper


def cloexec_violations(entries):
    """(own, leaked): fd-creating calls from the helper's own code without the flag; fds that
    libraries created without it and that were still open when the helper exec'd COMMAND."""
    helper = os.path.realpath(HELPER)
    own, open_plain, leaked = [], {}, []
    for pid, name, args, res, frames in entries:
        if name == "execve" and res == 0 and _is_helper(_first_own_frame(frames), helper):
            # the helper exec'ing COMMAND (not strace starting the helper)
            if open_plain.get(pid):
                leaked += [f"fd {fd} from {what}" for fd, what in open_plain[pid].items()]
            open_plain[pid] = {}
            continue
        if name == "close" and res == 0:
            fd = int(args.split(",")[0]) if args.strip().isdigit() else None
            open_plain.get(pid, {}).pop(fd, None)
            continue
        if name == "close_range" or name not in FD_SYSCALLS or res < 0:
            continue
        fds = _fd_results(name, args, res)
        if not fds:
            continue
        flag = FD_SYSCALLS[name]
        if flag and re.search(flag, args):
            continue
        where = _first_own_frame(frames)
        what = f"{name}({args[:120]}) = {res} from {where or '?'}"
        if _is_helper(where, helper):
            own.append(what)
        else:
            for fd in fds:
                open_plain.setdefault(pid, {})[fd] = what
    return own, leaked


def _check(p, entries):
    assert p.returncode == 0, describe(p)
    helper = os.path.realpath(HELPER)
    assert any(e[1] == "execve" and e[3] == 0 and _is_helper(_first_own_frame(e[4]), helper)
               for e in entries), "strace saw no exec of COMMAND by the helper: -k not working?"
    opens = [e for e in entries if e[1] in ("open", "openat", "openat2") and e[3] >= 0]
    assert any(_is_helper(_first_own_frame(e[4]), helper) for e in opens), \
        "no open attributed to the helper: stack traces missing?"
    own, leaked = cloexec_violations(entries)
    assert not own, "fds the helper's own code created without CLOEXEC:\n  " + "\n  ".join(own)
    assert not leaked, "library fds without CLOEXEC still open at exec:\n  " + "\n  ".join(leaked)


@pytest.mark.parametrize("api", MOUNT_APIS)
def test_helper_creates_every_fd_cloexec(images, scratch, tmp_path, api):
    src = os.path.join(scratch, "src")
    os.mkdir(src)
    args = ["--mount-api", api, "--bind", f"{src}:/mnt/rw", "--ro-bind", f"{src}:/mnt/ro",
            "--tmpfs", "/mnt/t", "--rw-path", os.path.join(scratch, "rw"),
            "--unshare", "ipc,uts,net", images.layers, "--", "/bin/true"]
    _check(*strace_run(args, tmp_path))


def test_helper_creates_every_fd_cloexec_exported_layers(images, scratch, tmp_path):
    args = ["--layers", "export", "--cache-dir", os.path.join(scratch, "cache"),
            "--read-only", images.layers, "--", "/bin/true"]
    _check(*strace_run(args, tmp_path))


def test_the_strace_check_sees_what_it_is_for():
    """A plain open from the helper and a library fd left open at exec are both reported."""
    h = os.path.realpath(HELPER)
    entries = [
        ["1", "openat", 'AT_FDCWD, "x", O_RDONLY', 5, ["/usr/lib/libc.so.6", h]],
        ["1", "socket", "AF_UNIX, SOCK_STREAM, 0", 6, ["/usr/lib/libc.so.6", "/usr/lib/libcurl.so.4"]],
        ["1", "openat", 'AT_FDCWD, "y", O_RDONLY', 7, ["/usr/lib/libc.so.6", "/usr/lib/libcrypto.so.3"]],
        ["1", "close", "7", 0, []],
        ["1", "openat", 'AT_FDCWD, "z", O_RDONLY|O_CLOEXEC', 8, [h]],
        ["1", "execve", '"/bin/true"', 0, [h]],
    ]
    own, leaked = cloexec_violations(entries)
    assert len(own) == 1 and '"x"' in own[0], own
    assert len(leaked) == 1 and leaked[0].startswith("fd 6 from socket"), leaked
