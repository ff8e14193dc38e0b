#!/usr/bin/env bash
# The lab's Prometheus (Debian's package, /usr/bin/prometheus; build.sh
# installs it) on 127.0.0.1:9390 (KEELSON_PROMETHEUS_PORT): start | stop |
# restart | status. It scrapes the traffic generator every second, so canary
# analysis has the applications' request rates, errors and latencies two
# seconds after users reach a new version. Its
# configuration is written into .cache/lab at every start and its data
# stays in .cache/lab/prometheus. The package's own service (port 9090,
# /etc/prometheus) is not this one and is not used.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

write_config() {
	cat >"$PROMETHEUS_CONFIG.tmp" <<-EOT
		# Written by infra/lab/prometheus.sh at every start.
		global:
		  scrape_interval: 1s
		  scrape_timeout: 1s
		  evaluation_interval: 1s
		scrape_configs:
		  - job_name: keelson-traffic
		    static_configs:
		      - targets: ['127.0.0.1:$TRAFFIC_PORT']
	EOT
	mv "$PROMETHEUS_CONFIG.tmp" "$PROMETHEUS_CONFIG"
}

start() {
	if pid_alive "$PROMETHEUS_PID"; then
		lab_log "prometheus already running (pid $(cat "$PROMETHEUS_PID"))"
		return 0
	fi
	if port_open "$PROMETHEUS_PORT"; then
		echo "lab: port $PROMETHEUS_PORT is taken by a process that is not the lab's Prometheus (no live $PROMETHEUS_PID); stop it or set KEELSON_PROMETHEUS_PORT" >&2
		return 1
	fi
	if [ ! -x "$PROMETHEUS_BIN" ]; then
		echo "lab: $PROMETHEUS_BIN is missing; run infra/lab/build.sh (make lab-build), which installs Debian's prometheus package" >&2
		return 1
	fi
	mkdir -p "$PROMETHEUS_DATA"
	write_config
	setsid "$PROMETHEUS_BIN" \
		--config.file="$PROMETHEUS_CONFIG" \
		--storage.tsdb.path="$PROMETHEUS_DATA" \
		--storage.tsdb.retention.time=7d \
		--web.listen-address="127.0.0.1:$PROMETHEUS_PORT" \
		--log.level=warn \
		>>"$PROMETHEUS_LOG" 2>&1 </dev/null &
	echo $! >"$PROMETHEUS_PID"
	wait_ready prometheus "$PROMETHEUS_PID" "$PROMETHEUS_LOG" 60 http_ok "$PROMETHEUS_PORT" /-/ready || return 1
	lab_log "prometheus serving on $PROMETHEUS_URL, scraping $TRAFFIC_URL every second (pid $(cat "$PROMETHEUS_PID"), data $PROMETHEUS_DATA, log $PROMETHEUS_LOG)"
}

stop() {
	# Prometheus closes its TSDB on SIGTERM; give it time before SIGKILL.
	stop_pid "$PROMETHEUS_PID" prometheus 20
}

status() {
	if pid_alive "$PROMETHEUS_PID" && http_ok "$PROMETHEUS_PORT" /-/ready; then
		echo "prometheus: serving on $PROMETHEUS_URL (pid $(cat "$PROMETHEUS_PID")), scraping $TRAFFIC_URL"
	elif pid_alive "$PROMETHEUS_PID"; then
		echo "prometheus: running (pid $(cat "$PROMETHEUS_PID")) but not ready on $PROMETHEUS_URL; see $PROMETHEUS_LOG"
		return 1
	else
		echo "prometheus: stopped"
		return 1
	fi
}

case ${1:-} in
start) lab_timed "prometheus start" start ;;
stop) lab_timed "prometheus stop" stop ;;
restart) stop; lab_timed "prometheus start" start ;;
status) status ;;
*) echo "usage: $0 start|stop|restart|status" >&2; exit 2 ;;
esac
