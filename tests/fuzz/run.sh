#!/bin/bash
# `make fuzz`: replays every saved crash in tests/fuzz/regressions/<target>/, then runs each target
# for SECONDS (0: only the seed corpora, once). Fails if any input crashes a target; the input is
# saved under BUILD/crashes/<target>/ and its path printed.
# Usage: run.sh BUILD SECONDS TARGET...
set -uo pipefail

build=$1 seconds=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
failed=()

say() { printf 'fuzz: %s\n' "$*"; }

# The input libFuzzer saved, from its "Test unit written to PATH" line.
report_crash() { # target log what status
	local artifact
	artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$2" | tail -n 1)
	# Replayed files are not saved again: the one that failed is the last one started.
	[ -n "$artifact" ] || artifact=$(sed -n 's/^Running: //p' "$2" | tail -n 1)
	tail -n 60 "$2" | grep -v '^#[0-9]' >&2
	say "$1: $3 FAILED (exit $4); input: ${artifact:-none saved (see $2)}"
	failed+=("$1: ${artifact:-$2}")
}

mkdir -p "$build/logs"
for t in "$@"; do
	reg=$here/regressions/$t
	mapfile -t inputs < <(find "$reg" -type f ! -name '.*' 2>/dev/null | sort)
	[ ${#inputs[@]} -gt 0 ] || continue
	mkdir -p "$build/crashes/$t"
	log=$build/logs/$t-regressions.log
	if "$build/fuzz_$t" -artifact_prefix="$build/crashes/$t/" "${inputs[@]}" >"$log" 2>&1; then
		say "$t: ${#inputs[@]} regression input(s) replayed, none crashes"
	else
		report_crash "$t" "$log" "a regression input" $?
	fi
done

for t in "$@"; do
	work=$build/corpus/$t
	mkdir -p "$work" "$build/crashes/$t"
	# Not the regressions: replayed above already, and one large input would raise -max_len (the
	# largest seed) and slow the whole run down.
	seeds=()
	[ -d "$here/corpus/$t" ] && seeds+=("$here/corpus/$t")
	# The daemon's answers captured for the unit tests are the JSON target's seeds.
	[ "$t" = daemon_json ] && seeds+=("$root/tests/fixtures")
	opts=(-timeout=10 -print_final_stats=1 -artifact_prefix="$build/crashes/$t/")
	[ -f "$here/$t.dict" ] && opts+=(-dict="$here/$t.dict")
	if [ "$seconds" -gt 0 ]; then opts+=(-max_total_time="$seconds"); else opts+=(-runs=0); fi
	log=$build/logs/$t.log
	say "$t: running for ${seconds} s (log: $log)"
	if "$build/fuzz_$t" "${opts[@]}" "$work" "${seeds[@]}" >"$log" 2>&1; then
		runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
		rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
		cov=$(grep -o 'cov: [0-9]* ft: [0-9]* corp: [0-9/]*[a-zA-Z]*' "$log" | tail -n 1)
		say "$t: ${runs:-?} runs, ${rate:-?} exec/s, $cov, no crash"
	else
		report_crash "$t" "$log" "an input" $?
	fi
done

echo "[==========] $# fuzz target(s) run, ${seconds} s each."
if [ ${#failed[@]} -eq 0 ]; then
	echo "[  PASSED  ] $# fuzz target(s)."
	exit 0
fi
echo "[  FAILED  ] ${#failed[@]} fuzz target(s), listed below:"
for f in "${failed[@]}"; do echo "[  FAILED  ] $f"; done
say "commit each crash input into tests/fuzz/regressions/<target>/ once fixed (tests/fuzz/README)"
exit 1
