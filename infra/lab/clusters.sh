#!/usr/bin/env bash
# The lab's Kubernetes clusters, one kwok cluster per region:
# start | stop | status | delete. start creates what is missing and starts
# what is stopped; a cluster keeps its etcd data across stop and start.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

STAGES=$lab_here/kwok-stages.yaml

cluster_exists() {
	# Not a pipe into grep -q: with pipefail, grep leaving early would make
	# kwokctl's SIGPIPE the answer.
	local clusters
	clusters=$("$LAB_BIN/kwokctl" get clusters 2>/dev/null) || return 1
	grep -qx -- "$1" <<<"$clusters"
}

# api_ready REGION: the region's API server answers /readyz.
api_ready() {
	"$LAB_BIN/kubectl" --kubeconfig "$KWOK_WORKDIR/$1.kubeconfig" --request-timeout 2s \
		get --raw /readyz >/dev/null 2>&1
}

start_region() {
	local region=$1 port=${LAB_API_PORT[$1]} since
	since=$(date -u +%Y-%m-%dT%H:%M:%S)
	if cluster_exists "$region" && all_running "$region"; then
		lab_log "cluster $region already running"
		since=
	elif cluster_exists "$region"; then
		# Starts only the components that are not running.
		"$LAB_BIN/kwokctl" start cluster --name "$region" --timeout 2m >>"$LAB_DIR/kwokctl-$region.log" 2>&1
	else
		lab_log "creating cluster $region (API server on 127.0.0.1:$port)"
		local base=${LAB_PORT_BASE[$region]} ports=$KWOK_WORKDIR/$region-ports.yaml
		# etcd's peer port has no flag: all ports go in a config document.
		cat >"$ports" <<-EOT
			apiVersion: config.kwok.x-k8s.io/v1alpha1
			kind: KwokctlConfiguration
			options:
			  kubeApiserverPort: $port
			  etcdPort: $((base + 79))
			  etcdPeerPort: $((base + 80))
			  kwokControllerPort: $((base + 47))
			  kubeControllerManagerPort: $((base + 57))
			  kubeSchedulerPort: $((base + 59))
			  # kwok's controller holds a lease per node and acts only on
			  # nodes it holds. A restarted controller has a new identity and
			  # waits for the old leases to expire: 40s times kwokctl's
			  # heartbeat factor of 5 by default, during which no pod becomes
			  # Ready. A 20s lease (renewed every 5s) keeps restarts quick and
			  # is still generous on a busy machine; factor 1 also gives the
			  # controller manager Kubernetes' own node grace period (40s).
			  nodeLeaseDurationSeconds: 20
			  heartbeatFactor: 1
			# One controller manager and one scheduler per cluster: nothing to
			# elect. With an election, a process whose lease renewal times out
			# (5s, under a loaded API server on a slow machine) exits for good,
			# and no pod of that region is made or scheduled again until the
			# cluster restarts: every later release there fails its readiness.
			componentsPatches:
			  - name: kube-controller-manager
			    extraArgs:
			      - key: leader-elect
			        value: "false"
			  - name: kube-scheduler
			    extraArgs:
			      - key: leader-elect
			        value: "false"
		EOT
		# The stages replace kwok's default stages with ours (see the file).
		"$LAB_BIN/kwokctl" --config "$STAGES" --config "$ports" create cluster --name "$region" \
			--runtime binary \
			--etcd-binary "$LAB_BIN/etcd" \
			--kube-apiserver-binary "$LAB_BIN/kube-apiserver" \
			--kube-controller-manager-binary "$LAB_BIN/kube-controller-manager" \
			--kube-scheduler-binary "$LAB_BIN/kube-scheduler" \
			--kwok-controller-binary "$LAB_BIN/kwok" \
			--kube-apiserver-port "$port" \
			--kubeconfig "$KWOK_WORKDIR/$region.kubeconfig" \
			--wait 2m \
			>>"$LAB_DIR/kwokctl-$region.log" 2>&1 || {
			echo "lab: kwokctl create cluster $region failed; see $LAB_DIR/kwokctl-$region.log:" >&2
			tail -20 "$LAB_DIR/kwokctl-$region.log" >&2
			return 1
		}
	fi
	# The kubeconfig is rewritten every time: it is what kwokctl says now.
	"$LAB_BIN/kwokctl" get kubeconfig --name "$region" >"$KWOK_WORKDIR/$region.kubeconfig"
	local i
	for ((i = 0; i < 120; i++)); do
		api_ready "$region" && break
		sleep 0.5
	done
	api_ready "$region" || { echo "lab: API server of $region does not answer /readyz" >&2; return 1; }
	"$LAB_BIN/kwokctl" scale node --name "$region" --replicas "$LAB_NODES" >>"$LAB_DIR/kwokctl-$region.log" 2>&1
	if [ -n "$since" ]; then
		wait_nodes_held "$region" "$since"
	fi
}

# all_running REGION: every component kwokctl started for REGION still runs.
all_running() {
	local f n=0
	for f in "$KWOK_WORKDIR/clusters/$1/pids"/*.pid; do
		[ -e "$f" ] || continue
		pid_alive "$f" || return 1
		n=$((n + 1))
	done
	[ $n -gt 0 ]
}

# wait_nodes_held REGION SINCE: waits until kwok's controller has renewed
# every node lease after SINCE (UTC, 2006-01-02T15:04:05), that is, until
# the controller running now manages the nodes and pods will progress.
wait_nodes_held() {
	local region=$1 since=$2 i times stale t
	for ((i = 0; i < 240; i++)); do
		times=$("$LAB_BIN/kubectl" --kubeconfig "$KWOK_WORKDIR/$region.kubeconfig" --request-timeout 2s \
			-n kube-node-lease get leases -o jsonpath='{range .items[*]}{.spec.renewTime}{"\n"}{end}' 2>/dev/null) || times=
		stale=0
		for t in $times; do [[ $t > $since ]] || stale=1; done
		if [ -n "$times" ] && [ $stale = 0 ]; then
			return 0
		fi
		sleep 0.5
	done
	echo "lab: kwok's controller in $region did not take over its nodes within 2m (leases: $times)" >&2
	return 1
}

# write_kubeconfig: one file with one context per region, named like the
# region, with certificates inlined so the file stands alone.
write_kubeconfig() {
	local files=() region tmp
	# A file of its own: two `make up` at once must not write the same one.
	tmp=$(mktemp "$LAB_KUBECONFIG.XXXXXX")
	for region in "${LAB_REGIONS[@]}"; do files+=("$KWOK_WORKDIR/$region.kubeconfig"); done
	KUBECONFIG=$(IFS=:; echo "${files[*]}") "$LAB_BIN/kubectl" config view --flatten >"$tmp"
	for region in "${LAB_REGIONS[@]}"; do
		"$LAB_BIN/kubectl" --kubeconfig "$tmp" config rename-context "kwok-$region" "$region" >/dev/null
	done
	"$LAB_BIN/kubectl" --kubeconfig "$tmp" config use-context "${LAB_REGIONS[0]}" >/dev/null
	chmod 600 "$tmp"
	mv "$tmp" "$LAB_KUBECONFIG"
}

start() {
	need_bin kwokctl kwok etcd kube-apiserver kube-controller-manager kube-scheduler kubectl
	mkdir -p "$KWOK_WORKDIR"
	local region
	for region in "${LAB_REGIONS[@]}"; do
		lab_timed "cluster $region" start_region "$region"
	done
	write_kubeconfig
	lab_log "kubeconfig $LAB_KUBECONFIG (contexts ${LAB_REGIONS[*]})"
}

stop() {
	local region
	for region in "${LAB_REGIONS[@]}"; do
		if cluster_exists "$region"; then
			lab_timed "stop cluster $region" "$LAB_BIN/kwokctl" stop cluster --name "$region" 2>>"$LAB_DIR/kwokctl-$region.log"
		fi
	done
}

delete() {
	local region
	for region in "${LAB_REGIONS[@]}"; do
		if cluster_exists "$region"; then
			"$LAB_BIN/kwokctl" delete cluster --name "$region" >>"$LAB_DIR/kwokctl-$region.log" 2>&1
			lab_log "deleted cluster $region"
		fi
	done
	rm -f "$LAB_KUBECONFIG"
}

status() {
	local region rc=0
	for region in "${LAB_REGIONS[@]}"; do
		if ! cluster_exists "$region"; then
			echo "cluster $region: not created"
			rc=1
		elif api_ready "$region"; then
			echo "cluster $region: ready on https://127.0.0.1:${LAB_API_PORT[$region]} ($("$LAB_BIN/kubectl" --kubeconfig "$KWOK_WORKDIR/$region.kubeconfig" get nodes --no-headers 2>/dev/null | wc -l) nodes)"
		else
			echo "cluster $region: stopped"
			rc=1
		fi
	done
	return $rc
}

case ${1:-} in
start) start ;;
stop) stop ;;
delete) delete ;;
status) status ;;
*) echo "usage: $0 start|stop|delete|status" >&2; exit 2 ;;
esac
