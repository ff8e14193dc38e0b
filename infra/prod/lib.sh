# Shared by the prod topology's scripts (sourced, not run): a production-like
# Keelson on one machine, next to the lab and on other ports. Temporal's
# server (frontend, history, matching and worker services in one process) on
# PostgreSQL, the Temporal Web UI server, moto for S3, and two Keelson
# workers that share nothing on disk. The region clusters, Prometheus and the
# AWS APIs of traffic steps are the lab's (make up).
#
# The lab's helpers (pid files, readiness checks, timing) come from
# infra/lab/lib.sh; all of this topology's state lives under .cache/prod.

prod_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$prod_here/../lab/lib.sh"
# The lab's helpers log through lab_log: ours say where they come from.
lab_log() { echo "prod: $*"; }
prod_log() { echo "prod: $*"; }

PROD_ROOT=$LAB_ROOT
PROD_DIR=${KEELSON_PROD_DIR:-$PROD_ROOT/.cache/prod}
PROD_BIN=${KEELSON_PROD_BIN:-$PROD_DIR/bin}
PROD_LOGS=$PROD_DIR/logs
PROD_CONF=$PROD_ROOT/infra/prod
mkdir -p "$PROD_DIR" "$PROD_LOGS"

# The temporal CLI of the lab (infra/lab/build.sh) talks to our frontend:
# health checks, the namespace and the search attributes.
TEMPORAL_CLI=${KEELSON_PROD_TEMPORAL_CLI:-$LAB_BIN/temporal}

# PostgreSQL: a private cluster of Debian's server binaries (initdb, pg_ctl
# from /usr/lib/postgresql/N/bin) in .cache/prod/pg, on 127.0.0.1 only,
# without a Unix socket. PostgreSQL refuses to run as root: as root, every
# PostgreSQL command runs as the `postgres` user the Debian package creates.
# Its superuser is `temporal` (password `temporal`), as in docker-compose.yml.
PG_PORT=${KEELSON_PROD_PG_PORT:-5433}
PG_DATA=$PROD_DIR/pg
PG_LOG=$PROD_LOGS/postgresql.log
PG_PID=$PROD_DIR/postgresql.pid
PG_USER=temporal
PG_PASSWORD=${KEELSON_PROD_PG_PASSWORD:-temporal}

# Temporal's ports, from the frontend's (docker-compose.yml keeps Temporal's
# own defaults, 7233 and up, inside its network): history +1, matching +2,
# worker +6, the frontend's HTTP API +10; membership ports 1000 below each.
TEMPORAL_PORT=${KEELSON_PROD_TEMPORAL_PORT:-7333}
TEMPORAL_IP=127.0.0.1
TEMPORAL_ADDRESS=$TEMPORAL_IP:$TEMPORAL_PORT
TEMPORAL_METRICS_PORT=${KEELSON_PROD_TEMPORAL_METRICS_PORT:-7399}
TEMPORAL_PID=$PROD_DIR/temporal-server.pid
TEMPORAL_LOG=$PROD_LOGS/temporal-server.log
TEMPORAL_NAMESPACE=default
# The search attributes the Release workflow upserts (workflows.SearchAttr*);
# infra/lab/temporal.sh gives the dev server the same.
TEMPORAL_SEARCH_ATTRIBUTES="KeelsonApplication KeelsonVersion KeelsonPhase"

# The environment of temporal-server: infra/prod/temporal.yaml is a template
# the server renders itself ("# enable-template"), and docker-compose.yml
# sets the same variables for the temporalio/server image.
temporal_env() {
	echo DB=postgres12
	echo POSTGRES_SEEDS=127.0.0.1
	echo DB_PORT="$PG_PORT"
	echo POSTGRES_USER="$PG_USER"
	echo POSTGRES_PWD="$PG_PASSWORD"
	echo BIND_ON_IP="$TEMPORAL_IP"
	echo TEMPORAL_BROADCAST_ADDRESS="$TEMPORAL_IP"
	echo FRONTEND_GRPC_PORT="$TEMPORAL_PORT"
	echo FRONTEND_HTTP_PORT=$((TEMPORAL_PORT + 10))
	echo HISTORY_GRPC_PORT=$((TEMPORAL_PORT + 1))
	echo MATCHING_GRPC_PORT=$((TEMPORAL_PORT + 2))
	echo WORKER_GRPC_PORT=$((TEMPORAL_PORT + 6))
	echo FRONTEND_MEMBERSHIP_PORT=$((TEMPORAL_PORT - 1000))
	echo HISTORY_MEMBERSHIP_PORT=$((TEMPORAL_PORT - 1000 + 1))
	echo MATCHING_MEMBERSHIP_PORT=$((TEMPORAL_PORT - 1000 + 2))
	echo WORKER_MEMBERSHIP_PORT=$((TEMPORAL_PORT - 1000 + 6))
	echo PROMETHEUS_ENDPOINT="$TEMPORAL_IP:$TEMPORAL_METRICS_PORT"
	echo DYNAMIC_CONFIG_FILE_PATH="$PROD_CONF/dynamicconfig.yaml"
	echo LOG_LEVEL="${KEELSON_PROD_TEMPORAL_LOG_LEVEL:-warn}"
}

# The Web UI server (github.com/temporalio/ui-server/v2, the version of the
# dev server's UI), configured by the ui-server's own config/docker.yaml of
# that version, which build.sh copies next to the binary: the file the
# temporalio/ui image runs with, and the same variables.
UI_PORT=${KEELSON_PROD_UI_PORT:-8333}
UI_CONFIG=$PROD_DIR/ui/config
UI_PID=$PROD_DIR/temporal-ui.pid
UI_LOG=$PROD_LOGS/temporal-ui.log
ui_env() {
	echo TEMPORAL_ADDRESS="$TEMPORAL_ADDRESS"
	echo TEMPORAL_UI_PORT="$UI_PORT"
	echo TEMPORAL_CORS_ORIGINS="http://localhost:$UI_PORT"
	echo TEMPORAL_CODEC_ENDPOINT="${KEELSON_CODEC_ENDPOINT:-}"
	# No "new version available" banner from a pinned UI.
	echo TEMPORAL_NOTIFY_ON_NEW_VERSION=false
}

# moto for S3, apart from the lab's moto. The Python process is found by a
# marker in its environment (a different one from the lab's: neither
# `down` stops the other's moto).
MOTO_PORT=${KEELSON_PROD_MOTO_PORT:-5155}
MOTO_URL=http://127.0.0.1:$MOTO_PORT
MOTO_PID=$PROD_DIR/moto.pid
MOTO_LOG=$PROD_LOGS/moto.log
MOTO_OWNER_ENV=KEELSON_PROD_OWNER=$PROD_DIR
S3_BUCKET=keelson-artifacts

# The two Keelson workers: one task queue, one Temporal, separate work
# folders and HTTP ports; artifacts in S3 (moto), shared by both through the
# bucket and not through a disk. KEELSON_PROD_ARTIFACTS replaces the URL;
# "{worker}" in it becomes the worker's name (a, b), so
# KEELSON_PROD_ARTIFACTS=file://$PWD/.cache/prod/worker-{worker}/artifacts
# gives each worker a folder of its own.
PROD_WORKERS=(a b)
declare -A WORKER_HTTP_PORT=([a]=${KEELSON_PROD_WORKER_A_PORT:-8195} [b]=${KEELSON_PROD_WORKER_B_PORT:-8196})
WORKER_BIN=${KEELSON_WORKER_BIN:-$PROD_ROOT/bin/keelson-worker}
TASK_QUEUE=${KEELSON_TASK_QUEUE:-keelson}
PROD_ARTIFACTS=${KEELSON_PROD_ARTIFACTS:-s3://$S3_BUCKET/keelson?endpoint=$MOTO_URL&region=us-east-1}
# The region clusters, their traffic records and alarms (the lab's moto)
# and Prometheus are the lab's: a release on this topology deploys to the
# lab's regions. S3 alone is ours (AWS_ENDPOINT_URL_S3, and the URL's
# endpoint).
PROD_KUBECONFIG=${KEELSON_PROD_KUBECONFIG:-$LAB_KUBECONFIG}
PROD_AWS_ENDPOINT=${KEELSON_PROD_AWS_ENDPOINT:-http://127.0.0.1:${KEELSON_MOTO_PORT:-5055}}
PROD_PROMETHEUS_URL=${KEELSON_PROD_PROMETHEUS_URL:-http://127.0.0.1:${KEELSON_PROMETHEUS_PORT:-9390}}
worker_dir() { echo "$PROD_DIR/worker-$1"; }
worker_pidfile() { echo "$PROD_DIR/worker-$1.pid"; }
worker_log() { echo "$PROD_LOGS/worker-$1.log"; }

# prod_timed LABEL COMMAND...: lab_timed, whose lines say prod.
prod_timed() { lab_timed "$@"; }

# as_pg COMMAND...: runs a PostgreSQL command as the owner of the cluster:
# the `postgres` user when we are root (PostgreSQL refuses root), ourselves
# otherwise.
as_pg() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# pg_bindir: the newest PostgreSQL server of Debian's packages.
pg_bindir() {
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
	if [ -z "$d" ] || [ ! -x "$d/pg_ctl" ]; then
		echo "prod: no PostgreSQL server in /usr/lib/postgresql/*/bin; run infra/prod/build.sh (make prod-build)" >&2
		return 1
	fi
	echo "$d"
}

# prod_need_bin NAME...: fails with a clear message when a binary is missing.
prod_need_bin() {
	local n
	for n in "$@"; do
		if [ ! -x "$PROD_BIN/$n" ]; then
			echo "prod: $PROD_BIN/$n is missing; run infra/prod/build.sh (make prod-build)" >&2
			return 1
		fi
	done
}

# temporal_healthy: our frontend answers a health check.
temporal_healthy() {
	"$TEMPORAL_CLI" operator cluster health --address "$TEMPORAL_ADDRESS" 2>/dev/null | grep -q SERVING
}

# pg_ready: PostgreSQL accepts connections on our port.
pg_ready() {
	local bindir; bindir=$(pg_bindir) || return 1
	"$bindir/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"
}

# prod_pids: the topology's long-running processes: a server of our bin
# folder, PostgreSQL on our data folder, a Keelson worker whose arguments
# name our state folder, and a moto_server whose environment carries our
# marker. The lab's processes never match (their files are in .cache/lab).
prod_pids() {
	local p exe args
	for p in /proc/[0-9]*; do
		exe=$(readlink "$p/exe" 2>/dev/null) || continue
		exe=${exe% (deleted)}
		case $exe in
		"$PROD_BIN"/temporal-server | "$PROD_BIN"/temporal-ui-server)
			echo "${p#/proc/}"
			continue
			;;
		/usr/lib/postgresql/*/bin/postgres | "$WORKER_BIN") ;;
		*/python*)
			args=$(tr '\0' '\n' <"$p/environ" 2>/dev/null) || continue
			grep -qxF -- "$MOTO_OWNER_ENV" <<<"$args" && echo "${p#/proc/}"
			continue
			;;
		*) continue ;;
		esac
		# PostgreSQL's children rename themselves ("postgres: checkpointer"):
		# only the postmaster names its data folder; its children go with it.
		args=$(tr '\0' '\n' <"$p/cmdline" 2>/dev/null | tail -n +2) || continue
		grep -qF -- "$PROD_DIR/" <<<"$args" && echo "${p#/proc/}"
	done
	return 0
}
