#!/usr/bin/env bash
# The lab's traffic generator (bin/keelson-traffic, built by `make build`
# from infra/trafficgen): start | stop | restart | status | setup.
#
#   setup  creates the lab's AWS objects in moto, which starts empty: the
#          Route 53 zone lab.keelson.test, the demo application's weighted
#          records per region (demo.REGION.lab.keelson.test: stable 100,
#          canary 0) and its failover name (demo.lab.keelson.test), and a
#          CloudWatch alarm per region (demo-REGION-errors). Records that
#          exist are left alone, so a running release keeps its weights.
#   start  plays the users: 20 requests a second per application and region
#          (KEELSON_TRAFFIC_RPS), split between the sides by the records'
#          weights, answered as each side's version would; metrics on
#          http://127.0.0.1:9391/metrics (KEELSON_TRAFFIC_PORT) for
#          Prometheus, and in CloudWatch (namespace Keelson/Demo) every 10s.
#          /targets shows what it found, /app/APP/REGION/SIDE answers as the
#          side would.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

need_traffic_bin() {
	if [ ! -x "$TRAFFIC_BIN" ]; then
		echo "lab: $TRAFFIC_BIN is missing; run make build" >&2
		return 1
	fi
}

# traffic ARGS...: runs ARGS with the lab's AWS environment (lib.sh).
traffic() {
	env "${LAB_AWS_ENV[@]}" "$@"
}

setup() {
	need_traffic_bin
	if [ ! -s "$LAB_KUBECONFIG" ]; then
		echo "lab: $LAB_KUBECONFIG is missing: setup creates records for the regions of its contexts (start the clusters first)" >&2
		return 1
	fi
	traffic "$TRAFFIC_BIN" setup --endpoint "$MOTO_URL" --zone "$LAB_ZONE" --kubeconfig "$LAB_KUBECONFIG" \
		--apps "$LAB_APPS" --namespace "$LAB_APP_NAMESPACE" >>"$TRAFFIC_LOG" 2>&1 || {
		echo "lab: keelson-traffic setup failed; last lines of $TRAFFIC_LOG:" >&2
		tail -20 "$TRAFFIC_LOG" >&2
		return 1
	}
	lab_log "zone $LAB_ZONE, records and alarms of $LAB_APPS set up in $MOTO_URL"
}

# scraped_since UNIX: Prometheus's last successful scrape of the generator
# is from UNIX or later (a sample from before the lab stopped does not count).
scraped_since() {
	local answer
	# timestamp(up{job="keelson-traffic"} == 1) >= UNIX, URL-encoded
	answer=$(http_get "$PROMETHEUS_PORT" "/api/v1/query?query=timestamp%28up%7Bjob%3D%22keelson-traffic%22%7D%3D%3D1%29%3E%3D$1") || return 1
	[[ $answer == *'"result":[{'* ]]
}

start() {
	need_traffic_bin
	if pid_alive "$TRAFFIC_PID"; then
		lab_log "traffic generator already running (pid $(cat "$TRAFFIC_PID"))"
		return 0
	fi
	if port_open "$TRAFFIC_PORT"; then
		echo "lab: port $TRAFFIC_PORT is taken by a process that is not the lab's traffic generator (no live $TRAFFIC_PID); stop it or set KEELSON_TRAFFIC_PORT" >&2
		return 1
	fi
	# Not through traffic(): a function in the background is a subshell,
	# and the pid would be its, not the generator's.
	env "${LAB_AWS_ENV[@]}" setsid "$TRAFFIC_BIN" run \
		--endpoint "$MOTO_URL" \
		--zone "$LAB_ZONE" \
		--kubeconfig "$LAB_KUBECONFIG" \
		--listen "127.0.0.1:$TRAFFIC_PORT" \
		--rps "$TRAFFIC_RPS" \
		>>"$TRAFFIC_LOG" 2>&1 </dev/null &
	echo $! >"$TRAFFIC_PID"
	wait_ready "traffic generator" "$TRAFFIC_PID" "$TRAFFIC_LOG" 30 http_ok "$TRAFFIC_PORT" /healthz || return 1
	# The lab is up when a release's analysis finds figures: right after a
	# start, Prometheus had not scraped the generator for the first seconds
	# (the demo's canary from a stopped lab found no data three times in a
	# row and paused), so wait for a scrape that succeeded since this start.
	if pid_alive "$PROMETHEUS_PID"; then
		local since; since=$(date +%s)
		wait_ready "traffic generator" "$TRAFFIC_PID" "$TRAFFIC_LOG" 30 scraped_since "$since" || {
			echo "lab: Prometheus ($PROMETHEUS_URL) has not scraped the traffic generator within 30s; see $LAB_DIR/prometheus.log" >&2
			return 1
		}
	fi
	lab_log "traffic generator serving on $TRAFFIC_URL, $TRAFFIC_RPS requests/s per application and region (pid $(cat "$TRAFFIC_PID"), log $TRAFFIC_LOG)"
}

stop() {
	stop_pid "$TRAFFIC_PID" "traffic generator" 10
}

status() {
	if pid_alive "$TRAFFIC_PID" && http_ok "$TRAFFIC_PORT" /healthz; then
		echo "traffic: serving on $TRAFFIC_URL (pid $(cat "$TRAFFIC_PID")), targets on $TRAFFIC_URL/targets"
	elif pid_alive "$TRAFFIC_PID"; then
		echo "traffic: running (pid $(cat "$TRAFFIC_PID")) but not answering on $TRAFFIC_URL; see $TRAFFIC_LOG"
		return 1
	else
		echo "traffic: stopped"
		return 1
	fi
}

case ${1:-} in
setup) lab_timed "traffic setup" setup ;;
start) lab_timed "traffic start" start ;;
stop) lab_timed "traffic stop" stop ;;
restart) stop; lab_timed "traffic start" start ;;
status) status ;;
*) echo "usage: $0 start|stop|restart|status|setup" >&2; exit 2 ;;
esac
