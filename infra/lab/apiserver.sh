#!/usr/bin/env bash
# One region's Kubernetes API server down and up again, for tests of an API
# server outage: stop | start | status REGION. Only kube-apiserver stops;
# etcd, the controller manager, the scheduler and kwok's controller keep
# running (those that exit while it is away, as the controller manager and
# the scheduler do when they lose their leader lease, start again with it).
#
#   stop REGION    stops the API server and returns once it no longer answers
#   start REGION   starts it and returns once its /readyz answers again
#   status REGION  says whether it runs and answers (exit 1 if not)
#
# kwokctl v0.8.0 has no command to stop or start one component. It runs
# each component of a cluster as a process whose pid it keeps in
# $KWOK_WORKDIR/clusters/NAME/pids/COMPONENT.pid, treats a component as
# running while that process exists, and `kwokctl start cluster` starts
# exactly the components that are not running. So stop ends the process in
# kube-apiserver.pid and removes the file (as kwokctl's own stop does), and
# start is `kwokctl start cluster`, which starts the API server again with
# the arguments, port and certificates it had.
#
# Environment, for a cluster other than the lab's (defaults in brackets):
#   KEELSON_LAB_DIR               the lab's state folder, whose kwok/ is
#                                 kwokctl's KWOK_WORKDIR [.cache/lab]
#   KEELSON_APISERVER_CLUSTER     the kwok cluster's name [REGION]
#   KEELSON_APISERVER_KUBECONFIG  kubeconfig to probe /readyz with
#                                 [$KEELSON_LAB_DIR/kubeconfig]
#   KEELSON_APISERVER_CONTEXT     its context [REGION]; empty: current context
#   KEELSON_APISERVER_TIMEOUT     seconds start and stop wait at most [120]
set -euo pipefail
source "$(dirname "$0")/lib.sh"

usage() { echo "usage: $0 stop|start|status REGION" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1 region=$2

CLUSTER=${KEELSON_APISERVER_CLUSTER:-$region}
PROBE_KUBECONFIG=${KEELSON_APISERVER_KUBECONFIG:-$LAB_KUBECONFIG}
PROBE_CONTEXT=${KEELSON_APISERVER_CONTEXT-$region}
TIMEOUT=${KEELSON_APISERVER_TIMEOUT:-120}
CLUSTER_DIR=$KWOK_WORKDIR/clusters/$CLUSTER
PIDS=$CLUSTER_DIR/pids
APISERVER_PID=$PIDS/kube-apiserver.pid
KWOKCTL_LOG=$LAB_DIR/kwokctl-$CLUSTER.log

if [ ! -d "$CLUSTER_DIR" ]; then
	echo "lab: no kwok cluster $CLUSTER in $KWOK_WORKDIR/clusters (run make up, or set KEELSON_APISERVER_CLUSTER)" >&2
	exit 1
fi

# api_ready: the API server answers /readyz through the kubeconfig context.
api_ready() {
	local ctx=()
	[ -n "$PROBE_CONTEXT" ] && ctx=(--context "$PROBE_CONTEXT")
	"$LAB_BIN/kubectl" --kubeconfig "$PROBE_KUBECONFIG" "${ctx[@]}" --request-timeout 2s \
		get --raw /readyz >/dev/null 2>&1
}

# apiserver_pid: the pid in kube-apiserver.pid when it is a live
# kube-apiserver (not a pid the kernel has since given to another program).
apiserver_pid() {
	pid_alive "$APISERVER_PID" || return 1
	local pid exe
	pid=$(cat "$APISERVER_PID")
	exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
	exe=${exe% (deleted)}
	[ "$(basename "$exe")" = kube-apiserver ] || return 1
	echo "$pid"
}

stop() {
	local pid i
	if ! pid=$(apiserver_pid); then
		rm -f "$APISERVER_PID"
		if api_ready; then
			echo "lab: an API server answers for $region, but $APISERVER_PID names no running kube-apiserver" >&2
			return 1
		fi
		lab_log "API server of $CLUSTER not running"
		return 0
	fi
	# SIGTERM first: the API server closes its connections and stops
	# listening; SIGKILL if it takes longer than 10s.
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		proc_running "$pid" || break
		sleep 0.1
	done
	if proc_running "$pid"; then
		lab_log "API server of $CLUSTER (pid $pid) ignored SIGTERM for 10s; sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		while proc_running "$pid"; do sleep 0.05; done
	fi
	# kwokctl takes a pid file for a running component, and a process
	# nobody reaps (a zombie) still counts for it: without the file, its
	# next start starts the API server.
	rm -f "$APISERVER_PID"
	for ((i = 0; i < TIMEOUT * 10; i++)); do
		api_ready || break
		sleep 0.1
	done
	if api_ready; then
		echo "lab: API server of $CLUSTER still answers ${TIMEOUT}s after pid $pid exited" >&2
		return 1
	fi
	lab_log "API server of $CLUSTER stopped (pid $pid); etcd and the other components still run"
}

start() {
	local f name restarted=() i
	if apiserver_pid >/dev/null && api_ready; then
		lab_log "API server of $CLUSTER already running (pid $(cat "$APISERVER_PID"))"
		return 0
	fi
	# A component that exited (or is a zombie) would keep its pid file, and
	# kwokctl would take it for running: forget it, so it starts too.
	for f in "$PIDS"/*.pid; do
		[ -e "$f" ] || continue
		name=$(basename "$f" .pid)
		if [ "$name" = kube-apiserver ]; then
			apiserver_pid >/dev/null || rm -f "$f"
		elif ! pid_alive "$f"; then
			rm -f "$f"
			restarted+=("$name")
		fi
	done
	[ ${#restarted[@]} -eq 0 ] || lab_log "also starting what exited while the API server was away: ${restarted[*]}"
	if ! "$LAB_BIN/kwokctl" start cluster --name "$CLUSTER" --timeout "${TIMEOUT}s" >>"$KWOKCTL_LOG" 2>&1; then
		echo "lab: kwokctl start cluster $CLUSTER failed; see $KWOKCTL_LOG:" >&2
		tail -20 "$KWOKCTL_LOG" >&2
		return 1
	fi
	for ((i = 0; i < TIMEOUT * 5; i++)); do
		api_ready && break
		sleep 0.2
	done
	if ! api_ready; then
		echo "lab: API server of $CLUSTER does not answer /readyz ${TIMEOUT}s after its start; see $CLUSTER_DIR/logs/kube-apiserver.log" >&2
		return 1
	fi
	lab_log "API server of $CLUSTER running (pid $(cat "$APISERVER_PID")) and ready"
}

status() {
	local pid
	if pid=$(apiserver_pid) && api_ready; then
		echo "apiserver $CLUSTER: ready (pid $pid)"
	elif [ -n "${pid:-}" ]; then
		echo "apiserver $CLUSTER: running (pid $pid) but /readyz does not answer"
		return 1
	else
		echo "apiserver $CLUSTER: stopped"
		return 1
	fi
}

need_bin kwokctl kubectl
case $action in
stop) lab_timed "apiserver $CLUSTER stop" stop ;;
start) lab_timed "apiserver $CLUSTER start" start ;;
status) status ;;
*) usage ;;
esac
