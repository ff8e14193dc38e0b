#!/usr/bin/env bash
# Stops the local stack: the codec proxy, the worker, the traffic generator, Prometheus,
# moto, the clusters and the Temporal server, and
# checks that none of their processes is left. State stays in .cache/lab, so
# the next `make up` resumes (`make clean-lab` deletes it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"

rc=0
lab_timed "codec proxy" "$here/codecproxy.sh" stop || rc=1
lab_timed "worker" "$here/worker.sh" stop || rc=1
lab_timed "traffic" "$here/trafficgen.sh" stop || rc=1
lab_timed "prometheus" "$here/prometheus.sh" stop || rc=1
lab_timed "moto" "$here/moto.sh" stop || rc=1
if [ -x "$LAB_BIN/kwokctl" ]; then
	lab_timed "clusters" "$here/clusters.sh" stop || rc=1
fi
lab_timed "temporal" "$here/temporal.sh" stop || rc=1

# kwokctl signals its components and returns; give them a moment to exit.
for ((i = 0; i < 100; i++)); do
	left=$(lab_pids)
	[ -z "$left" ] && break
	sleep 0.1
done
# Whatever of ours still runs is a bug in the steps above: say so, and end it.
if [ -n "$left" ]; then
	echo "lab: still running after down:" >&2
	for pid in $left; do echo "  $pid $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" >&2; done
	for pid in $left; do kill -KILL "$pid" 2>/dev/null || true; done
	rc=1
else
	lab_log "nothing of the lab is running"
fi
exit $rc
