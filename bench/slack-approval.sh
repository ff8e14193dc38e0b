#!/usr/bin/env bash
# Measures the time from a signed Slack callback arriving at the worker to
# the release's next activity starting, over RELEASES x WAVES approvals
# (5 x 20 = 100 by default), on the local lab. Prints p50 / p95 / max.
#   make up && bench/slack-approval.sh
#   KEELSON_BENCH_RELEASES=1 KEELSON_BENCH_WAVES=100 bench/slack-approval.sh   # one release at a time
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
lab=$root/.cache/lab
cd "$root"
go build -o bin/keelson ./starter
go build -o bin/keelson-worker ./worker
KEELSON_BENCH=1 \
KEELSON_LAB=1 \
KEELSON_LAB_DIR=$lab \
KEELSON_LAB_BIN=$lab/bin \
KEELSON_LAB_SCRIPTS=$root/infra/lab \
KEELSON_BIN=$root/bin \
KEELSON_KUBECONFIG=$lab/kubeconfig \
KUBECONFIG=$lab/kubeconfig \
TEMPORAL_ADDRESS=${TEMPORAL_ADDRESS:-127.0.0.1:7233} \
TF_CLI_CONFIG_FILE=$lab/terraformrc \
PATH=$lab/bin:$root/bin:$PATH \
go test -tags bench -count=1 -timeout 30m -run '^TestSlackBenchApprovalLatency$' -v ./integration/ |
	grep -E 'slack_bench_test.go|^(--- |ok|FAIL)' | sed 's/^ *slack_bench_test.go:[0-9]*: //'
