#!/usr/bin/env bash
# Releases the demo application across the local lab's three regions, the
# way a CI job and an approver would: start, approve the gate, watch to the
# end, then show where to look. Usage: infra/demo/demo.sh [VERSION] (1.0.0).
# A version ending in "-unready" shows an automatic rollback instead.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
source infra/lab/lib.sh
# The CLI uploads the release's bundle where the lab's worker reads it.
export KEELSON_ARTIFACTS=${KEELSON_ARTIFACTS:-$WORKER_ARTIFACTS}
# The lab encrypts payloads; the CLI reads them with the lab's key.
export KEELSON_CODEC_KEYS=${KEELSON_CODEC_KEYS:-$LAB_CODEC_KEYS}

version=${1:-${VERSION:-1.0.0}}
keelson=$root/bin/keelson
gate=promote-to-rest
approver=demo-approver   # one of the gate's approvers in infra/demo/release.yaml

say() { printf '\n==> %s\n' "$*"; }

say "Building Keelson and starting the local stack"
make --no-print-directory up # builds first

phase() {
	# The release's own phase is the first "phase" key; waves and regions follow.
	"$keelson" release status "$id" -o json | grep -o '"phase": *"[^"]*"' | head -1 | sed 's/.*"\([^"]*\)"$/\1/'
}

# where_to_look: the places a person checks what the release did.
where_to_look() {
	say "Where to look"
	echo "Temporal Web UI:  http://localhost:$TEMPORAL_UI_PORT/namespaces/default/workflows/$id"
	for region in "${LAB_REGIONS[@]}"; do
		echo
		echo "\$ kubectl --kubeconfig .cache/lab/kubeconfig --context $region -n demo get deploy"
		kubectl --kubeconfig "$LAB_KUBECONFIG" --context "$region" -n demo get deploy || true
		echo "\$ helm --kubeconfig .cache/lab/kubeconfig --kube-context $region -n demo history demo"
		helm --kubeconfig "$LAB_KUBECONFIG" --kube-context "$region" -n demo history demo || true
	done
	echo
}

# demo_release VERSION: start it, follow the canary region, approve the gate,
# watch it to the end.
demo_release() {
	local version=$1
	say "Starting the release of demo $version (what CI runs after building an image)"
	echo "\$ bin/keelson release start -f infra/demo/release.yaml --version $version"
	if ! out=$("$keelson" release start -f infra/demo/release.yaml --version "$version" 2>&1); then
		echo "$out"
		case $out in
		*"already succeeded"*)
			# Keelson refuses to release a version again by accident; the demo
			# asks for it explicitly (a re-run changes nothing already deployed).
			echo "\$ bin/keelson release start -f infra/demo/release.yaml --version $version --rerun"
			out=$("$keelson" release start -f infra/demo/release.yaml --version "$version" --rerun)
			;;
		*) exit 1 ;;
		esac
	fi
	echo "$out"
	id=$(echo "$out" | sed -n '1s/^release: *//p')
	if [ -z "$id" ]; then
		echo "demo: could not read the release id from the first line of the output above" >&2
		exit 1
	fi

	say "Waiting for the canary wave to finish and the gate $gate to open"
	last=
	lastline=
	while :; do
		p=$(phase || true)
		if [ -n "$p" ] && [ "$p" != "$last" ]; then
			echo "  phase: $p"
			last=$p
		fi
		# The canary region's step and traffic weights, as they move.
		line=$("$keelson" release status "$id" 2>/dev/null | awk '$2 == "us-east-1" {$1=""; print}' | sed 's/  */ /g' || true)
		if [ -n "$line" ] && [ "$line" != "$lastline" ]; then
			echo "  $line"
			lastline=$line
		fi
		case $p in
		awaiting-approval) break ;;
		succeeded | failed | rolled-back | rejected | aborted)
			echo "The release ended as $p before reaching the gate."
			"$keelson" release status "$id" || true
			return 1 ;;
		esac
		sleep 1
	done

	say "The release waits at the gate $gate for one of its approvers"
	cat <<-EOT
	A person approves from Slack (the Approve button on the release message),
	from the Temporal Web UI or CLI (the "approve" update), or with Keelson's CLI:
	    KEELSON_CODEC_KEYS=$LAB_CODEC_KEYS keelson approve $id --gate $gate --user <you>
	(the lab encrypts payloads as production would; the CLI holds its key).
	The demo approves it now as "$approver":
	\$ bin/keelson approve $id --gate $gate --user $approver --reason "demo: canary looks good"
	EOT
	"$keelson" approve "$id" --gate "$gate" --user "$approver" --reason "demo: canary looks good"

	say "Watching the release to the end"
	"$keelson" release watch "$id"
}

# A canary needs a stable version to compare with and to send users back to;
# a first install goes all at once. On a fresh lab the demo installs 0.9.0
# first, so that the release asked for shows its canary; so it does where
# a first install was rolled back, which uninstalls it and keeps its
# history (helm status then answers "uninstalled", and exits 0).
if ! helm --kubeconfig "$LAB_KUBECONFIG" --kube-context us-east-1 -n demo status demo -o json 2>/dev/null |
	grep -q '"status":"deployed"'; then
	say "demo is not installed yet: installing 0.9.0 first (a first install goes all at once)"
	demo_release 0.9.0 || { where_to_look; exit 1; }
fi
rc=0
demo_release "$version" || rc=$?
case $version in
*-errors | *-slow | *-unready)
	# A bad version is meant to be caught: the demo succeeded when the
	# release rolled itself back.
	if [ "$rc" -ne 0 ] && [ "$(phase)" = rolled-back ]; then
		say "demo $version was caught and rolled back, as it should be"
		rc=0
	fi
	;;
esac
where_to_look
echo "The lab keeps running; stop it with: make down"
exit $rc
