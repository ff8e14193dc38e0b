#!/usr/bin/env bash
# The lab's AWS APIs: moto_server (moto 5.2, `pip install 'moto[server]'`)
# on 127.0.0.1:5055 (KEELSON_MOTO_PORT): start | stop | restart | status.
# Route 53 holds the applications' weighted records, CloudWatch their
# metrics and alarms. moto keeps everything in memory: every start is
# empty, and `trafficgen.sh setup` (which up.sh runs) creates the lab's
# zone, records and alarms again. Clients reach it with
# AWS_ENDPOINT_URL=http://127.0.0.1:5055 and any credentials (the lab uses
# testing/testing).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

start() {
	if pid_alive "$MOTO_PID"; then
		lab_log "moto already running (pid $(cat "$MOTO_PID"))"
		return 0
	fi
	if port_open "$MOTO_PORT"; then
		echo "lab: port $MOTO_PORT is taken by a process that is not the lab's moto (no live $MOTO_PID); stop it or set KEELSON_MOTO_PORT" >&2
		return 1
	fi
	if ! command -v "$MOTO_SERVER" >/dev/null; then
		echo "lab: $MOTO_SERVER not found on PATH; install moto (pip install 'moto[server]>=5.2,<5.3') or set KEELSON_MOTO_SERVER" >&2
		return 1
	fi
	# The marker in the environment tells lab_pids this Python is ours;
	# setsid keeps it out of the caller's process group.
	env "$MOTO_OWNER_ENV" setsid "$MOTO_SERVER" -H 127.0.0.1 -p "$MOTO_PORT" >>"$MOTO_LOG" 2>&1 </dev/null &
	echo $! >"$MOTO_PID"
	wait_ready moto "$MOTO_PID" "$MOTO_LOG" 60 http_ok "$MOTO_PORT" /moto-api/ || return 1
	lab_log "moto serving on $MOTO_URL (pid $(cat "$MOTO_PID"), log $MOTO_LOG); it starts empty: run trafficgen.sh setup"
}

stop() {
	stop_pid "$MOTO_PID" moto 10
}

status() {
	if pid_alive "$MOTO_PID" && http_ok "$MOTO_PORT" /moto-api/; then
		echo "moto: serving on $MOTO_URL (pid $(cat "$MOTO_PID"))"
	elif pid_alive "$MOTO_PID"; then
		echo "moto: running (pid $(cat "$MOTO_PID")) but not answering on $MOTO_URL"
		return 1
	else
		echo "moto: stopped"
		return 1
	fi
}

case ${1:-} in
start) lab_timed "moto start" start ;;
stop) lab_timed "moto stop" stop ;;
restart) stop; lab_timed "moto start" start ;;
status) status ;;
*) echo "usage: $0 start|stop|restart|status" >&2; exit 2 ;;
esac
