#!/bin/bash
# Installs the Debian 12 packages that uwsgi-docker-rootfs and the uWSGI docker plugin need to build,
# test, demo and bench, and starts dockerd if none answers. Idempotent and quick when there is nothing
# to do: packages are checked with dpkg-query first, and apt-get (update included) runs only for
# missing ones.
# Must run as root. Prints one line per action.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
export NEEDRESTART_SUSPEND=1  # no needrestart prompts or noise

PACKAGES=(
	# build (curl: the daemon check below)
	curl build-essential pkg-config strace libcurl4-openssl-dev libjson-c-dev libmount-dev
	# tests, docs, formatting (libclang-rt-14-dev: clang's libFuzzer and sanitizer runtimes, which
	# clang only recommends; gcc's ASan/UBSan come with build-essential)
	libcmocka-dev python3-pytest mandoc clang libclang-rt-14-dev clang-format
	# the daemon, test images, nsenter/unshare
	docker.io busybox-static util-linux
	# real uWSGI for the plugin tests; systemd's socket activation and ss for the systemd tests
	# (systemd-socket-activate; systemd does not need to run); Debian's Emperor package
	uwsgi-core uwsgi-plugin-python3 systemd iproute2 uwsgi-emperor
	# make deb: Debian packages (dh_uwsgi: the plugin's uwsgi-abi dependency), lintian
	dpkg-dev debhelper uwsgi-dev lintian
	# headers for building the uWSGI docker plugin (uwsgi --build-plugin)
	python3-dev libcap-dev libpcre3-dev libssl-dev libxml2-dev libjansson-dev zlib1g-dev uuid-dev
	# realistic test images (a Debian 12 root from the apt mirror)
	mmdebstrap
	# image tarballs (libarchive), Podman's Docker-compatible API for the Podman tests
	libarchive-dev podman
	# a real registry for the pull tests (docker-registry's postinst may fail: the binary is there)
	docker-registry apache2-utils
	# make bench: HTTP load generator for the uWSGI requests-per-second figures
	wrk
	# make bench: the Flask app of the rollout bench, under plain uWSGI on the host
	python3-flask
)

DOCKER_SOCK=/var/run/docker.sock
DOCKERD_LOG=/var/log/uwsgi-docker-dockerd.log

say() { printf 'deps: %s\n' "$*"; }
die() { printf 'deps: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (apt-get and dockerd)"

# --- packages -----------------------------------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$status" = installed ] && continue
	# docker-registry's postinst may fail (a system uid it wants is taken): its binary is enough.
	[ "$p" = docker-registry ] && [ -x /usr/bin/docker-registry ] && continue
	missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
	say "all ${#PACKAGES[@]} packages already installed"
else
	say "installing ${#missing[@]} missing package(s): ${missing[*]}"
	# Packages must not start their services (docker.io's init script would start a dockerd with
	# default options): this script starts the one it needs below. Only if no policy is set.
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	say "apt-get update"
	apt-get update -qq </dev/null
	say "apt-get install"
	apt-get install -y -qq "${missing[@]}" </dev/null >/dev/null ||
		[ -x /usr/bin/docker-registry ] || die "apt-get install failed"
	say "installed: ${missing[*]}"
fi

# --- dockerd ------------------------------------------------------------------------------------
docker_ping() {
	[ "$(curl -s --max-time 2 --unix-socket "$DOCKER_SOCK" http://d/_ping 2>/dev/null)" = OK ]
}

if docker_ping; then
	say "dockerd answers on $DOCKER_SOCK"
	exit 0
fi

# No systemd on these machines: start the daemon ourselves, detached from this shell (own session,
# no inherited stdin/stdout, so make or CI never waits on it), with its log in a file.
command -v dockerd >/dev/null || die "dockerd not found (package docker.io)"
say "starting dockerd --iptables=false --bridge=none (log: $DOCKERD_LOG)"
nohup setsid dockerd --iptables=false --bridge=none </dev/null >>"$DOCKERD_LOG" 2>&1 &

for _ in $(seq 1 60); do
	if docker_ping; then
		say "dockerd answers on $DOCKER_SOCK"
		exit 0
	fi
	sleep 0.5
done
tail -n 20 "$DOCKERD_LOG" >&2 || true
die "dockerd did not answer on $DOCKER_SOCK within 30 s (see $DOCKERD_LOG)"
