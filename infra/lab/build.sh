#!/usr/bin/env bash
# Builds the local stack's binaries once into the cache folder and skips what
# is already there. Everything comes from the Go module proxy, so a fresh
# machine needs nothing but Go. Usage: infra/lab/build.sh [BINDIR]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${1:-${KEELSON_LAB_BIN:-$root/.cache/lab/bin}}
mkdir -p "$bin"
bin=$(cd "$bin" && pwd)

TERRAFORM_VERSION=v1.5.7      # only where no terraform is installed (the last MPL release)

total_start=$(date +%s)

# build NAME COMMAND...: runs COMMAND unless $bin/NAME exists, and says how long it took.
build() {
	local name=$1; shift
	if [ -x "$bin/$name" ]; then
		echo "lab: $name already built"
		return 0
	fi
	echo "lab: building $name ..."
	local start; start=$(date +%s)
	"$@"
	echo "lab: built $name in $(( $(date +%s) - start ))s"
}

# Stripped of symbols and DWARF: lab binaries are not debugged, and the
# linker writes them in half the time.
ldflags='-s -w'

# One Go build at a time: from an empty cache on two cores, the seven
# cluster commands below took 413 s and the Temporal CLI 210 s alone, but
# 812 s when built side by side (measured again with the commands compiled
# without inlining: 442 s one after the other, 483 s side by side, with
# 9 % more CPU).
#
# The Temporal CLI comes from the module tools/temporal, which pins it
# (v1.5.1: v1.6+ carries a replace directive) with the server and Web UI
# server it embeds: the prod topology (infra/prod/build.sh) builds those
# from the same module and finds their packages compiled (12 s instead of
# about 9 minutes from an empty cache).
# tools/temporal/gcflags.sh says which of its packages compile without
# inlining, for both topologies.
source "$here/tools/temporal/gcflags.sh"
temporal_cli() {
	(cd "$here/tools/temporal" && go build "${temporal_gcflags[@]}" -ldflags="$ldflags" -o "$bin/temporal" github.com/temporalio/cli/cmd/temporal)
}
build temporal temporal_cli

# The clusters' commands come from one module (tools/cluster) and one `go
# build`, so the Kubernetes libraries they share compile once: etcd, the
# control plane, kubectl (kwokctl runs it to check a cluster, and would
# otherwise try to download it; people use it to look at the lab), kwok
# and kwokctl. Only the missing ones are built.
declare -A cluster_pkgs=(
	[etcd]=./etcd
	[kube-apiserver]=k8s.io/kubernetes/cmd/kube-apiserver
	[kube-controller-manager]=k8s.io/kubernetes/cmd/kube-controller-manager
	[kube-scheduler]=k8s.io/kubernetes/cmd/kube-scheduler
	[kubectl]=k8s.io/kubernetes/cmd/kubectl
	[kwok]=sigs.k8s.io/kwok/cmd/kwok
	[kwokctl]=sigs.k8s.io/kwok/cmd/kwokctl
)
# Compiled without inlining (-l), all but the standard library: the
# compiler then does 27 % less work on these 2,900 packages (from an empty
# cache on two cores, 554 s of compile time instead of 761 s, and this step
# 302 s instead of 419 s, measured back to back), the largest part of the
# cold build of the local stack. What it costs is CPU in the lab's control
# planes, which idle in every test and figure (the Temporal dev server is
# what limits the lab, and it keeps the compiler's defaults). The standard
# library is compiled as for every build of the stack (see the Makefile's
# GCFLAGS: no DWARF, which the linker's -s -w drops anyway), so that it is
# compiled once and shared with Keelson's. Compiling without optimizations
# as well (-N) was measured and saves almost nothing more (3 %).
cluster_gcflags=("-gcflags=all=-l $stack_gcflags" "-gcflags=std=$stack_gcflags")
missing=() pkgs=()
for name in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok kwokctl; do
	if [ -x "$bin/$name" ]; then
		echo "lab: $name already built"
	else
		missing+=("$name") pkgs+=("${cluster_pkgs[$name]}")
	fi
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "lab: building ${missing[*]} ..."
	start=$(date +%s)
	(cd "$here/tools/cluster" && go build "${cluster_gcflags[@]}" -ldflags="$ldflags" -o "$bin/" "${pkgs[@]}")
	echo "lab: built ${missing[*]} in $(( $(date +%s) - start ))s"
fi

# The helm CLI, for `helm history` next to what Keelson did: a tool of
# Keelson's own module (go.mod), so it is the Helm Keelson links, and its
# packages are mostly compiled already by `make build`.
build helm bash -c "cd '$root' && go build -gcflags='all=$stack_gcflags' -ldflags='$ldflags' -o '$bin/helm' helm.sh/helm/v3/cmd/helm"

# Terraform is installed on these machines; build one only where it is not.
if command -v terraform >/dev/null 2>&1; then
	echo "lab: terraform found at $(command -v terraform)"
else
	build terraform env GOBIN="$bin" go install "github.com/hashicorp/terraform@$TERRAFORM_VERSION"
fi

# apt_install PKG...: Debian packages, with sudo when not root. No apt-get
# update unless the install needs it: the package lists of a fresh machine
# may be enough, and an update is slow.
apt_install() {
	local sudo=()
	[ "$(id -u)" -eq 0 ] || sudo=(sudo)
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" || {
		"${sudo[@]}" apt-get update &&
			"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
	}
}

# Prometheus, for canary analysis, is Debian's package: /usr/bin/prometheus,
# run by prometheus.sh with the lab's configuration and port. The package's
# own service is not used, and is kept from starting at the install (see
# install_prometheus).
install_prometheus() {
	local sudo=() policy=/usr/sbin/policy-rc.d made_policy=
	[ "$(id -u)" -eq 0 ] || sudo=(sudo)
	# Debian starts a package's service at its install unless policy-rc.d
	# says no (exit 101), as container images often do already; where none
	# exists, one stands for the install's length. Where systemd runs, the
	# service stays enabled (on 9090, apart from the lab's 9390).
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\n# Written by keelson infra/lab/build.sh for one install.\nexit 101\n' |
			"${sudo[@]}" tee "$policy" >/dev/null
		"${sudo[@]}" chmod 755 "$policy"
		made_policy=1
	fi
	local rc=0
	apt_install prometheus || rc=$?
	[ -z "$made_policy" ] || "${sudo[@]}" rm -f "$policy"
	return $rc
}
if [ -x /usr/bin/prometheus ]; then
	echo "lab: prometheus found at /usr/bin/prometheus"
else
	echo "lab: installing Debian's prometheus package ..."
	install_prometheus
fi

# The Web UI's browser test (integration/webui_test.go): Debian's chromium,
# driven by playwright-core from npm with Chromium's own executable (it
# never downloads a browser). node and npm are on these machines; Debian's
# are installed only where they are missing.
webui_pkgs=()
[ -x /usr/bin/chromium ] || webui_pkgs+=(chromium)
command -v node >/dev/null 2>&1 || webui_pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || webui_pkgs+=(npm)
if [ ${#webui_pkgs[@]} -eq 0 ]; then
	echo "lab: chromium found at /usr/bin/chromium, node at $(command -v node)"
else
	echo "lab: installing Debian's ${webui_pkgs[*]} ..."
	apt_install "${webui_pkgs[@]}"
fi
# playwright-core, pinned by integration/webui/package-lock.json, into
# integration/webui/node_modules; again only when the lock file changed.
webui=$root/integration/webui
if [ -f "$webui/node_modules/.package-lock.json" ] && [ "$webui/node_modules/.package-lock.json" -nt "$webui/package-lock.json" ]; then
	echo "lab: playwright-core already installed in $webui/node_modules"
else
	echo "lab: npm ci in $webui ..."
	(cd "$webui" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
fi

echo "lab: all binaries in $bin ($(( $(date +%s) - total_start ))s)"
