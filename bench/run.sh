#!/usr/bin/env bash
# make bench: Keelson's performance figures on the running lab (make up),
# each printed with its target (issue 12) and written as JSON lines to
# .cache/bench/bench-UTCSTAMP.jsonl, one object per figure with the
# machine's core count, for a later run to be compared with this one:
#
#   make up && make bench
#   diff <(jq -r '"\(.name) \(.value)"' .cache/bench/bench-A.jsonl) \
#        <(jq -r '"\(.name) \(.value)"' .cache/bench/bench-B.jsonl)
#
# What it runs (integration/bench_test.go and the figures tests, -tags bench):
#   overhead per step of a release whose steps cost nothing, and a demo-like
#     release's wall time against its steps' and bakes' own time;
#   Helm and Terraform through Keelson's activities against their CLIs;
#   the recovery from a worker's SIGKILL, over 10 kills;
#   many releases at once on the one worker, held in their bake
#     (KEELSON_BENCH_LOADS, 100; KEELSON_BENCH_LOADS=100,500,1000 for the
#     full count: about 26 more minutes on two cores, where the dev server
#     starts the releases' steps at about two releases a second);
#   the size of a release's history (3 and 10 regions, a canary);
#   approvals from Slack to the next activity, over 100;
#   make demo with the lab up (and from a stopped lab with
#     KEELSON_BENCH_DEMO_COLD=1, which stops and starts the lab).
# In that order, but many releases last: the lab stays busy for minutes
# after them, which the latency figures would count as Keelson's.
# KEELSON_BENCH_RUN selects tests by go test -run pattern (no demo then).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
lab=$root/.cache/lab
out=$root/.cache/bench
mkdir -p "$out"
json=$out/bench-$(date -u +%Y%m%dT%H%M%SZ).jsonl
: >"$json"
start=$(date +%s)

if ! infra/lab/status.sh >/dev/null 2>&1; then
	echo "bench: the lab is not up: run make up first" >&2
	exit 1
fi
# The worker measured is the one just built, started afresh.
infra/lab/worker.sh restart >/dev/null

export KEELSON_BENCH_OUT=$json KEELSON_BENCH=1 \
	KEELSON_LAB=1 KEELSON_LAB_DIR=$lab KEELSON_LAB_BIN=$lab/bin KEELSON_LAB_SCRIPTS=$root/infra/lab \
	KEELSON_BIN=$root/bin KEELSON_KUBECONFIG=$lab/kubeconfig KUBECONFIG=$lab/kubeconfig \
	TEMPORAL_ADDRESS=${TEMPORAL_ADDRESS:-127.0.0.1:7233} \
	KEELSON_CODEC_KEYS=lab=file:$lab/codec.key TF_CLI_CONFIG_FILE=$lab/terraformrc \
	PATH=$lab/bin:$root/bin:$PATH
export KEELSON_BENCH_LOADS=${KEELSON_BENCH_LOADS:-100}
export KEELSON_BENCH_RUNS=${KEELSON_BENCH_RUNS:-3}

echo "bench: $(nproc) cores, $(go version | cut -d' ' -f3), commit $(git rev-parse --short HEAD 2>/dev/null || echo none); figures in $json"
rc=0
bench_go() { # PATTERN
	go test -tags bench -ldflags='-s -w' -count=1 -timeout 45m -v -run "$1" \
		./integration/ 2>&1 | grep --line-buffered -E '^(BENCH|--- |FAIL|ok |panic)|_test.go:[0-9]+: .*(Error|failed|want)' || rc=$?
}
# The figures of latency first, each on a quiet lab; the hundreds of
# releases last: the dev server and the clusters are busy for minutes after
# them (lanes ending, namespaces deleted), which a figure measured then
# would count as Keelson's.
if [ -n "${KEELSON_BENCH_RUN:-}" ]; then
	bench_go "$KEELSON_BENCH_RUN"
else
	bench_go '^(TestBench(Overhead|ToolRatios|Recovery)|TestFiguresHistorySize|TestSlackBenchApprovalLatency)$'
fi

# make demo, timed as a person runs it (it approves its own gate).
demo() {
	local t0; t0=$(date +%s%N)
	if ! make --no-print-directory demo VERSION="$1" >"$out/demo.log" 2>&1; then
		echo "bench: make demo failed; see $out/demo.log" >&2
		return 1
	fi
	echo $(( ($(date +%s%N) - t0) / 1000000 ))
}
figure() { # NAME VALUE UNIT MAX DETAIL
	local met=true
	awk -v v="$2" -v m="$4" 'BEGIN { exit !(v <= m) }' || met=false
	printf 'BENCH %-40s %12s %-8s  (target ≤ %s: %s)  %s\n' "$1" "$2" "$3" "$4" "$([ $met = true ] && echo met || echo MISSED)" "$5"
	printf '{"name":"%s","value":%s,"unit":"%s","max":%s,"met":%s,"detail":"%s","cores":%d,"at":"%s"}\n' \
		"$1" "$2" "$3" "$4" "$met" "$5" "$(nproc)" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$json"
}
stamp=$(date +%s)
if [ -n "${KEELSON_BENCH_RUN:-}" ]; then
	: # the tests asked for only
elif ms=$(demo "1.$stamp.0"); then
	figure demo.lab_up "$(awk -v ms="$ms" 'BEGIN { printf "%.1f", ms / 1000 }')" s 30 \
		"make demo with the lab up (its release waits 9 s per wave by configuration: a 2 s pause, 3 s and 2 s analyses, a 2 s bake; two waves)"
else
	rc=1
fi
if [ -z "${KEELSON_BENCH_RUN:-}" ] && [ "${KEELSON_BENCH_DEMO_COLD:-0}" = 1 ]; then
	make --no-print-directory down >/dev/null
	if ms=$(demo "1.$stamp.1"); then
		figure demo.lab_stopped "$(awk -v ms="$ms" 'BEGIN { printf "%.1f", ms / 1000 }')" s 60 "make demo from a stopped lab (make up included)"
	else
		rc=1
	fi
fi

if [ -z "${KEELSON_BENCH_RUN:-}" ]; then
	bench_go '^TestBenchManyReleases$'
fi

total=$(( $(date +%s) - start ))
met=$(grep -c '"met":true' "$json" || true)
missed=$(grep -c '"met":false' "$json" || true)
echo "bench: $(wc -l <"$json") figures in ${total}s; targets met $met, missed $missed; $json"
exit $rc
