#!/bin/bash
# Mutation check: does the suite fail when the code is wrong?
#
#   tests/mutants/run.sh [--full] [NAME...]      (as root, dockerd running; not part of CI)
#
# For each mutant (all when no NAME is given): copies the working tree (tracked and untracked
# files, uncommitted changes included) to a scratch directory under /var/tmp, applies one
# realistic bug with tests/mutants/mutate.py (each edit must match exactly once, or the mutant is
# reported BROKEN instead of silently testing the unmutated code), builds, and runs the unit tests
# and the integration tests that cover it (--full: the whole integration suite, slow; the
# targeted run takes 1-3 minutes a mutant, most of it building the session's test images).
# A mutant is KILLED when a test fails, SURVIVED when everything passes. "none" is the
# unmutated copy: it must survive (it checks that the targeted tests pass at all).
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
full=0
if [ "${1:-}" = "--full" ]; then full=1; shift; fi
M="/usr/bin/python3 tests/mutants/mutate.py"
PY=/usr/bin/python3
I=tests/integration

# name | the tests that cover it (pytest arguments) ; the edit is in mutant_NAME below.
declare -A TESTS=(
	[none]="$I/test_hostile.py"
	[nosuid-root]="$I/test_hostile.py $I/test_inside.py"
	[opaque-unmarked]="$I/test_export.py -k test_export_matches_direct_docker"
	[nstype-unchecked]="$I/test_handoff.py"
	[recv-no-cloexec]="$I/test_cloexec.py $I/test_handoff.py"
	[sys-rw]="$I/test_inside.py $I/test_hostile.py"
	[diffid-unverified]="$I/test_export.py -k digest_mismatch"
	[no-uid-refusal]="$I/test_plugin.py -k uid_naming_root"
	[master-env-kept]="$I/test_plugin.py::test_image_env_never_steers_the_host_master $I/test_plugin.py::test_form1_reload_onto_retagged_image_without_failed_requests"
	[api-not-negotiated]="$I/test_errors.py"
	[dotdot-repository]="$I/test_errors.py"
	[resolve-not-in-root]="$I/test_hostile.py"
	[open-no-cloexec]="$I/test_cloexec.py"
	[abi-unchecked]="$I/test_packaging.py -k abi_check"
	[notify-by-path]="$I/test_systemd.py -k notify_socket"
	[notify-fd-inherited]="$I/test_systemd.py -k notify_socket"
	[smallw-follows-symlinks]="$I/test_hostile.py"
	[smallw-opens-existing]="$I/test_hostile.py"
)
ORDER="nosuid-root opaque-unmarked nstype-unchecked recv-no-cloexec sys-rw diffid-unverified
no-uid-refusal master-env-kept api-not-negotiated dotdot-repository resolve-not-in-root
open-no-cloexec abi-unchecked notify-by-path notify-fd-inherited smallw-follows-symlinks
smallw-opens-existing"

mutant_none() { :; }
# the small-file writers create through symlinks (a plain openat, nothing beneath the root).
mutant_smallw-follows-symlinks() {
	$M src/smallw.c '\.resolve = RESOLVE_BENEATH \| RESOLVE_NO_SYMLINKS\}' '.resolve = 0}'
}
# the small-file writers open a file already there (a hard link to a host file) and write it.
mutant_smallw-opens-existing() {
	$M src/smallw.c 'O_WRONLY \| O_CREAT \| O_EXCL \| O_NOFOLLOW' 'O_WRONLY | O_CREAT | O_TRUNC'
}
# nosuid dropped from the overlay root (both mount paths).
mutant_nosuid-root() {
	$M src/rootfs.c 'unsigned attrs = MOUNT_ATTR_NOSUID \| MOUNT_ATTR_NODEV;' \
		'unsigned attrs = MOUNT_ATTR_NODEV;' &&
	$M src/rootfs.c 'unsigned long flags = MS_NOSUID \| MS_NODEV \|' \
		'unsigned long flags = MS_NODEV |'
}
# opaque directories of an exported layer not marked.
mutant_opaque-unmarked() {
	$M src/export.c 'if \(fsetxattr\(dfd, "trusted\.overlay\.opaque", "y", 1, 0\) < 0\)' \
		'if (0)'
}
# the received fds' namespace type not compared with the header's.
mutant_nstype-unchecked() {
	$M src/handoff.c 'if \(nstype != h->types\[i\]\) \{' 'if (0 && nstype != h->types[i]) {'
}
# received namespace fds without close-on-exec.
mutant_recv-no-cloexec() {
	$M src/handoff.c 'recvmsg\(sock, &msg, MSG_CMSG_CLOEXEC\)' 'recvmsg(sock, &msg, 0)'
}
# /sys mounted read-write.
mutant_sys-rw() {
	$M src/rootfs.c '(new_fs\("sysfs", NULL,\s*)MOUNT_ATTR_RDONLY \| ' '\1'
}
# an exported layer whose digest is not the wanted diffID is taken anyway.
mutant_diffid-unverified() {
	$M src/export.c 'int idx = want_index\(w, hex\);' \
		'int idx = want_index(w, hex);
	for (size_t k = 0; idx < 0 && k < w->n; k++)
		if (!w->done[k]) {
			idx = (int)k;
			memcpy(hex, w->hex[k], HEX_LEN);
		}'
}
# the plugin no longer refuses to run app code as root when no uid is set.
mutant_no-uid-refusal() {
	$M hooks/docker/docker_plugin.c '(static void refuse_root\(void\)\n\{\n)' '\1\treturn;\n'
}
# the form-1 master keeps the image's Env instead of returning to the host's.
mutant_master-env-kept() {
	$M hooks/docker/docker_plugin.c '(static void restore_host_env\(void\)\n\{\n)' '\1\treturn;\n'
}
# the API version is not negotiated down to the daemon's.
mutant_api-not-negotiated() {
	$M src/docker.c 'const char \*use = ud_api_version_cmp\(theirs, UD_API_VERSION\) < 0 \? theirs : UD_API_VERSION;' \
		'const char *use = UD_API_VERSION;'
}
# ".." accepted as a path component of a repository name.
mutant_dotdot-repository() {
	$M src/docker.c '(static bool component_valid\(const char \*s, size_t n\)\n\{\n)' \
		'\1\tif (n == 2 && s[0] == 0x2e && s[1] == 0x2e)\n\t\treturn true;\n'
}
# the first lookup of a bind or tmpfs target no longer stays inside the new root.
mutant_resolve-not-in-root() {
	$M src/rootfs.c '(const char \*rel = path \+ 1;\n\tint fd = sys_openat2\(rootfd, rel, O_PATH \| O_CLOEXEC, )IN_ROOT\);' \
		'\1RESOLVE_NO_MAGICLINKS);'
}
# (a twelfth, beyond the issue's eleven) one of the helper's own opens without O_CLOEXEC:
# the final close_range(CLOSE_RANGE_CLOEXEC) hides it from COMMAND, test_cloexec.py must not.
mutant_open-no-cloexec() {
	$M src/rootfs.c 'ns->host_mnt = open\("/proc/self/ns/mnt", O_RDONLY \| O_CLOEXEC\);' \
		'ns->host_mnt = open("/proc/self/ns/mnt", O_RDONLY);'
}
# The plugin loads into any uWSGI: the recorded ABI is never compared.
mutant_abi-unchecked() {
	$M hooks/docker/abi.c 'if \(!strcmp\(running, UD_UWSGI_ABI\)\)' 'if (1)'
}
# Form 2 leaves uWSGI to notify systemd by path, from inside the image.
mutant_notify-by-path() {
	$M hooks/docker/form2.c '\tud_notify_connect\(\);' ''
}
# The connected notification socket stays open in the workers (the app can notify).
mutant_notify-fd-inherited() {
	$M hooks/docker/notify.c 'ud_closep\(&notify_fd\);' ''
}

names=("$@")
[ ${#names[@]} -eq 0 ] && names=(none $ORDER)
logs=/var/tmp/udmutants-$(date +%Y%m%d-%H%M%S)
mkdir -p "$logs"
results=()
for name in "${names[@]}"; do
	if [ -z "${TESTS[$name]+x}" ]; then echo "unknown mutant $name" >&2; exit 2; fi
	dir=$(mktemp -d /var/tmp/udmutant-XXXXXX)
	log=$logs/$name.log
	(cd "$here" && git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -xf - -C "$dir")
	cd "$dir"
	if ! "mutant_$name" >"$log" 2>&1; then
		results+=("$name BROKEN (the edit does not apply: $(tail -1 "$log"))")
		cd "$here"; rm -rf "$dir"; continue
	fi
	if ! make -j2 all >>"$log" 2>&1; then
		results+=("$name BROKEN (does not build; see $log)")
		cd "$here"; rm -rf "$dir"; continue
	fi
	# The unmutated copy runs every mutant's tests: they must all pass.
	if [ $name = none ]; then
		mapfile -t sets < <(printf '%s\n' "${TESTS[@]}" | sort -u)
	else
		sets=("${TESTS[$name]}")
	fi
	[ $full = 1 ] && sets=("$I")
	start=$(date +%s)
	make check-unit >>"$log" 2>&1; unit=$?
	failed=0
	for tests in "${sets[@]}"; do
		echo "== pytest $tests" >>"$log"
		UD_HELPER=$dir/build/uwsgi-docker-rootfs $PY -m pytest -q -p no:cacheprovider $tests \
			>>"$log" 2>&1 || failed=1
	done
	took=$(( $(date +%s) - start ))
	unit_failed=$(grep -E '\[  FAILED  \] [a-z]' "$log" | sed 's/.*\] //' | sort -u | tr '\n' ' ')
	py_failed=$(grep -E '^(FAILED|ERROR) ' "$log" | sed 's/ - .*//; s/^\(FAILED\|ERROR\) [^:]*:://' | sort -u)
	n_py=$(printf '%s' "$py_failed" | grep -c . )
	if [ $unit != 0 ] || [ $failed = 1 ]; then verdict=KILLED; else verdict=SURVIVED; fi
	results+=("$name $verdict (${took}s) unit: ${unit_failed:-none failed} | pytest: $n_py failed: $(printf '%s' "$py_failed" | head -3 | tr '\n' ' ')")
	echo "${results[-1]}"
	cd "$here"
	rm -rf "$dir"
done
echo "---- mutants (logs in $logs)"
printf '%s\n' "${results[@]}"
