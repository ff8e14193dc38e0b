#!/usr/bin/env bash
# Stops the prod topology (infra/prod/up.sh): the workers, the Web UI server,
# the Temporal server, moto and PostgreSQL, and checks that none of their
# processes is left. Succeeds when nothing runs. State stays in .cache/prod
# (PostgreSQL's data: the next up resumes); moto's bucket is in memory and
# made again at the next up.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/services.sh"

rc=0
for w in "${PROD_WORKERS[@]}"; do
	prod_timed "worker-$w" worker_stop "$w" || rc=1
done
prod_timed "temporal-ui-server" ui_stop || rc=1
prod_timed "temporal-server" temporal_stop || rc=1
prod_timed "moto" moto_stop || rc=1
# With no PostgreSQL installed there is no cluster to stop.
if [ -s "$PG_PID" ] || [ -s "$PG_DATA/postmaster.pid" ]; then
	prod_timed "postgresql" pg_stop || rc=1
fi

for ((i = 0; i < 50; i++)); do
	left=$(prod_pids)
	[ -z "$left" ] && break
	sleep 0.1
done
# Whatever of ours still runs is a bug in the steps above: say so, and end it.
if [ -n "$left" ]; then
	echo "prod: still running after down:" >&2
	for pid in $left; do echo "  $pid $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" >&2; done
	for pid in $left; do kill -KILL "$pid" 2>/dev/null || true; done
	rc=1
else
	prod_log "nothing of the prod topology is running"
fi
exit $rc
