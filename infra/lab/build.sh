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

TEMPORAL_CLI_VERSION=v1.5.1   # v1.6+ carries a replace directive: go install refuses it
KWOK_VERSION=v0.8.0
HELM_VERSION=v3.22.0          # the helm CLI, for `helm history` next to what Keelson did
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

build temporal env GOBIN="$bin" go install "github.com/temporalio/cli/cmd/temporal@$TEMPORAL_CLI_VERSION"
build etcd bash -c "cd '$here/tools/etcd' && go build -o '$bin/etcd' ."
build kwok env GOBIN="$bin" go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
build kwokctl env GOBIN="$bin" go install "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
# kubectl too: kwokctl runs it to check a cluster (and would otherwise try
# to download it), and people use it to look at the lab.
for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
	build "$cmd" bash -c "cd '$here/tools/k8s' && go build -o '$bin/$cmd' k8s.io/kubernetes/cmd/$cmd"
done
build helm env GOBIN="$bin" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"

# Terraform is installed on these machines; build one only where it is not.
if command -v terraform >/dev/null 2>&1; then
	echo "lab: terraform found at $(command -v terraform)"
else
	build terraform env GOBIN="$bin" go install "github.com/hashicorp/terraform@$TERRAFORM_VERSION"
fi

echo "lab: all binaries in $bin ($(( $(date +%s) - total_start ))s)"
