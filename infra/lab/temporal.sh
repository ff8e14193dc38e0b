#!/usr/bin/env bash
# The lab's Temporal dev server alone: start | stop | restart | status.
# The integration tests restart it in the middle of a release; it keeps its
# state in .cache/lab/temporal.db, so a restart resumes where it stopped.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

# temporal_healthy: the frontend answers a health check.
temporal_healthy() {
	"$LAB_BIN/temporal" operator cluster health --address "$TEMPORAL_ADDRESS" >/dev/null 2>&1
}

start() {
	need_bin temporal
	if pid_alive "$TEMPORAL_PID"; then
		lab_log "temporal already running (pid $(cat "$TEMPORAL_PID"))"
		return 0
	fi
	# Someone else's server on our port would take our releases: refuse.
	if port_open "$TEMPORAL_PORT"; then
		echo "lab: port $TEMPORAL_PORT is taken by a process that is not the lab's Temporal server (no live $TEMPORAL_PID); stop it or set KEELSON_TEMPORAL_PORT" >&2
		return 1
	fi
	# setsid: the server outlives this script and a Ctrl-C of the terminal
	# that started it; it is stopped by pid with `stop`. Eager activity
	# execution as in the prod topology (infra/prod/dynamicconfig.yaml says
	# why).
	#
	# SQLite in write-ahead-log mode: the dev server writes through one
	# connection, and in SQLite's default rollback-journal mode every
	# transaction creates, syncs and deletes a journal file. That made the
	# server the lab's bottleneck (a core busy, 70 to 190 ms between a
	# workflow task scheduled and started; make bench's approvals measured
	# 381 to 456 ms at the median, 238 to 279 ms with WAL). synchronous=normal
	# keeps every commit through a crash of the server (the tests kill and
	# restart it); only a crash of the machine may lose the last ones, which
	# the lab can afford.
	setsid "$LAB_BIN/temporal" server start-dev \
		--db-filename "$TEMPORAL_DB" \
		--ip "$TEMPORAL_IP" --port "$TEMPORAL_PORT" --ui-port "$TEMPORAL_UI_PORT" \
		--namespace default \
		--ui-codec-endpoint "$CODECPROXY_URL" \
		--search-attribute KeelsonApplication=Keyword \
		--search-attribute KeelsonVersion=Keyword \
		--search-attribute KeelsonPhase=Keyword \
		--dynamic-config-value system.enableActivityEagerExecution=true \
		--sqlite-pragma journal_mode=wal --sqlite-pragma synchronous=normal \
		--log-level warn \
		>>"$TEMPORAL_LOG" 2>&1 </dev/null &
	echo $! >"$TEMPORAL_PID"
	local i
	for ((i = 0; i < 600; i++)); do
		if temporal_healthy; then
			lab_log "temporal serving on $TEMPORAL_ADDRESS, UI http://localhost:$TEMPORAL_UI_PORT (pid $(cat "$TEMPORAL_PID"), db $TEMPORAL_DB, log $TEMPORAL_LOG)"
			return 0
		fi
		if ! pid_alive "$TEMPORAL_PID"; then
			echo "lab: temporal exited while starting; last lines of $TEMPORAL_LOG:" >&2
			tail -20 "$TEMPORAL_LOG" >&2
			rm -f "$TEMPORAL_PID"
			return 1
		fi
		sleep 0.1
	done
	echo "lab: temporal did not answer on $TEMPORAL_ADDRESS within 60s; see $TEMPORAL_LOG" >&2
	return 1
}

stop() {
	# A dev server flushes SQLite on SIGTERM; give it time before SIGKILL.
	stop_pid "$TEMPORAL_PID" temporal 20
}

status() {
	if pid_alive "$TEMPORAL_PID" && temporal_healthy; then
		echo "temporal: serving on $TEMPORAL_ADDRESS (pid $(cat "$TEMPORAL_PID")), UI http://localhost:$TEMPORAL_UI_PORT"
	elif pid_alive "$TEMPORAL_PID"; then
		echo "temporal: running (pid $(cat "$TEMPORAL_PID")) but not answering on $TEMPORAL_ADDRESS"
		return 1
	else
		echo "temporal: stopped"
		return 1
	fi
}

case ${1:-} in
start) lab_timed "temporal start" start ;;
stop) lab_timed "temporal stop" stop ;;
restart) stop; lab_timed "temporal start" start ;;
status) status ;;
*) echo "usage: $0 start|stop|restart|status" >&2; exit 2 ;;
esac
