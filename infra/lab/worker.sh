#!/usr/bin/env bash
# The lab's Keelson worker (bin/keelson-worker, built by `make build`):
# start | stop | restart | kill9 | status. kill9 is SIGKILL without any
# cleanup, for tests that prove a release survives the loss of its worker.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

WORKER_BIN=${KEELSON_WORKER_BIN:-$LAB_ROOT/bin/keelson-worker}
TASK_QUEUE=${KEELSON_TASK_QUEUE:-keelson}
# The worker serves /healthz and /readyz here; ready means it polls its task
# queue and Temporal answers.
HTTP_PORT=${KEELSON_WORKER_HTTP_PORT:-8095}
# Go's profiler of the worker (/debug/pprof/, loopback only), for make
# bench and for looking at where the worker's time goes.
PPROF_PORT=${KEELSON_WORKER_PPROF_PORT:-8099}

# worker_ready: GET /readyz answers 200 (bash's /dev/tcp: no curl needed).
worker_ready() {
	local status
	status=$(
		exec 2>/dev/null
		exec 3<>"/dev/tcp/127.0.0.1/$HTTP_PORT" || exit 1
		printf 'GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
		head -1 <&3
	) || return 1
	[[ $status == "HTTP/1."?" 200"* ]]
}

start() {
	if [ ! -x "$WORKER_BIN" ]; then
		echo "lab: $WORKER_BIN is missing; run make build" >&2
		return 1
	fi
	if pid_alive "$WORKER_PID"; then
		lab_log "worker already running (pid $(cat "$WORKER_PID"))"
		return 0
	fi
	# Another worker answering on our probe port would pass for ours.
	if port_open "$HTTP_PORT"; then
		echo "lab: port $HTTP_PORT is taken by a process that is not the lab's worker (no live $WORKER_PID); stop it or set KEELSON_WORKER_HTTP_PORT" >&2
		return 1
	fi
	mkdir -p "$WORKER_ARTIFACTS" "$WORKER_WORKDIR"
	# An empty CLI config keeps Terraform from warning about ~/.terraformrc
	# and from using whatever a person has configured there.
	[ -f "$TF_CLI_CONFIG" ] || : >"$TF_CLI_CONFIG"
	lab_codec_secrets
	# Flags and environment both, so the worker finds its settings whichever
	# it reads; setsid keeps it out of the caller's process group. The AWS
	# APIs (Route 53, CloudWatch, ELBv2) are moto's, and the Prometheus of
	# analysis checks is the lab's (see lib.sh).
	KEELSON_PROMETHEUS_URL=$PROMETHEUS_URL \
	TEMPORAL_ADDRESS=$TEMPORAL_ADDRESS \
	KUBECONFIG=$LAB_KUBECONFIG \
	KEELSON_ARTIFACTS=$WORKER_ARTIFACTS \
	KEELSON_WORK_DIR=$WORKER_WORKDIR \
	KEELSON_HTTP_ADDR=127.0.0.1:$HTTP_PORT \
	KEELSON_PPROF_ADDR=127.0.0.1:$PPROF_PORT \
	TF_CLI_CONFIG_FILE=$TF_CLI_CONFIG \
	KEELSON_CODEC_KEYS=$LAB_CODEC_KEYS \
	KEELSON_CODEC_TOKEN_FILE=$LAB_CODEC_TOKEN \
	env "${LAB_AWS_ENV[@]}" setsid "$WORKER_BIN" \
		--temporal-address "$TEMPORAL_ADDRESS" \
		--namespace default \
		--task-queue "$TASK_QUEUE" \
		--artifacts "$WORKER_ARTIFACTS" \
		--work-dir "$WORKER_WORKDIR" \
		--kubeconfig "$LAB_KUBECONFIG" \
		>>"$WORKER_LOG" 2>&1 </dev/null &
	echo $! >"$WORKER_PID"
	local i
	for ((i = 0; i < 600; i++)); do
		if ! pid_alive "$WORKER_PID"; then
			echo "lab: worker exited at start; last lines of $WORKER_LOG:" >&2
			tail -20 "$WORKER_LOG" >&2
			rm -f "$WORKER_PID"
			return 1
		fi
		worker_ready && break
		sleep 0.1
	done
	if ! worker_ready; then
		echo "lab: worker (pid $(cat "$WORKER_PID")) not ready on http://127.0.0.1:$HTTP_PORT/readyz within 60s; see $WORKER_LOG" >&2
		return 1
	fi
	lab_log "worker running on task queue $TASK_QUEUE (pid $(cat "$WORKER_PID"), log $WORKER_LOG)"
}

stop() {
	stop_pid "$WORKER_PID" worker 15
}

kill9() {
	if ! pid_alive "$WORKER_PID"; then
		echo "lab: worker is not running" >&2
		return 1
	fi
	local pid; pid=$(cat "$WORKER_PID")
	kill -KILL "$pid"
	while proc_running "$pid"; do sleep 0.05; done
	# Other threads of a killed process can hold its port a moment longer
	# than its main thread lives: a start right after would find it taken.
	local i=0
	while port_open "$HTTP_PORT" && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
	rm -f "$WORKER_PID"
	lab_log "worker killed with SIGKILL (pid $pid)"
}

status() {
	if pid_alive "$WORKER_PID" && worker_ready; then
		echo "worker: ready (pid $(cat "$WORKER_PID")), log $WORKER_LOG"
	elif pid_alive "$WORKER_PID"; then
		echo "worker: running (pid $(cat "$WORKER_PID")) but not ready; see $WORKER_LOG"
		return 1
	else
		echo "worker: stopped"
		return 1
	fi
}

case ${1:-} in
start) lab_timed "worker start" start ;;
stop) lab_timed "worker stop" stop ;;
restart) stop; lab_timed "worker start" start ;;
kill9) kill9 ;;
status) status ;;
*) echo "usage: $0 start|stop|restart|kill9|status" >&2; exit 2 ;;
esac
