#!/usr/bin/env bash
# What of the prod topology runs, where, and its resident memory. Exits 1
# when something is not serving.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/services.sh"

rc=0
pg_status || rc=1
temporal_status || rc=1
ui_status || rc=1
moto_status || rc=1
for w in "${PROD_WORKERS[@]}"; do
	worker_status "$w" || rc=1
done
exit $rc
