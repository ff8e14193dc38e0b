#!/usr/bin/env bash
# Starts the prod topology, a production-like Keelson next to the lab:
# PostgreSQL (a private cluster in .cache/prod/pg), Temporal's databases and
# schemas, the Temporal server (all four services in one process), Keelson's
# namespace and search attributes, the Temporal Web UI server, moto with the
# artifacts bucket, and two Keelson workers. Running it again starts only
# what is not running. Build first: infra/prod/build.sh (make up-prod does
# both). Stop with infra/prod/down.sh (make down).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/services.sh"

start=$(date +%s%N)
prod_need_bin temporal-server temporal-sql-tool temporal-ui-server
[ -x "$TEMPORAL_CLI" ] || { echo "prod: $TEMPORAL_CLI is missing; run infra/prod/build.sh (make prod-build)" >&2; exit 1; }

# moto, a Python program and slow to start, starts while PostgreSQL and
# Temporal do; its lines are printed after theirs.
moto_out=$(mktemp "$PROD_DIR/up-moto.XXXXXX")
trap 'rm -f "$moto_out"' EXIT
prod_timed "moto" moto_start >"$moto_out" 2>&1 &
moto_job=$!
prod_timed "postgresql" pg_start
prod_timed "schema" pg_schema
prod_timed "temporal-server" temporal_start
prod_timed "namespace" temporal_namespace
prod_timed "temporal-ui-server" ui_start
moto_rc=0
wait "$moto_job" || moto_rc=$?
cat "$moto_out"
[ "$moto_rc" -eq 0 ] || exit "$moto_rc"
for w in "${PROD_WORKERS[@]}"; do
	prod_timed "worker-$w" worker_start "$w"
done

ms=$(( ($(date +%s%N) - start) / 1000000 ))
prod_log "up in $((ms / 1000)).$((ms % 1000 / 100))s"
cat <<EOT
prod: PostgreSQL    127.0.0.1:$PG_PORT  (user $PG_USER; databases temporal, temporal_visibility; data $PG_DATA)
prod: Temporal      $TEMPORAL_ADDRESS  (namespace $TEMPORAL_NAMESPACE; metrics http://127.0.0.1:$TEMPORAL_METRICS_PORT/metrics)
prod: Web UI        http://localhost:$UI_PORT
prod: S3 (moto)     $MOTO_URL  (bucket $S3_BUCKET)
prod: worker-a      http://127.0.0.1:${WORKER_HTTP_PORT[a]}  ($(worker_dir a))
prod: worker-b      http://127.0.0.1:${WORKER_HTTP_PORT[b]}  ($(worker_dir b))
prod: artifacts     $PROD_ARTIFACTS
prod: regions       $PROD_KUBECONFIG  (the lab's clusters: make up)
prod: logs          $PROD_LOGS
prod: try           TEMPORAL_ADDRESS=$TEMPORAL_ADDRESS bin/keelson release start -f infra/demo/release.yaml --version 1.0.0
EOT
