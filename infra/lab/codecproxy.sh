#!/usr/bin/env bash
# The lab's codec proxy (bin/keelson-codec-proxy, built by `make build` from
# infra/codecproxy): start | stop | restart | status. The dev server's Web
# UI calls it (--ui-codec-endpoint, temporal.sh) to decode the lab's
# encrypted payloads; it forwards to the lab worker's /codec/ with the
# worker's token added, which a browser cannot send (docs/codec.md).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

WORKER_HTTP_PORT=${KEELSON_WORKER_HTTP_PORT:-8095}

start() {
	if [ ! -x "$CODECPROXY_BIN" ]; then
		echo "lab: $CODECPROXY_BIN is missing; run make build" >&2
		return 1
	fi
	if pid_alive "$CODECPROXY_PID"; then
		lab_log "codec proxy already running (pid $(cat "$CODECPROXY_PID"))"
		return 0
	fi
	if port_open "$CODECPROXY_PORT"; then
		echo "lab: port $CODECPROXY_PORT is taken by a process that is not the lab's codec proxy (no live $CODECPROXY_PID); stop it or set KEELSON_CODEC_PROXY_PORT" >&2
		return 1
	fi
	lab_codec_secrets
	setsid "$CODECPROXY_BIN" \
		--listen "127.0.0.1:$CODECPROXY_PORT" \
		--upstream "http://127.0.0.1:$WORKER_HTTP_PORT" \
		--token-file "$LAB_CODEC_TOKEN" \
		>>"$CODECPROXY_LOG" 2>&1 </dev/null &
	echo $! >"$CODECPROXY_PID"
	wait_ready "codec proxy" "$CODECPROXY_PID" "$CODECPROXY_LOG" 30 http_ok "$CODECPROXY_PORT" /healthz || return 1
	lab_log "codec proxy serving on $CODECPROXY_URL for the Web UI, to the worker on 127.0.0.1:$WORKER_HTTP_PORT (pid $(cat "$CODECPROXY_PID"), log $CODECPROXY_LOG)"
}

stop() {
	stop_pid "$CODECPROXY_PID" "codec proxy" 10
}

status() {
	if pid_alive "$CODECPROXY_PID" && http_ok "$CODECPROXY_PORT" /healthz; then
		echo "codec proxy: serving on $CODECPROXY_URL (pid $(cat "$CODECPROXY_PID"))"
	elif pid_alive "$CODECPROXY_PID"; then
		echo "codec proxy: running (pid $(cat "$CODECPROXY_PID")) but not answering; see $CODECPROXY_LOG"
		return 1
	else
		echo "codec proxy: stopped"
		return 1
	fi
}

case ${1:-} in
start) lab_timed "codec proxy start" start ;;
stop) lab_timed "codec proxy stop" stop ;;
restart) stop; lab_timed "codec proxy start" start ;;
status) status ;;
*) echo "usage: $0 start|stop|restart|status" >&2; exit 2 ;;
esac
