#!/usr/bin/env bash
# Item 8 of issue 12: the cold build of the local stack, from an empty Go
# build cache, as a new machine runs it: `make build` (Keelson's four
# commands), then infra/lab/build.sh into an empty folder (the Temporal
# CLI, the clusters' seven commands, helm; Debian's packages and npm only
# where they are missing). The module cache is left as it is: downloads
# are not what is measured. Prints each figure with its target and writes
# them as JSON lines to .cache/bench/cold-build-UTCSTAMP.jsonl, as make
# bench does. Needs no lab; takes about 9 minutes on two cores, and about
# 6 GB of disk for the throwaway build cache, removed at the end.
#
#   bench/cold-build.sh
#
# The machine's own speed drifts by 20 % and more from one hour to the next
# here: compare runs made back to back.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=$root/.cache/bench
mkdir -p "$out"
json=$out/cold-build-$(date -u +%Y%m%dT%H%M%SZ).jsonl
: >"$json"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/keelson-cold-build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export GOCACHE=$tmp/gocache

figure() { # NAME VALUE UNIT MAX(or -) DETAIL
	local met=null verdict=""
	if [ "$4" != - ]; then
		met=true
		awk -v v="$2" -v m="$4" 'BEGIN { exit !(v <= m) }' || met=false
		verdict="(target ≤ $4: $([ $met = true ] && echo met || echo MISSED))"
	fi
	printf 'BENCH %-40s %12s %-8s  %s  %s\n' "$1" "$2" "$3" "$verdict" "$5"
	printf '{"name":"%s","value":%s,"unit":"%s","max":%s,"met":%s,"detail":"%s","cores":%d,"at":"%s"}\n' \
		"$1" "$2" "$3" "$([ "$4" = - ] && echo null || echo "$4")" "$met" "$5" "$(nproc)" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$json"
}

# timed NAME COMMAND...: runs COMMAND, its output in $out/cold-build-NAME.log,
# and sets wall and cpu (seconds, children's user+sys) for it.
timed() {
	local name=$1; shift
	local t0 c0 c1
	t0=$(date +%s%N)
	c0=$(awk '{ print $16 + $17 }' /proc/$$/stat)
	if ! "$@" >"$out/cold-build-$name.log" 2>&1; then
		echo "cold-build: $name failed; see $out/cold-build-$name.log" >&2
		exit 1
	fi
	c1=$(awk '{ print $16 + $17 }' /proc/$$/stat)
	wall=$(awk -v ns=$(( $(date +%s%N) - t0 )) 'BEGIN { printf "%.1f", ns / 1e9 }')
	cpu=$(awk -v t=$(( c1 - c0 )) -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t / hz }')
}

echo "cold-build: $(nproc) cores, $(go version | cut -d' ' -f3), commit $(git rev-parse --short HEAD 2>/dev/null || echo none); empty GOCACHE $GOCACHE"
timed make-build make --no-print-directory build
make_wall=$wall make_cpu=$cpu
timed lab-build infra/lab/build.sh "$tmp/bin"
lab_wall=$wall lab_cpu=$cpu
grep -E '^lab: built' "$out/cold-build-lab-build.log" | sed 's/^/cold-build: /'
figure cold_build.make_build "$make_wall" s - "make build from an empty build cache (CPU ${make_cpu} s)"
figure cold_build.lab_binaries "$lab_wall" s - "infra/lab/build.sh into an empty folder, after make build (CPU ${lab_cpu} s)"
figure cold_build.total "$(awk -v a="$make_wall" -v b="$lab_wall" 'BEGIN { printf "%.1f", a + b }')" s 600 \
	"the local stack's binaries from an empty build cache, $(nproc) cores (CPU $(awk -v a="$make_cpu" -v b="$lab_cpu" 'BEGIN { printf "%.0f", a + b }') s)"
echo "cold-build: figures in $json"
