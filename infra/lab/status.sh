#!/usr/bin/env bash
# Says what of the local stack runs, and how much memory it holds.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"

rc=0
"$here/temporal.sh" status || rc=1
"$here/clusters.sh" status || rc=1
"$here/moto.sh" status || rc=1
"$here/prometheus.sh" status || rc=1
"$here/trafficgen.sh" status || rc=1
"$here/worker.sh" status || rc=1
"$here/codecproxy.sh" status || rc=1

# Resident memory of every lab process (RSS, from /proc), by binary.
pids=$(lab_pids)
if [ -n "$pids" ]; then
	total=0
	declare -A by
	for pid in $pids; do
		rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || continue
		[ -n "$rss" ] || continue
		name=$(basename "$(readlink "/proc/$pid/exe" 2>/dev/null || echo unknown)")
		by[$name]=$(( ${by[$name]:-0} + rss ))
		total=$((total + rss))
	done
	for name in "${!by[@]}"; do
		printf 'memory: %-24s %6d MB\n' "$name" $(( ${by[$name]} / 1024 ))
	done | sort
	printf 'memory: %-24s %6d MB (RSS sum of %d processes)\n' total $((total / 1024)) "$(echo $pids | wc -w)"
fi
exit $rc
