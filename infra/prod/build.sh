#!/usr/bin/env bash
# Builds the prod topology's binaries once into .cache/prod/bin and skips
# what is already there (a binary is built again when its pinned version
# changes), copies the server's SQL schemas and the UI server's
# configuration next to them, and installs Debian's PostgreSQL where it is
# missing. Everything else comes from the Go module proxy.
# Usage: infra/prod/build.sh [BINDIR]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
prod=${KEELSON_PROD_DIR:-$root/.cache/prod}
bin=${1:-${KEELSON_PROD_BIN:-$prod/bin}}
mkdir -p "$bin"
bin=$(cd "$bin" && pwd)
# The Temporal server, its SQL tool and the Web UI server come from the
# lab's module tools/temporal, which also builds the lab's temporal CLI:
# the CLI embeds this server and this UI server (so both topologies show
# the same UI), and their packages are compiled once for all four.
tools=$root/infra/lab/tools/temporal

total_start=$(date +%s)

# build NAME STAMP COMMAND...: runs COMMAND unless $bin/NAME exists and was
# built from STAMP (a version), and says how long it took.
build() {
	local name=$1 stamp=$2; shift 2
	if [ -x "$bin/$name" ] && [ "$(cat "$bin/.$name.stamp" 2>/dev/null)" = "$stamp" ]; then
		echo "prod: $name already built ($stamp)"
		return 0
	fi
	echo "prod: building $name ($stamp) ..."
	local start; start=$(date +%s)
	"$@"
	echo "$stamp" >"$bin/.$name.stamp"
	echo "prod: built $name in $(( $(date +%s) - start ))s"
}

# gobuild OUT PKG: one command of the tools module, stripped and compiled
# like the lab's (tools/temporal/gcflags.sh), so that the packages the lab
# compiled are found in the build cache.
source "$tools/gcflags.sh"
gobuild() {
	(cd "$tools" && go build "${temporal_gcflags[@]}" -ldflags='-s -w' -o "$bin/$1" "$2")
}

server_version=$(cd "$tools" && go list -m -f '{{.Version}}' go.temporal.io/server)
ui_version=$(cd "$tools" && go list -m -f '{{.Version}}' github.com/temporalio/ui-server/v2)
build temporal-server "go.temporal.io/server@$server_version" gobuild temporal-server go.temporal.io/server/cmd/server
build temporal-sql-tool "go.temporal.io/server@$server_version" gobuild temporal-sql-tool go.temporal.io/server/cmd/tools/sql
# The module's main package is cmd/server, hence the name given here.
build temporal-ui-server "github.com/temporalio/ui-server/v2@$ui_version" gobuild temporal-ui-server github.com/temporalio/ui-server/v2/cmd/server

# The server's SQL schemas (schema/postgresql/v12/{temporal,visibility}/
# versioned), copied out of the module cache so that up.sh needs no Go.
server_dir=$(cd "$tools" && go list -m -f '{{.Dir}}' go.temporal.io/server)
if [ "$(cat "$prod/schema/.stamp" 2>/dev/null)" != "$server_version" ]; then
	rm -rf "$prod/schema"
	mkdir -p "$prod/schema"
	cp -R "$server_dir/schema/postgresql" "$prod/schema/"
	chmod -R u+w "$prod/schema"
	echo "$server_version" >"$prod/schema/.stamp"
	echo "prod: schemas of go.temporal.io/server@$server_version in $prod/schema"
fi

# The UI server's configuration is the module's own config/docker.yaml, a
# template of TEMPORAL_* variables: the file the temporalio/ui image of
# the same version runs with.
if [ "$(cat "$prod/ui/config/.stamp" 2>/dev/null)" != "$ui_version" ]; then
	ui_dir=$(cd "$tools" && go list -m -f '{{.Dir}}' github.com/temporalio/ui-server/v2)
	mkdir -p "$prod/ui/config"
	install -m 644 "$ui_dir/config/docker.yaml" "$prod/ui/config/docker.yaml"
	echo "$ui_version" >"$prod/ui/config/.stamp"
	echo "prod: UI server configuration of $ui_version in $prod/ui/config"
fi

# apt_install PKG...: infra/lab/build.sh's helper (that script builds the
# lab when run, so it is not sourced): Debian packages, with sudo when not
# root, and an apt-get update only when the install needs it.
apt_install() {
	local sudo=()
	[ "$(id -u)" -eq 0 ] || sudo=(sudo)
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" || {
		"${sudo[@]}" apt-get update &&
			"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
	}
}

# PostgreSQL is Debian's package. Its service (cluster `main` on 5432) is
# kept from starting at the install, as infra/lab/build.sh does for
# Prometheus: up.sh runs a cluster of its own in .cache/prod/pg.
install_postgresql() {
	local sudo=() policy=/usr/sbin/policy-rc.d made_policy=
	[ "$(id -u)" -eq 0 ] || sudo=(sudo)
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\n# Written by keelson infra/prod/build.sh for one install.\nexit 101\n' |
			"${sudo[@]}" tee "$policy" >/dev/null
		"${sudo[@]}" chmod 755 "$policy"
		made_policy=1
	fi
	local rc=0
	apt_install postgresql || rc=$?
	[ -z "$made_policy" ] || "${sudo[@]}" rm -f "$policy"
	return $rc
}
pg=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -n "$pg" ] && [ -x "$pg/pg_ctl" ] && [ -x "$pg/initdb" ]; then
	echo "prod: PostgreSQL found in $pg"
else
	echo "prod: installing Debian's postgresql package ..."
	install_postgresql
fi
id postgres >/dev/null 2>&1 || {
	echo "prod: no postgres user after the install; PostgreSQL refuses to run as root" >&2
	exit 1
}

# moto (S3) and boto3 (the bucket) are on these machines, as for the lab.
if ! command -v "${KEELSON_MOTO_SERVER:-moto_server}" >/dev/null 2>&1; then
	echo "prod: moto_server not found on PATH; install moto (pip install 'moto[server]>=5.2,<5.3')" >&2
	exit 1
fi
# The temporal CLI of the lab talks to our frontend (namespace, search
# attributes, health checks): built here where the lab has not been built.
lab_bin=${KEELSON_LAB_BIN:-$root/.cache/lab/bin}
if [ -x "$lab_bin/temporal" ]; then
	echo "prod: temporal CLI found at $lab_bin/temporal"
else
	mkdir -p "$lab_bin"
	echo "prod: building the lab's temporal CLI ..."
	(cd "$tools" && go build "${temporal_gcflags[@]}" -ldflags='-s -w' -o "$lab_bin/temporal" github.com/temporalio/cli/cmd/temporal)
fi

echo "prod: all binaries in $bin ($(( $(date +%s) - total_start ))s)"
