#!/bin/bash
# make demo: build a small image offline and show uwsgi-docker-rootfs giving a process that image as
# its root, while the host's mount table stays as it was.
#   usage: scripts/demo.sh HELPER      (as root, with dockerd running: `make demo` sees to both)
set -euo pipefail

HELPER=${1:?usage: demo.sh HELPER}
IMAGE=uwsgi-docker-demo
TAG=$IMAGE:latest
DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER=docker

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
	exit 1
}

[ "$(id -u)" -eq 0 ] || die "run as root (make demo)"
[ -x "$HELPER" ] || die "$HELPER is not built (make)"
command -v "$DOCKER" >/dev/null || die "docker not found (make deps)"
[ -x /bin/busybox ] || die "/bin/busybox not found (package busybox-static)"

tmp=$(mktemp -d /tmp/uwsgi-docker-demo.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# --------------------------------------------------------------------------------------------------
heading "Build the demo image $TAG offline (FROM scratch + busybox-static)"
ctx=$tmp/context
mkdir -p "$ctx/etc"
cp /bin/busybox "$ctx/busybox"
echo "hello from inside the image $TAG" >"$ctx/etc/motd"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$ctx/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$ctx/etc/group"
cat >"$ctx/Dockerfile" <<'EOF'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY etc/ /etc/
ENV PATH=/bin GREETING="set by the image's ENV"
WORKDIR /srv/app
EOF
cat "$ctx/Dockerfile"
printf '$ DOCKER_BUILDKIT=0 %s build --network none -t %s CONTEXT\n' "$DOCKER" "$TAG"
DOCKER_BUILDKIT=0 "$DOCKER" build --network none -t "$TAG" "$ctx" >"$tmp/build.log" 2>&1 ||
	{ cat "$tmp/build.log" >&2; die "docker build failed"; }
tail -n 2 "$tmp/build.log"

# The host's mount table, to compare at the end (after the build: docker's own mounts are gone).
mounts_before=$tmp/mountinfo.before
cat /proc/self/mountinfo >"$mounts_before"

# --------------------------------------------------------------------------------------------------
heading "The plan: where the layers are and what would be mounted (--print changes nothing)"
printf '$ %s --print %s   (layer ids shortened)\n' "$HELPER" "$IMAGE"
"$HELPER" --print "$IMAGE" >"$tmp/plan.json" || die "--print failed with status $?"
/usr/bin/python3 - "$tmp/plan.json" <<'EOF' || die "--print did not give valid JSON"
import json, re, sys
plan = json.load(open(sys.argv[1]))
text = json.dumps(plan, indent=2)
# 64-hex layer ids and digests are long: keep the first 12 characters.
print(re.sub(r"\b([0-9a-f]{12})[0-9a-f]{52}\b", r"\1…", text))
EOF

# --------------------------------------------------------------------------------------------------
heading "Inside: a shell whose root is the image"
inside='echo "--- /etc/motd:"; cat /etc/motd
echo "--- ls /:"; ls /
echo "--- the root mount (/proc/self/mountinfo):"; grep " / " /proc/self/mountinfo
echo "--- id:"; id
echo "--- pwd (the image WORKDIR):"; pwd
echo "--- env (the image ENV):"; env | sort
echo "--- a write, to the tmpfs rw layer:"; echo scribble >/etc/motd && cat /etc/motd'
printf '$ %s %s -- /bin/sh -c '\''cat /etc/motd; ls /; grep " / " /proc/self/mountinfo; id; pwd; env; ...'\''\n' \
	"$HELPER" "$IMAGE"
status=0
"$HELPER" "$IMAGE" -- /bin/sh -c "$inside" || status=$?
[ "$status" -eq 0 ] || die "the helper exited with status $status"

heading "Again: the write is gone (the rw layer was a tmpfs of that namespace)"
printf '$ %s %s -- /bin/cat /etc/motd\n' "$HELPER" "$IMAGE"
"$HELPER" "$IMAGE" -- /bin/cat /etc/motd >"$tmp/motd" || die "second run failed"
cat "$tmp/motd"
grep -q "hello from inside the image" "$tmp/motd" || die "/etc/motd was not the image's"

heading "The exit status is the command's"
status=0
show "$HELPER" "$IMAGE" -- /bin/sh -c 'exit 7' || status=$?
echo "exit status: $status"
[ "$status" -eq 7 ] || die "expected 7, got $status"

heading "Errors: one line, a distinct exit status (65: image not found)"
status=0
show "$HELPER" uwsgi-docker-demo-no-such-image -- /bin/true || status=$?
echo "exit status: $status"
[ "$status" -eq 65 ] || die "expected 65, got $status"

# --------------------------------------------------------------------------------------------------
heading "The host's mount table is unchanged"
mounts_after=$tmp/mountinfo.after
cat /proc/self/mountinfo >"$mounts_after"
before=$(wc -l <"$mounts_before")
after=$(wc -l <"$mounts_after")
echo "mounts in /proc/self/mountinfo: before $before, after $after"
if ! cmp -s "$mounts_before" "$mounts_after"; then
	diff "$mounts_before" "$mounts_after" || true
	die "the host's mount table changed"
fi
echo "identical, line for line"

printf '\ndemo: OK\n'
