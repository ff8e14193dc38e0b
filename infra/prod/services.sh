#!/usr/bin/env bash
# The prod topology's services, one at a time:
#   infra/prod/services.sh SERVICE start|stop|restart|status
# SERVICE is postgresql, temporal, ui, moto, worker-a or worker-b (up.sh,
# down.sh and status.sh run them all, in order). Sourced by those scripts
# for its functions.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# rss_of PID...: resident memory of the processes, in MB.
rss_of() {
	local kb
	kb=$(ps -o rss= -p "$(echo "$@" | tr ' ' ',')" 2>/dev/null | awk '{s += $1} END {print s + 0}')
	echo "$((kb / 1024)) MB"
}

# refuse_taken PORT NAME PIDFILE ENVVAR: someone else's process on our port
# would pass for ours (and take our clients): refuse to start.
refuse_taken() {
	if port_open "$1"; then
		echo "prod: port $1 is taken by a process that is not the prod topology's $2 (no live $3); stop it or set $4" >&2
		return 1
	fi
}

# --- PostgreSQL --------------------------------------------------------------

pg_start() {
	local bindir; bindir=$(pg_bindir) || return 1
	if pid_alive "$PG_PID"; then
		prod_log "postgresql already running (pid $(cat "$PG_PID"))"
		return 0
	fi
	refuse_taken "$PG_PORT" postgresql "$PG_PID" KEELSON_PROD_PG_PORT || return 1
	# The cluster, once: initdb as the owner of the data folder, with
	# `temporal` as superuser (docker-compose.yml's POSTGRES_USER) and
	# passwords checked on every connection.
	if [ ! -s "$PG_DATA/PG_VERSION" ]; then
		rm -rf "$PG_DATA"
		mkdir -p "$PG_DATA"
		local pw; pw=$(mktemp "$PROD_DIR/.pgpw.XXXXXX")
		printf '%s\n' "$PG_PASSWORD" >"$pw"
		if [ "$(id -u)" -eq 0 ]; then chown postgres: "$PG_DATA" "$pw"; fi
		chmod 700 "$PG_DATA"
		local rc=0
		(cd / && as_pg "$bindir/initdb" -D "$PG_DATA" -U "$PG_USER" --pwfile="$pw" \
			--auth=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8) >>"$PG_LOG.init" 2>&1 || rc=$?
		rm -f "$pw"
		if [ $rc -ne 0 ]; then
			echo "prod: initdb failed; see $PG_LOG.init" >&2
			tail -20 "$PG_LOG.init" >&2
			rm -rf "$PG_DATA"
			return 1
		fi
		prod_log "postgresql cluster created in $PG_DATA ($("$bindir/postgres" --version))"
	fi
	touch "$PG_LOG"
	if [ "$(id -u)" -eq 0 ]; then chown postgres: "$PG_LOG"; fi
	# Settings on the command line, so that a new port needs no new cluster:
	# loopback TCP only, no Unix socket (none in /var/run/postgresql, and a
	# checkout's path can be longer than a socket's), and room for the
	# connection pools of Temporal's four services (docker-compose.yml gives
	# its postgresql the same max_connections).
	(cd / && as_pg "$bindir/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 \
		-o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=200" \
		start) >/dev/null || {
		echo "prod: postgresql did not start; last lines of $PG_LOG:" >&2
		tail -20 "$PG_LOG" >&2
		return 1
	}
	head -1 "$PG_DATA/postmaster.pid" >"$PG_PID"
	prod_log "postgresql serving on 127.0.0.1:$PG_PORT (pid $(cat "$PG_PID"), data $PG_DATA, log $PG_LOG)"
}

pg_stop() {
	local bindir
	if ! pid_alive "$PG_PID" && [ -s "$PG_DATA/postmaster.pid" ]; then
		# Started by hand or the pid file lost: the cluster's own file knows.
		head -1 "$PG_DATA/postmaster.pid" >"$PG_PID"
	fi
	if ! pid_alive "$PG_PID"; then
		rm -f "$PG_PID"
		prod_log "postgresql not running"
		return 0
	fi
	bindir=$(pg_bindir) || return 1
	local pid; pid=$(cat "$PG_PID")
	# fast: disconnects clients and checkpoints; the data stays consistent.
	(cd / && as_pg "$bindir/pg_ctl" -D "$PG_DATA" -m fast -w -t 30 stop) >/dev/null ||
		stop_pid "$PG_PID" postgresql 30
	rm -f "$PG_PID"
	prod_log "postgresql stopped (pid $pid)"
}

pg_status() {
	if pid_alive "$PG_PID" && pg_ready; then
		local pid kids pss=0 p kb; pid=$(cat "$PG_PID")
		kids=$(pgrep -P "$pid" || true)
		# The children's RSS counts the shared buffers again in each: their
		# proportional share (PSS) adds up to what the cluster takes.
		for p in $pid $kids; do
			kb=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || true)
			pss=$((pss + ${kb:-0}))
		done
		echo "postgresql: serving on 127.0.0.1:$PG_PORT (pid $pid, $(rss_of "$pid"); $(echo $kids | wc -w) children, $((pss / 1024)) MB PSS in all)"
	elif pid_alive "$PG_PID"; then
		echo "postgresql: running (pid $(cat "$PG_PID")) but not answering on 127.0.0.1:$PG_PORT"
		return 1
	else
		echo "postgresql: stopped"
		return 1
	fi
}

# Temporal's databases and schemas: infra/prod/schema.sh with the server's
# own SQL tool and schema folders (build.sh copies them out of the module).
pg_schema() {
	prod_need_bin temporal-sql-tool || return 1
	if [ ! -d "$PROD_DIR/schema/postgresql" ]; then
		echo "prod: $PROD_DIR/schema is missing; run infra/prod/build.sh (make prod-build)" >&2
		return 1
	fi
	SQL_TOOL=$PROD_BIN/temporal-sql-tool SCHEMA_DIR=$PROD_DIR/schema \
	POSTGRES_SEEDS=127.0.0.1 DB_PORT=$PG_PORT POSTGRES_USER=$PG_USER POSTGRES_PWD=$PG_PASSWORD \
		"$PROD_CONF/schema.sh" >"$PROD_LOGS/schema.log" 2>&1 || {
		echo "prod: schema setup failed; last lines of $PROD_LOGS/schema.log:" >&2
		tail -20 "$PROD_LOGS/schema.log" >&2
		return 1
	}
	prod_log "schemas of databases temporal and temporal_visibility up to date (log $PROD_LOGS/schema.log)"
}

# --- Temporal server ---------------------------------------------------------

temporal_start() {
	prod_need_bin temporal-server || return 1
	if pid_alive "$TEMPORAL_PID"; then
		prod_log "temporal-server already running (pid $(cat "$TEMPORAL_PID"))"
		return 0
	fi
	refuse_taken "$TEMPORAL_PORT" temporal-server "$TEMPORAL_PID" KEELSON_PROD_TEMPORAL_PORT || return 1
	local envs; mapfile -t envs < <(temporal_env)
	# setsid: the server outlives this script and a Ctrl-C of its terminal.
	env "${envs[@]}" setsid "$PROD_BIN/temporal-server" \
		--root "$PROD_CONF" --config . --env temporal --allow-no-auth start \
		>>"$TEMPORAL_LOG" 2>&1 </dev/null &
	echo $! >"$TEMPORAL_PID"
	wait_ready temporal-server "$TEMPORAL_PID" "$TEMPORAL_LOG" 120 temporal_healthy || return 1
	prod_log "temporal-server serving on $TEMPORAL_ADDRESS (pid $(cat "$TEMPORAL_PID"), log $TEMPORAL_LOG)"
}

temporal_stop() {
	stop_pid "$TEMPORAL_PID" temporal-server 30
}

temporal_status() {
	if pid_alive "$TEMPORAL_PID" && temporal_healthy; then
		echo "temporal-server: serving on $TEMPORAL_ADDRESS (pid $(cat "$TEMPORAL_PID"), $(rss_of "$(cat "$TEMPORAL_PID")"))"
	elif pid_alive "$TEMPORAL_PID"; then
		echo "temporal-server: running (pid $(cat "$TEMPORAL_PID")) but not answering on $TEMPORAL_ADDRESS"
		return 1
	else
		echo "temporal-server: stopped"
		return 1
	fi
}

# Keelson's namespace and search attributes (infra/prod/namespace.sh).
temporal_namespace() {
	TEMPORAL_CLI=$TEMPORAL_CLI TEMPORAL_ADDRESS=$TEMPORAL_ADDRESS TEMPORAL_NAMESPACE=$TEMPORAL_NAMESPACE \
	SEARCH_ATTRIBUTES=$TEMPORAL_SEARCH_ATTRIBUTES \
		"$PROD_CONF/namespace.sh" | sed 's/^/prod: /'
}

# --- Web UI ------------------------------------------------------------------

ui_start() {
	prod_need_bin temporal-ui-server || return 1
	if [ ! -f "$UI_CONFIG/docker.yaml" ]; then
		echo "prod: $UI_CONFIG/docker.yaml is missing; run infra/prod/build.sh (make prod-build)" >&2
		return 1
	fi
	if pid_alive "$UI_PID"; then
		prod_log "temporal-ui-server already running (pid $(cat "$UI_PID"))"
		return 0
	fi
	refuse_taken "$UI_PORT" temporal-ui-server "$UI_PID" KEELSON_PROD_UI_PORT || return 1
	local envs; mapfile -t envs < <(ui_env)
	env "${envs[@]}" setsid "$PROD_BIN/temporal-ui-server" \
		--root "$PROD_DIR/ui" --config config --env docker start \
		>>"$UI_LOG" 2>&1 </dev/null &
	echo $! >"$UI_PID"
	wait_ready temporal-ui-server "$UI_PID" "$UI_LOG" 60 http_ok "$UI_PORT" / || return 1
	prod_log "temporal-ui-server serving http://localhost:$UI_PORT (pid $(cat "$UI_PID"), log $UI_LOG)"
}

ui_stop() {
	stop_pid "$UI_PID" temporal-ui-server 10
}

ui_status() {
	if pid_alive "$UI_PID" && http_ok "$UI_PORT" /; then
		echo "temporal-ui-server: serving http://localhost:$UI_PORT (pid $(cat "$UI_PID"), $(rss_of "$(cat "$UI_PID")"))"
	elif pid_alive "$UI_PID"; then
		echo "temporal-ui-server: running (pid $(cat "$UI_PID")) but not answering on port $UI_PORT"
		return 1
	else
		echo "temporal-ui-server: stopped"
		return 1
	fi
}

# --- moto (S3) ---------------------------------------------------------------

moto_start() {
	if pid_alive "$MOTO_PID"; then
		prod_log "moto already running (pid $(cat "$MOTO_PID"))"
	else
		refuse_taken "$MOTO_PORT" moto "$MOTO_PID" KEELSON_PROD_MOTO_PORT || return 1
		if ! command -v "$MOTO_SERVER" >/dev/null; then
			echo "prod: $MOTO_SERVER not found on PATH; install moto (pip install 'moto[server]>=5.2,<5.3') or set KEELSON_MOTO_SERVER" >&2
			return 1
		fi
		# The marker in the environment tells prod_pids this Python is ours.
		env "$MOTO_OWNER_ENV" setsid "$MOTO_SERVER" -H 127.0.0.1 -p "$MOTO_PORT" >>"$MOTO_LOG" 2>&1 </dev/null &
		echo $! >"$MOTO_PID"
		wait_ready moto "$MOTO_PID" "$MOTO_LOG" 60 http_ok "$MOTO_PORT" /moto-api/ || return 1
		prod_log "moto serving on $MOTO_URL (pid $(cat "$MOTO_PID"), log $MOTO_LOG)"
	fi
	# moto keeps everything in memory: every start is empty.
	S3_ENDPOINT=$MOTO_URL S3_BUCKET=$S3_BUCKET AWS_REGION=us-east-1 \
	AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
		"${KEELSON_PROD_PYTHON:-python3}" "$PROD_CONF/bucket.py" | sed 's/^/prod: /'
}

moto_stop() {
	stop_pid "$MOTO_PID" moto 10
}

moto_status() {
	if pid_alive "$MOTO_PID" && http_ok "$MOTO_PORT" /moto-api/; then
		echo "moto: serving S3 on $MOTO_URL (pid $(cat "$MOTO_PID"), $(rss_of "$(cat "$MOTO_PID")"))"
	elif pid_alive "$MOTO_PID"; then
		echo "moto: running (pid $(cat "$MOTO_PID")) but not answering on $MOTO_URL"
		return 1
	else
		echo "moto: stopped"
		return 1
	fi
}

# --- Keelson workers ---------------------------------------------------------

# worker_artifacts NAME: the worker's artifact store URL.
worker_artifacts() { echo "${PROD_ARTIFACTS//\{worker\}/$1}"; }

worker_start() {
	local w=$1 dir pidfile log port artifacts
	dir=$(worker_dir "$w") pidfile=$(worker_pidfile "$w") log=$(worker_log "$w")
	port=${WORKER_HTTP_PORT[$w]} artifacts=$(worker_artifacts "$w")
	if [ ! -x "$WORKER_BIN" ]; then
		echo "prod: $WORKER_BIN is missing; run make build" >&2
		return 1
	fi
	if pid_alive "$pidfile"; then
		prod_log "worker-$w already running (pid $(cat "$pidfile"))"
		return 0
	fi
	refuse_taken "$port" "worker-$w" "$pidfile" "KEELSON_PROD_WORKER_${w^^}_PORT" || return 1
	[ -f "$PROD_KUBECONFIG" ] || prod_log "worker-$w: no $PROD_KUBECONFIG (the lab is not up): releases fail at their first Helm step until make up"
	mkdir -p "$dir/work"
	[ -f "$dir/terraformrc" ] || : >"$dir/terraformrc"
	# The worker runs in its own folder; its arguments name only files of
	# this topology (the lab's `down` stops workers whose arguments name
	# .cache/lab: the kubeconfig goes in the environment). No identity
	# option exists: Temporal's default, PID@host, tells the two apart.
	# No payload keys, as in docker-compose.yml, whatever the caller's
	# environment holds: a worker started from a shell with the lab's
	# KEELSON_CODEC_KEYS would encrypt what the other cannot read.
	(
		cd "$dir"
		KEELSON_PROMETHEUS_URL=$PROD_PROMETHEUS_URL \
		KUBECONFIG=$PROD_KUBECONFIG \
		TF_CLI_CONFIG_FILE=$dir/terraformrc \
		AWS_ENDPOINT_URL=$PROD_AWS_ENDPOINT \
		AWS_ENDPOINT_URL_S3=$MOTO_URL \
		AWS_ACCESS_KEY_ID=test \
		AWS_SECRET_ACCESS_KEY=test \
		AWS_REGION=us-east-1 \
		KEELSON_ARTIFACTS=$artifacts \
		KEELSON_FLEET=${KEELSON_PROD_FLEET:-true} \
		KEELSON_CODEC_KEYS= KEELSON_CODEC_TOKEN= KEELSON_CODEC_TOKEN_FILE= \
		exec setsid "$WORKER_BIN" \
			--temporal-address "$TEMPORAL_ADDRESS" \
			--namespace "$TEMPORAL_NAMESPACE" \
			--task-queue "$TASK_QUEUE" \
			--artifacts "$artifacts" \
			--work-dir "$dir/work" \
			--http-addr "127.0.0.1:$port" \
			--ui-url "http://localhost:$UI_PORT" \
			>>"$log" 2>&1 </dev/null
	) &
	echo $! >"$pidfile"
	wait_ready "worker-$w" "$pidfile" "$log" 60 http_ok "$port" /readyz || return 1
	# A worker that reads --artifacts as a folder takes a URL (s3://...,
	# file://...) for a relative folder name, in its working folder, and
	# starts: its artifacts would stay on its own disk, where the other
	# worker cannot read them (a plan made by one, applied by the other).
	local scheme=${artifacts%%://*}
	if [ "$scheme" != "$artifacts" ] && [ -e "$dir/$scheme:" ]; then
		stop_pid "$pidfile" "worker-$w" 15
		rm -rf "${dir:?}/$scheme:"
		echo "prod: this keelson-worker took $artifacts for a folder name (it reads no $scheme:// URL); set KEELSON_PROD_ARTIFACTS, e.g. to $PROD_DIR/worker-{worker}/artifacts" >&2
		return 1
	fi
	prod_log "worker-$w ready on task queue $TASK_QUEUE (pid $(cat "$pidfile"), http://127.0.0.1:$port, artifacts $artifacts, log $log)"
}

worker_stop() {
	stop_pid "$(worker_pidfile "$1")" "worker-$1" 15
}

worker_status() {
	local w=$1 pidfile port
	pidfile=$(worker_pidfile "$w") port=${WORKER_HTTP_PORT[$w]}
	if pid_alive "$pidfile" && http_ok "$port" /readyz; then
		local pid art; pid=$(cat "$pidfile")
		# What it was started with, which KEELSON_PROD_ARTIFACTS may change.
		art=$(tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | sed -n 's/^KEELSON_ARTIFACTS=//p')
		echo "worker-$w: ready on http://127.0.0.1:$port (pid $pid, $(rss_of "$pid")), artifacts ${art:-?}"
	elif pid_alive "$pidfile"; then
		echo "worker-$w: running (pid $(cat "$pidfile")) but not ready; see $(worker_log "$w")"
		return 1
	else
		echo "worker-$w: stopped"
		return 1
	fi
}

# --- command line ------------------------------------------------------------

service_cmd() {
	local svc=$1 verb=$2 prefix arg=()
	case $svc in
	postgresql) prefix=pg ;;
	temporal | ui | moto) prefix=$svc ;;
	worker-a | worker-b) prefix=worker arg=("${svc#worker-}") ;;
	*) echo "prod: unknown service $svc (postgresql, temporal, ui, moto, worker-a, worker-b)" >&2; return 2 ;;
	esac
	case $verb in
	start) prod_timed "$svc start" "${prefix}_start" "${arg[@]}" ;;
	stop) prod_timed "$svc stop" "${prefix}_stop" "${arg[@]}" ;;
	restart) "${prefix}_stop" "${arg[@]}"; prod_timed "$svc start" "${prefix}_start" "${arg[@]}" ;;
	status) "${prefix}_status" "${arg[@]}" ;;
	*) echo "usage: $0 SERVICE start|stop|restart|status" >&2; return 2 ;;
	esac
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	[ $# -eq 2 ] || { echo "usage: $0 postgresql|temporal|ui|moto|worker-a|worker-b start|stop|restart|status" >&2; exit 2; }
	service_cmd "$1" "$2"
fi
