#!/bin/sh
# Creates Keelson's namespace on a Temporal server that has none (a server
# on a database of its own starts without any), and registers the search
# attributes the Release workflow upserts (the lab's dev server gets them
# from --search-attribute flags). Idempotent: what exists is left alone.
# POSIX sh: infra/prod/up.sh runs it with the lab's temporal CLI, and
# docker-compose.yml in the temporalio/admin-tools image.
#
# Environment: TEMPORAL_ADDRESS (host:port of the frontend), TEMPORAL_CLI
# (temporal), TEMPORAL_NAMESPACE (default), NAMESPACE_RETENTION (720h:
# closed releases stay visible for the 30 days of the DORA figures),
# SEARCH_ATTRIBUTES (Keelson's three Keyword attributes), WAIT_SECONDS.
set -eu

: "${TEMPORAL_CLI:=temporal}"
: "${TEMPORAL_ADDRESS:=127.0.0.1:7233}"
: "${TEMPORAL_NAMESPACE:=default}"
: "${NAMESPACE_RETENTION:=720h}"
: "${SEARCH_ATTRIBUTES:=KeelsonApplication KeelsonVersion KeelsonPhase}"
export TEMPORAL_ADDRESS

t() { "$TEMPORAL_CLI" "$@"; }

# WAIT_SECONDS (0): how long to wait for the server to answer first (a
# container started with it; up.sh waits itself).
i=0
while ! t operator cluster health 2>/dev/null | grep -q SERVING; do
	if [ "$i" -ge "${WAIT_SECONDS:-0}" ]; then
		echo "namespace: Temporal does not answer on $TEMPORAL_ADDRESS" >&2
		exit 1
	fi
	i=$((i + 1))
	sleep 1
done

if t operator namespace describe --namespace "$TEMPORAL_NAMESPACE" >/dev/null 2>&1; then
	echo "namespace: $TEMPORAL_NAMESPACE exists"
else
	t operator namespace create --namespace "$TEMPORAL_NAMESPACE" --retention "$NAMESPACE_RETENTION" >/dev/null
	echo "namespace: $TEMPORAL_NAMESPACE created (retention $NAMESPACE_RETENTION)"
fi

# A new namespace reaches the frontend's namespace cache some seconds after
# its creation; until then it is "not found".
i=0
until existing=$(t operator search-attribute list --namespace "$TEMPORAL_NAMESPACE" 2>&1); do
	if [ "$i" -ge 30 ]; then
		printf '%s\n' "$existing" >&2
		exit 1
	fi
	i=$((i + 1))
	sleep 1
done
created=
for name in $SEARCH_ATTRIBUTES; do
	if printf '%s\n' "$existing" | grep -qw "$name"; then
		echo "namespace: search attribute $name exists"
		continue
	fi
	t operator search-attribute create --namespace "$TEMPORAL_NAMESPACE" --name "$name" --type Keyword >/dev/null
	echo "namespace: search attribute $name created (Keyword)"
	created="$created $name"
done

# Listed by the frontend: every service has them within a namespace cache
# refresh (2s).
i=0
for name in $created; do
	until t operator search-attribute list --namespace "$TEMPORAL_NAMESPACE" 2>/dev/null | grep -qw "$name"; do
		if [ "$i" -ge 30 ]; then
			echo "namespace: search attribute $name not listed 30s after its creation" >&2
			exit 1
		fi
		i=$((i + 1))
		sleep 1
	done
done
