#!/bin/bash
# make demo: serve a Python app from a Docker image with uWSGI and the docker plugin (form 1,
# `docker-image`), reload onto a re-tagged image, stop, and show that the host's mount table is as
# it was. First, briefly, the helper on its own.
#   usage: scripts/demo.sh HELPER      (as root, with dockerd running: `make demo` sees to both;
#                                       the plugin, docker_plugin.so, is next to HELPER)
set -euo pipefail

HELPER=${1:?usage: demo.sh HELPER}
BUILD_DIR=$(cd "$(dirname "$HELPER")" && pwd)
PLUGIN=$BUILD_DIR/docker_plugin.so
REPO=uwsgi-docker-demo-app
V1=$REPO:v1 V2=$REPO:v2 LATEST=$REPO:latest
DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER=docker
UWSGI=/usr/bin/uwsgi
PY=/usr/bin/python3
PYLIB=/usr/lib/python3.11 # what Debian's python3 plugin embeds: the image must carry it
READY_TIMEOUT=30          # seconds, each wait below is bounded
STOP_TIMEOUT=20

step=0
bold='' plain=''
if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; fi
heading() {
	step=$((step + 1))
	printf '\n%s=== %d. %s%s\n' "$bold" "$step" "$*" "$plain"
}
quote() { # words as a shell would need them typed
	local w out=
	for w in "$@"; do
		if [[ $w =~ ^[A-Za-z0-9_./:=+,@%-]+$ ]]; then out+=" $w"; else out+=" '${w//\'/\'\\\'\'}'"; fi
	done
	printf '%s' "${out# }"
}
show() { # show a command, then run it
	printf '$ %s\n' "$(quote "$@")"
	"$@"
}
die() {
	printf '\ndemo: FAILED: %s\n' "$*" >&2
	if [ -n "${log:-}" ] && [ -s "$log" ]; then
		printf -- '--- last lines of the uWSGI log:\n' >&2
		tail -n 25 "$log" >&2
	fi
	exit 1
}

[ "$(id -u)" -eq 0 ] || die "run as root (make demo)"
[ -x "$HELPER" ] || die "$HELPER is not built (make)"
[ -f "$PLUGIN" ] || die "$PLUGIN is not built (make)"
command -v "$DOCKER" >/dev/null || die "docker not found (make deps)"
[ -x "$UWSGI" ] || die "$UWSGI not found (package uwsgi-core)"
[ -x /bin/busybox ] || die "/bin/busybox not found (package busybox-static)"
[ -d "$PYLIB" ] || die "$PYLIB not found (package uwsgi-plugin-python3)"

# --- processes: uWSGI runs in its own session, whose id is the master's pid -----------------------
upid=
session_pids() { # every live process of the session $1 (zombies excluded)
	local f stat fields
	for f in /proc/[0-9]*/stat; do
		{ read -r stat <"$f"; } 2>/dev/null || continue
		read -r -a fields <<<"${stat##*) }" # state ppid pgrp session ...
		[ "${fields[3]}" = "$1" ] && [ "${fields[0]}" != Z ] && printf '%s\n' "${f//[^0-9]/}"
	done
	return 0
}
alive() { # $1 is running (not gone, not a zombie)
	local stat
	{ read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
	stat=${stat##*) }
	[ "${stat%% *}" != Z ]
}
kill_leftovers() { # SIGKILL, by pid, whatever of our uWSGI session is still there
	[ -n "$upid" ] || return 0
	local p
	for p in $(session_pids "$upid"); do kill -KILL "$p" 2>/dev/null || true; done
	wait "$upid" 2>/dev/null || true
	upid=
}

tmp=$(mktemp -d /tmp/uwsgi-docker-demo.XXXXXX)
log=
cleanup() {
	kill_leftovers
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --------------------------------------------------------------------------------------------------
heading "Build the demo images $V1 and $V2 offline"
echo "FROM scratch + busybox-static + the host's $PYLIB + a WSGI app; v2 differs from v1 only in"
echo "/srv/version, so everything else comes from the build cache."
ctx=$tmp/context
mkdir -p "$ctx/etc"
cp /bin/busybox "$ctx/busybox"
cp -al "$PYLIB" "$ctx/python3.11" 2>/dev/null || cp -a "$PYLIB" "$ctx/python3.11" # hard links: no copy
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$ctx/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$ctx/etc/group"
cat >"$ctx/app.py" <<'EOF'
# The demo app: says which image it was loaded from and what it sees around it.
import os
import sys


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as e:
        return "(%s)" % type(e).__name__


def _root_fstype():
    # The last mount on / in this process's mount namespace, and its filesystem type.
    fstype = "?"
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, post = line.split(" - ", 1)
            if pre.split()[4] == "/":
                fstype = post.split()[0]
    return fstype


def application(environ, start_response):
    lines = [
        "Hello from %s:%s" % (os.environ.get("DEMO_IMAGE", "(no image Env)"),
                              _read("/srv/version")),
        "  worker pid %d, uid %d, gid %d" % (os.getpid(), os.getuid(), os.getgid()),
        "  root filesystem: %s, mount namespace %s" % (_root_fstype(),
                                                       os.readlink("/proc/self/ns/mnt")),
        "  the host's /usr/bin/uwsgi visible here: %s" % os.path.exists("/usr/bin/uwsgi"),
        "  Python %s, stdlib from %s (in the image)" % (sys.version.split()[0],
                                                         os.path.dirname(os.__file__)),
    ]
    body = ("\n".join(lines) + "\n").encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
EOF
cat >"$ctx/Dockerfile" <<'EOF'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY etc/ /etc/
COPY python3.11 /usr/lib/python3.11
COPY app.py /srv/app.py
ENV PATH=/bin DEMO_IMAGE=uwsgi-docker-demo-app
WORKDIR /srv
COPY version /srv/version
EOF
cat "$ctx/Dockerfile"
for v in v1 v2; do
	echo "$v" >"$ctx/version"
	printf '$ DOCKER_BUILDKIT=0 %s build --network none -t %s CONTEXT\n' "$DOCKER" "$REPO:$v"
	DOCKER_BUILDKIT=0 "$DOCKER" build --network none -t "$REPO:$v" "$ctx" >"$tmp/build.log" 2>&1 ||
		{ cat "$tmp/build.log" >&2; die "docker build of $REPO:$v failed"; }
	printf '  %s of %s steps from the build cache; %s\n' \
		"$(grep -c 'Using cache' "$tmp/build.log" || true)" \
		"$(grep -o '^Step [0-9]*/[0-9]*' "$tmp/build.log" | tail -n 1 | cut -d/ -f2)" \
		"$(grep -E '^Successfully built' "$tmp/build.log" || echo built)"
done
rm -rf "$ctx"
show "$DOCKER" tag "$V1" "$LATEST"

# The host's mount table, to compare at the end. dockerd mounts and unmounts container roots under
# its own directories whenever anyone builds an image: those lines are left out.
host_mounts() {
	awk '$5 !~ "^(/var/lib/docker|/run/docker|/var/run/docker)/"' /proc/self/mountinfo
}
mounts_before=$tmp/mountinfo.before
host_mounts >"$mounts_before"

# --------------------------------------------------------------------------------------------------
heading "The helper on its own: a shell whose root is the image"
# shellcheck disable=SC2016 # $5 and the like are awk's, inside the image
show "$HELPER" "$LATEST" -- /bin/sh -c 'cat /srv/version; id; echo / holds $(ls /); awk '\''$5 == "/" { t = $(NF - 2); n = gsub(/lowerdir/, ""); print "/ is", t, "over", n, "lower dirs" }'\'' /proc/self/mountinfo' ||
	die "the helper failed (status $?)"

# --------------------------------------------------------------------------------------------------
heading "uWSGI with docker-image: the master stays on the host, the workers live in the image"
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ini=$tmp/demo.ini
reload=$tmp/reload
pidfile=$tmp/uwsgi.pid
log=$tmp/uwsgi.log
# uWSGI compares touch files' mtimes in whole seconds: start with one in the past, so that a touch
# within the first second is seen.
touch -d '1 minute ago' "$reload"
cat >"$ini" <<EOF
[uwsgi]
plugin-dir = $BUILD_DIR
plugins = python3,docker
master = true
processes = 2
http-socket = 127.0.0.1:$port
docker-image = $LATEST
docker-helper = $HELPER
uid = nobody
gid = nogroup
wsgi-file = /srv/app.py
touch-reload = $reload
pidfile = $pidfile
disable-logging = true
EOF
echo "--- $ini (the app's paths are image paths, the rest host paths):"
cat "$ini"
printf '$ %s --ini %s   (in the background, log in %s)\n' "$UWSGI" "$ini" "$log"
setsid "$UWSGI" --ini "$ini" </dev/null >"$log" 2>&1 &
upid=$!

get() { # GET / on the instance: the body on stdout, non-zero on any failure
	curl -sS --fail --max-time 10 "http://127.0.0.1:$port/"
}
now_ms() { local t; t=$(date +%s%N); printf '%s' $((t / 1000000)); }
wait_answer() { # until an answer contains $1 (bounded); sets secs, n (requests) and failed
	local want=$1 t0 body
	t0=$(now_ms) n=0 failed=0
	while :; do
		alive "$upid" || die "uWSGI exited"
		n=$((n + 1))
		if body=$(get 2>/dev/null); then
			[[ $body == *"$want"* ]] && break
		else
			failed=$((failed + 1))
		fi
		(($(now_ms) - t0 < READY_TIMEOUT * 1000)) || die "no answer with '$want' within $READY_TIMEOUT s"
		sleep 0.05
	done
	t0=$(($(now_ms) - t0))
	secs=$(printf '%d.%02d' $((t0 / 1000)) $((t0 % 1000 / 10)))
}
wait_answer ":v1"
echo "first answer after ${secs} s; the plugin's log lines:"
grep -F '[docker]' "$log" | sed 's/^/  /'
echo "master (host):    pid $upid, mount namespace $(readlink "/proc/$upid/ns/mnt")"

heading "A request: answered from inside the image"
show curl -sS --fail --max-time 10 "http://127.0.0.1:$port/" || die "the request failed"
body=$(get) || die "the request failed"
[[ $body == *"uid 65534"* ]] || die "the app does not run as nobody (65534)"
[[ $body == *"root filesystem: overlay"* ]] || die "the app's root is not the image's overlay"
[[ $body == *"/usr/bin/uwsgi visible here: False"* ]] || die "the app sees the host's files"
[[ $body != *"$(readlink "/proc/$upid/ns/mnt")"* ]] || die "the app is in the master's namespace"

# --------------------------------------------------------------------------------------------------
heading "Re-tag :latest to v2 and reload (touch-reload): the master re-resolves the image"
show "$DOCKER" tag "$V2" "$LATEST"
show touch "$reload"
wait_answer ":v2"
echo "answers switched to v2 after ${secs} s: $n requests meanwhile, $failed failed"
[ "$failed" -eq 0 ] || die "$failed requests failed during the reload"
grep -F '[docker] image' "$log" | tail -n 1 | sed 's/^/  /'

heading "The same request again"
show curl -sS --fail --max-time 10 "http://127.0.0.1:$port/" || die "the request failed"
held=$(find "/proc/$upid/fd" -mindepth 1 -maxdepth 1 -lname 'mnt:*' -printf '%l\n' 2>/dev/null | sort -u)
echo "the master holds one mount namespace for its workers, the new one: ${held:-none}"
echo "(v1's is gone with its workers, so the kernel may give the new one the same number)"
[ "$(printf '%s\n' "$held" | grep -c 'mnt:')" -eq 1 ] || die "the master holds ${held//$'\n'/ }"

# --------------------------------------------------------------------------------------------------
heading "Stop uWSGI (SIGINT to the master)"
# With lazy-apps each worker loads the app after fork. A SIGINT that reaches a worker in the middle
# of Python's import becomes a KeyboardInterrupt there and delays the shutdown: wait until every
# spawned worker has logged its app as ready.
deadline=$((SECONDS + READY_TIMEOUT))
while (($(grep -c 'spawned uWSGI worker' "$log") > $(grep -c 'WSGI app 0 .* ready' "$log"))); do
	((SECONDS < deadline)) || die "workers did not load the app within $READY_TIMEOUT s"
	sleep 0.1
done
mpid=$(<"$pidfile")
[ "$mpid" = "$upid" ] || die "pidfile says $mpid, expected $upid"
show kill -INT "$mpid"
deadline=$((SECONDS + STOP_TIMEOUT))
while alive "$upid"; do
	((SECONDS < deadline)) || die "uWSGI did not stop within $STOP_TIMEOUT s of SIGINT"
	sleep 0.1
done
status=0
wait "$upid" || status=$?
tail -n 3 "$log" | sed 's/^/  /'
echo "uWSGI exited with status $status"
deadline=$((SECONDS + 5))
while [ -n "$(session_pids "$upid")" ]; do
	((SECONDS < deadline)) || die "processes left after the master exited: $(session_pids "$upid" | xargs)"
	sleep 0.1
done
echo "no process of the instance is left"
upid=

# --------------------------------------------------------------------------------------------------
heading "The host's mount table is unchanged"
mounts_after=$tmp/mountinfo.after
host_mounts >"$mounts_after"
echo "mounts in /proc/self/mountinfo (dockerd's own left out): before $(wc -l <"$mounts_before"), after $(wc -l <"$mounts_after")"
if ! cmp -s "$mounts_before" "$mounts_after"; then
	diff "$mounts_before" "$mounts_after" || true
	die "the host's mount table changed"
fi
echo "identical, line for line"

printf '\ndemo: OK\n'
