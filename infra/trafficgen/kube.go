package main

// Which version serves a side, and whether it can answer at all, is what
// the region's cluster says: the Deployments of the side's Helm release, the
// version label of their pod template and their ready pods.

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

const (
	labelInstance = "app.kubernetes.io/instance"
	labelVersion  = "app.kubernetes.io/version"
)

// kubeRequestTimeout bounds every call, so that a region whose API server
// is down costs a discovery cycle no more than this.
const kubeRequestTimeout = 2 * time.Second

// clusters reaches the regions' clusters through one kubeconfig with a
// context per region. The file is read again when it changes: `make up`
// rewrites it, with new certificates when a cluster was created again.
type clusters struct {
	path string

	mu      sync.Mutex
	modTime time.Time
	clients map[string]kubernetes.Interface // by context
}

// client is the clientset of the context named region.
func (c *clusters) client(region string) (kubernetes.Interface, error) {
	if c.path == "" {
		return nil, fmt.Errorf("no kubeconfig (--kubeconfig or KUBECONFIG)")
	}
	fi, err := os.Stat(c.path)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !fi.ModTime().Equal(c.modTime) {
		c.clients = map[string]kubernetes.Interface{}
		c.modTime = fi.ModTime()
	}
	if cs, ok := c.clients[region]; ok {
		return cs, nil
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: c.path},
		&clientcmd.ConfigOverrides{CurrentContext: region},
	).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig context %s: %w", region, err)
	}
	cfg.Timeout = kubeRequestTimeout
	// Every target is looked at every cycle: client-go's default limit
	// (5 a second) made sides of busy labs pass for gone, answering 503.
	cfg.QPS, cfg.Burst = 200, 400
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("client for context %s: %w", region, err)
	}
	c.clients[region] = cs
	return cs, nil
}

// contexts are the kubeconfig's context names: the lab's regions.
func contexts(path string) ([]string, error) {
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("read kubeconfig %s: %w", path, err)
	}
	var names []string
	for name := range cfg.Contexts {
		names = append(names, name)
	}
	return names, nil
}

// observe fills in the side's version and readiness from the Deployments
// labelled with its Helm release. With several (the chart renders one),
// the version is the one with the most ready pods. A side that is not
// ready says why in Problem; one whose cluster cannot be asked (its API
// server is down) has no version either.
func (c *clusters) observe(ctx context.Context, region string, s *Side) {
	s.Version, s.Ready, s.Problem, s.Absent = "", false, "", false
	cs, err := c.client(region)
	if err != nil {
		s.Problem = err.Error()
		return
	}
	ctx, cancel := context.WithTimeout(ctx, kubeRequestTimeout)
	defer cancel()
	deps, err := cs.AppsV1().Deployments(s.Namespace).List(ctx, metav1.ListOptions{LabelSelector: labelInstance + "=" + s.Release})
	if err != nil {
		s.Problem = fmt.Sprintf("list deployments of %s in %s/%s: %v", s.Release, region, s.Namespace, err)
		return
	}
	best := int32(-1)
	for _, d := range deps.Items {
		if d.Status.ReadyReplicas > best {
			best = d.Status.ReadyReplicas
			s.Version = versionFromLabel(d.Spec.Template.Labels[labelVersion])
			s.Ready = d.Status.ReadyReplicas > 0
		}
	}
	switch {
	case len(deps.Items) == 0:
		s.Absent = true
		s.Problem = fmt.Sprintf("no Deployment labelled %s=%s in %s/%s", labelInstance, s.Release, region, s.Namespace)
	case !s.Ready:
		s.Problem = "no ready pods"
	}
}

// versionFromLabel undoes the chart's label-safe version: semver build
// metadata "+sha" is "_sha" in a label, and semver has no "_" of its own.
func versionFromLabel(label string) string {
	return strings.ReplaceAll(label, "_", "+")
}
