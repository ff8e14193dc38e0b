#!/usr/bin/env bash
# One region's Kubernetes API server down and up again, for tests of an API
# server outage: stop | start | status REGION.
#
#   stop REGION    kills the region's kube-apiserver (SIGKILL: an outage, not
#                  a shutdown) and returns once it no longer answers; etcd,
#                  the controller manager, the scheduler and kwok's
#                  controller are left running.
#   start REGION   starts it again and returns once its /readyz answers and
#                  the region works again (see below).
#   status REGION  says whether it runs and answers (exit 1 if not).
#
# How it finds the process: kwokctl v0.8.0 has no command to stop or start
# one component. It runs each component of a cluster as a process whose pid
# it keeps in $KWOK_WORKDIR/clusters/NAME/pids/COMPONENT.pid (the lab's
# KWOK_WORKDIR is .cache/lab/kwok, see lib.sh), counts a component as
# running while that pid exists, and `kwokctl start cluster` starts exactly
# the components that are not running. stop kills the pid in
# kube-apiserver.pid (after checking it is a kube-apiserver) and removes the
# file, as kwokctl's own stop does; start is `kwokctl start cluster`, which
# starts the API server again with the arguments, port and certificates it
# had.
#
# start restarts the controller manager, the scheduler and kwok's
# controller with the API server (etcd is left alone), so that the region
# works when it returns:
#   - the controller manager and the scheduler exit about 10s into an
#     outage (they lose their leader leases); and kwok's controller, which
#     survives, waits out client-go's retry backoff before it watches
#     again: no pod progressed for 12s after a 5s outage, for 30s after a
#     90s one. New processes start at once;
#   - the old processes' leases (kube-system/kube-controller-manager and
#     kube-scheduler, and the node leases in kube-node-lease) are deleted,
#     so that the new ones take them at their next try instead of waiting
#     until they expire;
#   - start returns once the new leaders hold their leases and every node
#     lease was renewed after the start (kwok's controller acts again).
#
# Environment, for a cluster other than the lab's (defaults in brackets):
#   KEELSON_LAB_DIR               the lab's state folder, whose kwok/ is
#                                 kwokctl's KWOK_WORKDIR [.cache/lab]
#   KEELSON_APISERVER_CLUSTER     the kwok cluster's name [REGION]
#   KEELSON_APISERVER_KUBECONFIG  kubeconfig to reach it with [the
#                                 integration tests' KEELSON_KUBECONFIG, or
#                                 else $KEELSON_LAB_DIR/kubeconfig]
#   KEELSON_APISERVER_CONTEXT     its context [REGION]; empty: current context
#   KEELSON_APISERVER_TIMEOUT     seconds each wait lasts at most [120]
set -euo pipefail
source "$(dirname "$0")/lib.sh"

usage() { echo "usage: $0 stop|start|status REGION" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1 region=$2

CLUSTER=${KEELSON_APISERVER_CLUSTER:-$region}
PROBE_KUBECONFIG=${KEELSON_APISERVER_KUBECONFIG:-${KEELSON_KUBECONFIG:-$LAB_KUBECONFIG}}
PROBE_CONTEXT=${KEELSON_APISERVER_CONTEXT-$region}
TIMEOUT=${KEELSON_APISERVER_TIMEOUT:-120}
CLUSTER_DIR=$KWOK_WORKDIR/clusters/$CLUSTER
PIDS=$CLUSTER_DIR/pids
KWOKCTL_LOG=$LAB_DIR/kwokctl-$CLUSTER.log

if [ ! -d "$CLUSTER_DIR" ]; then
	echo "lab: no kwok cluster $CLUSTER in $KWOK_WORKDIR/clusters (run make up, or set KEELSON_APISERVER_CLUSTER)" >&2
	exit 1
fi

# kube ARGS...: kubectl through the kubeconfig and context.
kube() {
	local ctx=()
	[ -n "$PROBE_CONTEXT" ] && ctx=(--context "$PROBE_CONTEXT")
	"$LAB_BIN/kubectl" --kubeconfig "$PROBE_KUBECONFIG" "${ctx[@]}" "$@"
}

# api_ready: the API server answers /readyz.
api_ready() {
	kube --request-timeout 2s get --raw /readyz >/dev/null 2>&1
}

# component_pid NAME BINARY: the pid in NAME.pid when it is a live process
# of BINARY (not a pid the kernel has since given to another program).
component_pid() {
	local file=$PIDS/$1.pid pid exe
	pid_alive "$file" || return 1
	pid=$(cat "$file")
	exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
	exe=${exe% (deleted)}
	[ "$(basename "$exe")" = "$2" ] || return 1
	echo "$pid"
}

# kill_component NAME BINARY: SIGKILL, as kwokctl's own stop does; waits
# until the process is gone and removes its pid file. kwokctl counts a
# component with a pid file whose process exists as running, and a process
# nobody reaps (a zombie) exists: without the file, its next start starts
# the component.
kill_component() {
	local pid i
	if pid=$(component_pid "$1" "$2"); then
		kill -KILL "$pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			proc_running "$pid" || break
			sleep 0.05
		done
		if proc_running "$pid"; then
			echo "lab: $1 of $CLUSTER (pid $pid) still runs 5s after SIGKILL" >&2
			return 1
		fi
	fi
	rm -f "$PIDS/$1.pid"
}

kwokctl_start() {
	if ! "$LAB_BIN/kwokctl" start cluster --name "$CLUSTER" --timeout "${TIMEOUT}s" >>"$KWOKCTL_LOG" 2>&1; then
		echo "lab: kwokctl start cluster $CLUSTER failed; see $KWOKCTL_LOG:" >&2
		tail -20 "$KWOKCTL_LOG" >&2
		return 1
	fi
}

now_micro() { date -u +%Y-%m-%dT%H:%M:%S.%6NZ; }

stop() {
	local pid deadline
	if ! pid=$(component_pid kube-apiserver kube-apiserver); then
		rm -f "$PIDS/kube-apiserver.pid"
		if api_ready; then
			echo "lab: an API server answers for $region, but $PIDS/kube-apiserver.pid names no running kube-apiserver" >&2
			return 1
		fi
		lab_log "API server of $CLUSTER not running"
		return 0
	fi
	kill_component kube-apiserver kube-apiserver
	deadline=$((SECONDS + TIMEOUT))
	while api_ready && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
	if api_ready; then
		echo "lab: API server of $CLUSTER still answers ${TIMEOUT}s after pid $pid exited" >&2
		return 1
	fi
	lab_log "API server of $CLUSTER stopped (pid $pid); etcd and the other components were left running"
}

start() {
	local f name restarted=() since deadline rc=0
	if component_pid kube-apiserver kube-apiserver >/dev/null && api_ready; then
		lab_log "API server of $CLUSTER already running (pid $(cat "$PIDS/kube-apiserver.pid"))"
		return 0
	fi
	# The other components restart with the API server. The controller
	# manager and the scheduler exit about 10s into an outage (they lose
	# their leader leases), and a component that exited (or is a zombie)
	# keeps its pid file, which kwokctl would take for running. Those that
	# survive wait out client-go's retry backoff before they watch again,
	# up to a minute after a long outage: no pod progressed for 12s after a
	# 5s outage, for 30s after a 90s one. New ones start at once.
	for f in "$PIDS"/*.pid; do
		[ -e "$f" ] || continue
		name=$(basename "$f" .pid)
		case $name in
		kube-apiserver) component_pid kube-apiserver kube-apiserver >/dev/null || rm -f "$f" ;;
		kube-controller-manager | kube-scheduler) kill_component "$name" "$name" || return 1 ;;
		kwok-controller) kill_component "$name" kwok || return 1 ;;
		*) continue ;; # etcd, and whatever else a cluster may run
		esac
		[ "$name" = kube-apiserver ] || restarted+=("$name")
	done
	[ ${#restarted[@]} -eq 0 ] || lab_log "restarting with the API server: ${restarted[*]}"
	since=$(now_micro)
	kwokctl_start || return 1
	deadline=$((SECONDS + TIMEOUT))
	until api_ready || [ $SECONDS -ge $deadline ]; do sleep 0.2; done
	if ! api_ready; then
		echo "lab: API server of $CLUSTER does not answer /readyz ${TIMEOUT}s after its start; see $CLUSTER_DIR/logs/kube-apiserver.log" >&2
		return 1
	fi
	lab_log "API server of $CLUSTER running (pid $(cat "$PIDS/kube-apiserver.pid")) and ready"

	# The leases of the processes that ran before are deleted, so that the
	# new ones take them at their next try (every 2s for the leaders, 5s for
	# kwok's node leases in the lab) instead of when they expire.
	local leases
	leases=$(kube --request-timeout 5s -n kube-node-lease get leases -o name 2>/dev/null) || leases=
	for name in "${restarted[@]}"; do
		case $name in
		kube-controller-manager | kube-scheduler) drop_stale_lease kube-system "$name" "$since" ;;
		esac
	done
	for name in $leases; do
		drop_stale_lease kube-node-lease "${name#*/}" "$since"
	done
	for name in "${restarted[@]}"; do
		case $name in
		kube-controller-manager | kube-scheduler)
			if leader_elects "$name"; then
				wait_leader "$name" "$since" || rc=1
			else
				lab_log "$name of $CLUSTER runs without leader election: no lease to wait for"
			fi
			;;
		esac
	done
	wait_nodes_held "$since" || rc=1
	return $rc
}

# drop_stale_lease NAMESPACE NAME SINCE: deletes the lease when it was
# last renewed before SINCE (RFC 3339, UTC, microseconds), that is by a
# process that no longer runs. The delete carries the lease's
# resourceVersion as a precondition: a lease taken in between is left alone.
drop_stale_lease() {
	local ns=$1 name=$2 since=$3 rv= renewed= body
	read -r rv renewed < <(kube --request-timeout 5s -n "$ns" get lease "$name" \
		-o jsonpath='{.metadata.resourceVersion} {.spec.renewTime}' 2>/dev/null) || true
	if [ -n "$rv" ] && [[ $renewed < $since ]]; then
		body=$(mktemp)
		printf '{"kind":"DeleteOptions","apiVersion":"v1","preconditions":{"resourceVersion":"%s"}}' "$rv" >"$body"
		kube --request-timeout 5s delete --raw "/apis/coordination.k8s.io/v1/namespaces/$ns/leases/$name" -f "$body" >/dev/null 2>&1 || true
		rm -f "$body"
	fi
}

# leader_elects NAME: false when the running component was started with
# --leader-elect=false (a cluster made with that patch takes no lease, and
# waiting for one would fail after the timeout).
leader_elects() {
	local pid
	pid=$(component_pid "$1" "$1") || return 0
	! tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qx -- '--leader-elect=false'
}

# wait_leader NAME SINCE: waits until the leader lease kube-system/NAME
# was renewed after SINCE, by the process started since.
wait_leader() {
	local name=$1 since=$2 renewed deadline=$((SECONDS + TIMEOUT))
	while [ $SECONDS -lt $deadline ]; do
		renewed=$(kube --request-timeout 5s -n kube-system get lease "$name" -o jsonpath='{.spec.renewTime}' 2>/dev/null) || renewed=
		if [ -n "$renewed" ] && [[ $renewed > $since ]]; then
			lab_log "$name of $CLUSTER leads again"
			return 0
		fi
		sleep 0.5
	done
	echo "lab: $name of $CLUSTER did not take its leader lease within ${TIMEOUT}s; see $CLUSTER_DIR/logs/$name.log" >&2
	return 1
}

# wait_nodes_held SINCE: waits until kwok's controller has renewed the
# lease of every node after SINCE, that is until it acts on the nodes and
# their pods again.
wait_nodes_held() {
	local since=$1 nodes times fresh t deadline=$((SECONDS + TIMEOUT))
	while [ $SECONDS -lt $deadline ]; do
		if nodes=$(kube --request-timeout 5s get nodes -o name 2>/dev/null) &&
			times=$(kube --request-timeout 5s -n kube-node-lease get leases \
				-o jsonpath='{range .items[*]}{.spec.renewTime}{"\n"}{end}' 2>/dev/null); then
			fresh=0
			for t in $times; do [[ $t > $since ]] && fresh=$((fresh + 1)); done
			if [ "$fresh" -ge "$(wc -w <<<"$nodes")" ]; then
				lab_log "kwok's controller of $CLUSTER holds its $fresh nodes again"
				return 0
			fi
		fi
		sleep 0.5
	done
	echo "lab: kwok's controller of $CLUSTER did not renew its node leases within ${TIMEOUT}s; see $CLUSTER_DIR/logs/kwok-controller.log" >&2
	return 1
}

status() {
	local pid
	if pid=$(component_pid kube-apiserver kube-apiserver) && api_ready; then
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
