#!/usr/bin/env bash
# Starts the local stack: builds what is missing, then the Temporal dev
# server, one kwok cluster per region, the signals of progressive delivery
# (moto's AWS APIs with the lab's zone, records and alarms, Prometheus, the
# traffic generator), the Keelson worker and the Web UI's codec proxy.
# Running it again starts only what is not running. State lives in
# .cache/lab.
# Set KEELSON_LAB_NO_WORKER=1 to start everything but the worker.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"

start=$(date +%s%N)
lab_timed "build (skips what is built)" "$here/build.sh" "$LAB_BIN"
# moto, a Python program and the slowest of the three to start, starts
# while Temporal and the clusters do; its lines are printed after theirs.
moto_out=$(mktemp "$LAB_DIR/up-moto.XXXXXX")
trap 'rm -f "$moto_out"' EXIT
lab_timed "moto" "$here/moto.sh" start >"$moto_out" 2>&1 &
moto_job=$!
lab_timed "temporal" "$here/temporal.sh" start
lab_timed "clusters" "$here/clusters.sh" start
moto_rc=0
wait "$moto_job" || moto_rc=$?
cat "$moto_out"
[ "$moto_rc" -eq 0 ] || exit "$moto_rc"
# moto starts empty; setup leaves what exists alone (a running release's
# weights), so it runs at every up.
lab_timed "traffic setup" "$here/trafficgen.sh" setup
lab_timed "prometheus" "$here/prometheus.sh" start
lab_timed "traffic" "$here/trafficgen.sh" start
if [ "${KEELSON_LAB_NO_WORKER:-}" = 1 ]; then
	lab_log "worker not started (KEELSON_LAB_NO_WORKER=1)"
else
	lab_timed "worker" "$here/worker.sh" start
fi
lab_timed "codec proxy" "$here/codecproxy.sh" start
ms=$(( ($(date +%s%N) - start) / 1000000 ))
lab_log "up in $((ms / 1000)).$((ms % 1000 / 100))s"
cat <<EOT
lab: Temporal      $TEMPORAL_ADDRESS  (Web UI http://localhost:$TEMPORAL_UI_PORT, decoding through $CODECPROXY_URL)
lab: payload key   KEELSON_CODEC_KEYS=$LAB_CODEC_KEYS  (the keelson CLI needs it: payloads are encrypted)
lab: kubeconfig    $LAB_KUBECONFIG  (contexts ${LAB_REGIONS[*]})
lab: AWS (moto)    $MOTO_URL  (Route 53 zone $LAB_ZONE, CloudWatch; ${LAB_AWS_ENV[*]})
lab: Prometheus    $PROMETHEUS_URL  (KEELSON_PROMETHEUS_URL)
lab: traffic       $TRAFFIC_URL  (/metrics, /targets, /app/APP/REGION/SIDE; $TRAFFIC_RPS requests/s per application and region)
lab: binaries      $LAB_BIN
lab: logs          $LAB_DIR/*.log
EOT
