#!/usr/bin/env bash
# Starts the local stack: builds what is missing, then the Temporal dev
# server, one kwok cluster per region, and the Keelson worker. Running it
# again starts only what is not running. State lives in .cache/lab.
# Set KEELSON_LAB_NO_WORKER=1 to start everything but the worker.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"

start=$(date +%s%N)
lab_timed "build (skips what is built)" "$here/build.sh" "$LAB_BIN"
lab_timed "temporal" "$here/temporal.sh" start
lab_timed "clusters" "$here/clusters.sh" start
if [ "${KEELSON_LAB_NO_WORKER:-}" = 1 ]; then
	lab_log "worker not started (KEELSON_LAB_NO_WORKER=1)"
else
	lab_timed "worker" "$here/worker.sh" start
fi
ms=$(( ($(date +%s%N) - start) / 1000000 ))
lab_log "up in $((ms / 1000)).$((ms % 1000 / 100))s"
cat <<EOT
lab: Temporal      $TEMPORAL_ADDRESS  (Web UI http://localhost:$TEMPORAL_UI_PORT)
lab: kubeconfig    $LAB_KUBECONFIG  (contexts ${LAB_REGIONS[*]})
lab: binaries      $LAB_BIN
lab: logs          $LAB_DIR/*.log
EOT
