//go:build tools

// Package tools pins the commands of the lab's clusters, built by
// infra/lab/build.sh in one `go build` so that they compile the Kubernetes
// libraries they share once: the control plane, kubectl, kwok and kwokctl
// (etcd is ./etcd).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "sigs.k8s.io/kwok/cmd/kwok"
	_ "sigs.k8s.io/kwok/cmd/kwokctl"
)
