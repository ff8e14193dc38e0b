# Shared by the lab's scripts (sourced, not run). Every path is derived from
# the repository root found relative to this file, so a checkout anywhere
# works, and all state lives under .cache/lab.

lab_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB_ROOT=$(cd "$lab_here/../.." && pwd)
LAB_DIR=${KEELSON_LAB_DIR:-$LAB_ROOT/.cache/lab}
LAB_BIN=${KEELSON_LAB_BIN:-$LAB_DIR/bin}
LAB_KUBECONFIG=$LAB_DIR/kubeconfig
mkdir -p "$LAB_DIR"

# kwokctl keeps its clusters under KWOK_WORKDIR (~/.kwok otherwise).
export KWOK_WORKDIR=$LAB_DIR/kwok
# The lab's binaries come first: kwokctl looks kubectl up on PATH, and
# terraform is built there where the machine has none.
export PATH=$LAB_BIN:$LAB_ROOT/bin:$PATH

TEMPORAL_IP=127.0.0.1
TEMPORAL_PORT=${KEELSON_TEMPORAL_PORT:-7233}
TEMPORAL_UI_PORT=${KEELSON_TEMPORAL_UI_PORT:-8233}
TEMPORAL_ADDRESS=$TEMPORAL_IP:$TEMPORAL_PORT
TEMPORAL_DB=$LAB_DIR/temporal.db
TEMPORAL_PID=$LAB_DIR/temporal.pid
TEMPORAL_LOG=$LAB_DIR/temporal.log

WORKER_PID=$LAB_DIR/worker.pid
WORKER_LOG=$LAB_DIR/worker.log
WORKER_ARTIFACTS=$LAB_DIR/artifacts
WORKER_WORKDIR=$LAB_DIR/work
TF_CLI_CONFIG=$LAB_DIR/terraformrc

# The lab encrypts payloads as production does (docs/codec.md): the worker,
# the CLI (KEELSON_CODEC_KEYS) and the tests hold the lab's key, made at the
# first up. The Web UI decodes through the lab's codec proxy
# (infra/codecproxy), which adds the worker's endpoint token that a browser
# cannot send; the dev server is started pointing its UI at the proxy.
LAB_CODEC_KEY=$LAB_DIR/codec.key
LAB_CODEC_TOKEN=$LAB_DIR/codec.token
LAB_CODEC_KEYS=lab=file:$LAB_CODEC_KEY
CODECPROXY_BIN=$LAB_ROOT/bin/keelson-codec-proxy
CODECPROXY_PORT=${KEELSON_CODEC_PROXY_PORT:-8097}
CODECPROXY_URL=http://127.0.0.1:$CODECPROXY_PORT/codec
CODECPROXY_PID=$LAB_DIR/codecproxy.pid
CODECPROXY_LOG=$LAB_DIR/codecproxy.log

# The signals of progressive delivery: AWS APIs (moto_server: Route 53's
# weighted records, CloudWatch), Prometheus, and the traffic generator
# (infra/trafficgen) that plays the applications' users and feeds both.
MOTO_SERVER=${KEELSON_MOTO_SERVER:-moto_server}
MOTO_PORT=${KEELSON_MOTO_PORT:-5055}
MOTO_URL=http://127.0.0.1:$MOTO_PORT
MOTO_PID=$LAB_DIR/moto.pid
MOTO_LOG=$LAB_DIR/moto.log
# moto runs in Python, whose command line names no file of the lab: its
# environment carries this marker instead (see lab_pids).
MOTO_OWNER_ENV=KEELSON_LAB_OWNER=$LAB_DIR
# What the lab's AWS clients (the worker, the traffic generator) are given:
# the SDKs honour AWS_ENDPOINT_URL, and moto takes any credentials.
LAB_AWS_ENV=(
	AWS_ENDPOINT_URL=$MOTO_URL
	AWS_ACCESS_KEY_ID=testing
	AWS_SECRET_ACCESS_KEY=testing
	AWS_REGION=us-east-1
)

PROMETHEUS_BIN=${KEELSON_PROMETHEUS_BIN:-/usr/bin/prometheus}
PROMETHEUS_PORT=${KEELSON_PROMETHEUS_PORT:-9390}
PROMETHEUS_URL=http://127.0.0.1:$PROMETHEUS_PORT
PROMETHEUS_CONFIG=$LAB_DIR/prometheus.yml
PROMETHEUS_DATA=$LAB_DIR/prometheus
PROMETHEUS_PID=$LAB_DIR/prometheus.pid
PROMETHEUS_LOG=$LAB_DIR/prometheus.log

TRAFFIC_BIN=$LAB_ROOT/bin/keelson-traffic
TRAFFIC_PORT=${KEELSON_TRAFFIC_PORT:-9391}
TRAFFIC_URL=http://127.0.0.1:$TRAFFIC_PORT
TRAFFIC_PID=$LAB_DIR/traffic.pid
TRAFFIC_LOG=$LAB_DIR/traffic.log
TRAFFIC_RPS=${KEELSON_TRAFFIC_RPS:-20}
# The Route 53 zone of the applications' records, and the applications
# whose records and alarms the lab's setup creates.
LAB_ZONE=lab.keelson.test
LAB_APPS=demo
LAB_APP_NAMESPACE=demo

# Regions, and the block of ports each one's components are pinned to
# (API server BASE+43, etcd +79 and peer +80, kwok controller +47,
# controller manager +57, scheduler +59). kwokctl would pick free ports at
# random below 32767, where every other kwok cluster on the machine picks
# too: a stopped lab would find its ports taken at the next start. The
# blocks lie below Linux's ephemeral range (32768+), and the API server
# ports are what infra/demo/release.yaml probes.
LAB_REGIONS=(us-east-1 eu-west-1 ap-southeast-1)
declare -A LAB_PORT_BASE=([us-east-1]=26400 [eu-west-1]=26500 [ap-southeast-1]=26600)
declare -A LAB_API_PORT=()
for _r in "${LAB_REGIONS[@]}"; do LAB_API_PORT[$_r]=$((LAB_PORT_BASE[$_r] + 43)); done
unset _r
LAB_NODES=2

lab_log() { echo "lab: $*"; }

# lab_codec_secrets: the lab's payload key and codec token, made once (32
# random bytes in hex each, readable by the owner only) and kept with the
# lab's state: a history encrypted with the key needs it for as long as it
# is kept, so `make clean-lab` deletes both with the database.
lab_codec_secrets() {
	local f
	for f in "$LAB_CODEC_KEY" "$LAB_CODEC_TOKEN"; do
		[ -s "$f" ] && continue
		(umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$f.tmp" && echo >>"$f.tmp" && mv "$f.tmp" "$f")
	done
}

# lab_timed LABEL COMMAND...: runs COMMAND and prints how long it took.
lab_timed() {
	local label=$1; shift
	local start rc=0 ms; start=$(date +%s%N)
	"$@" || rc=$?
	ms=$(( ($(date +%s%N) - start) / 1000000 ))
	lab_log "$label: $((ms / 1000)).$((ms % 1000 / 100))s"
	return $rc
}

# proc_running PID: true while PID is a live process. A zombie counts as
# gone: a daemon whose starter exited is reaped by PID 1, which in a
# container may never do it.
proc_running() {
	local pid=$1
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
	# The third field of /proc/PID/stat is the state; Z is a zombie.
	[ "$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null)" != "Z" ]
}

# pid_alive FILE: true when FILE names a process that is still running.
pid_alive() {
	[ -s "$1" ] && proc_running "$(cat "$1")"
}

# stop_pid FILE NAME [SECONDS]: SIGTERM, then SIGKILL after SECONDS (10).
stop_pid() {
	local file=$1 name=$2 wait=${3:-10} pid i
	if ! pid_alive "$file"; then
		rm -f "$file"
		lab_log "$name not running"
		return 0
	fi
	pid=$(cat "$file")
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < wait * 10; i++)); do
		pid_alive "$file" || break
		sleep 0.1
	done
	if pid_alive "$file"; then
		lab_log "$name (pid $pid) ignored SIGTERM for ${wait}s; sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		sleep 0.2
	fi
	rm -f "$file"
	lab_log "$name stopped (pid $pid)"
}

# port_open PORT: true when something listens on 127.0.0.1:PORT.
port_open() {
	(exec 2>/dev/null 3<>"/dev/tcp/127.0.0.1/$1")
}

# http_get PORT PATH: prints the whole answer (status line, headers and
# body) to GET http://127.0.0.1:PORT/PATH, through bash's /dev/tcp: no curl
# needed. Fails when nothing listens.
http_get() {
	(
		exec 2>/dev/null
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
		cat <&3
	)
}

# http_ok PORT PATH: GET http://127.0.0.1:PORT/PATH answers 200.
http_ok() {
	local answer
	answer=$(http_get "$1" "$2") || return 1
	[[ $answer == "HTTP/1."?" 200"* ]]
}

# wait_ready NAME PIDFILE LOG SECONDS CHECK...: waits until CHECK succeeds
# while the process in PIDFILE lives; when it exits or the time is up, says
# so with the end of LOG, removes PIDFILE if it died, and fails.
wait_ready() {
	local name=$1 file=$2 log=$3 secs=$4 i
	shift 4
	for ((i = 0; i < secs * 10; i++)); do
		"$@" && return 0
		if ! pid_alive "$file"; then
			echo "lab: $name exited while starting; last lines of $log:" >&2
			tail -20 "$log" >&2
			rm -f "$file"
			return 1
		fi
		sleep 0.1
	done
	echo "lab: $name (pid $(cat "$file")) not ready within ${secs}s; see $log" >&2
	return 1
}

# need_bin NAME...: fails with a clear message when a lab binary is missing.
need_bin() {
	local n
	for n in "$@"; do
		if [ ! -x "$LAB_BIN/$n" ]; then
			echo "lab: $LAB_BIN/$n is missing; run infra/lab/build.sh (make lab-build)" >&2
			return 1
		fi
	done
}

# lab_pids: the lab's long-running processes: a server binary of the lab
# (or the Keelson worker, the traffic generator, Prometheus) with an
# argument naming a file in this lab's state folder, outside its bin folder,
# and a moto_server whose environment names this lab (MOTO_OWNER_ENV).
# Other people's tests run the same binaries with their own temporary
# folders (a kwok cluster per test, a dev server on another port), and pass
# our bin folder's paths to kwokctl: none of those is ours, and none must be
# stopped by `down`.
lab_pids() {
	local p exe args
	for p in /proc/[0-9]*; do
		exe=$(readlink "$p/exe" 2>/dev/null) || continue
		exe=${exe% (deleted)}
		case $exe in
		"$LAB_BIN"/temporal | "$LAB_BIN"/etcd | "$LAB_BIN"/kube-apiserver | "$LAB_BIN"/kube-controller-manager | \
			"$LAB_BIN"/kube-scheduler | "$LAB_BIN"/kwok | "$LAB_ROOT/bin/keelson-worker" | \
			"$TRAFFIC_BIN" | "$CODECPROXY_BIN" | "$PROMETHEUS_BIN") ;;
		*/python*)
			# moto_server: ours when its environment carries the marker.
			args=$(tr '\0' '\n' <"$p/environ" 2>/dev/null) || continue
			grep -qxF -- "$MOTO_OWNER_ENV" <<<"$args" && echo "${p#/proc/}"
			continue
			;;
		*) continue ;;
		esac
		# Arguments only (the program's own path may lie in the folder), read
		# whole: piped into grep -q, an early exit under pipefail would fail
		# the pipe and hide the process.
		args=$(tr '\0' '\n' <"$p/cmdline" 2>/dev/null | tail -n +2) || continue
		args=$(grep -F -- "$LAB_DIR/" <<<"$args" | grep -vF -- "$LAB_BIN/") || continue
		echo "${p#/proc/}"
	done
}
