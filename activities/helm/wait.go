package helm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/temporal"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/kube"
	"helm.sh/helm/v3/pkg/release"
	"k8s.io/cli-runtime/pkg/resource"
)

const (
	defaultWaitTimeout = 5 * time.Minute
	// Readiness is checked first after firstPoll, then at twice the
	// interval each time up to pollInterval (Helm's own --wait checks every
	// 2 s from the start): most objects become ready within a second or two
	// of an upgrade, and a fixed 2 s poll made every step that waits on
	// them up to 2 s longer than it had to be. A few more reads in the first
	// seconds, then as many as Helm's.
	firstPoll    = 250 * time.Millisecond
	pollInterval = 2 * time.Second
)

// nextPoll is the wait before the next readiness check after one that
// waited d.
func nextPoll(d time.Duration) time.Duration { return min(2*d, pollInterval) }

// waitReady polls Helm's ReadyChecker (the checks of `helm upgrade --wait`,
// jobs included) over the objects of the revision's manifest. It is Helm's
// wait loop written out so that it stops with the activity's context and
// can say which objects were not ready, in hb's details while it waits.
func (a *Activities) waitReady(ctx context.Context, cfg *action.Configuration, in WaitInput, hb *beat) error {
	t := in.Target
	timeout := in.Timeout
	if timeout <= 0 {
		timeout = defaultWaitTimeout
	}
	var (
		rel *release.Release
		err error
	)
	if in.Revision > 0 {
		rel, err = cfg.Releases.Get(t.Release, in.Revision)
	} else {
		rel, err = cfg.Releases.Last(t.Release)
	}
	if err != nil {
		return classify(err, "wait for %s revision %d in %s", t.Release, in.Revision, t.Region)
	}
	resources, err := cfg.KubeClient.Build(bytes.NewBufferString(rel.Manifest), false)
	if err != nil {
		return classify(err, "wait for %s revision %d in %s: build objects", t.Release, rel.Version, t.Region)
	}
	cs, err := cfg.KubernetesClientSet()
	if err != nil {
		return classify(err, "wait for %s revision %d in %s", t.Release, rel.Version, t.Region)
	}
	log := a.logger().With("release", t.Release, "region", t.Region, "revision", rel.Version)
	checker := kube.NewReadyChecker(cs, func(format string, v ...any) {
		log.Debug(fmt.Sprintf(format, v...), "source", "helm")
	}, kube.PausedAsReady(true), kube.CheckJobs(true))

	// The heartbeat reports what the poll loop saw last.
	var (
		mu       sync.Mutex
		waiting  []string
		start    = time.Now()
		deadline = start.Add(timeout)
	)
	hb.set(func() any {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprintf("waiting %s for: %s", time.Since(start).Round(time.Second), strings.Join(waiting, ", "))
	})
	defer hb.set(nil)

	waitCtx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	poll := time.NewTimer(firstPoll)
	defer poll.Stop()
	every := firstPoll
	// The verdict uses the last round that finished before the deadline: a
	// round cut short by it fails with the deadline, not with the release.
	var notReady []string
	var failures []error
	for {
		nr, f := checkReady(waitCtx, checker, resources)
		if waitCtx.Err() == nil {
			notReady, failures = nr, f
			mu.Lock()
			waiting = notReady
			mu.Unlock()
			if len(notReady) == 0 {
				log.Info("helm release ready", "took", time.Since(start))
				return nil
			}
			select {
			case <-poll.C:
				every = nextPoll(every)
				poll.Reset(every)
				continue
			case <-waitCtx.Done():
			}
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("wait for %s revision %d in %s: %w", t.Release, rel.Version, t.Region, err)
		}
		if notReady == nil || len(failures) == len(notReady) {
			// Nothing was seen not ready; the API could not be asked. That
			// is the cluster's trouble, not the release's: retry.
			return fmt.Errorf("wait for %s revision %d in %s: readiness unknown after %s: %w",
				t.Release, rel.Version, t.Region, timeout, errors.Join(append(failures, waitCtx.Err())...))
		}
		msg := fmt.Sprintf("%s revision %d in %s not ready after %s: %s",
			t.Release, rel.Version, t.Region, timeout, strings.Join(notReady, ", "))
		log.Warn("helm release not ready", "notReady", notReady)
		return temporal.NewNonRetryableApplicationError(msg, ErrNotReady, nil, notReady)
	}
}

// checkReady returns the objects not ready ("Deployment/ns/name"), sorted,
// and the errors met asking about them.
func checkReady(ctx context.Context, checker kube.ReadyChecker, resources kube.ResourceList) ([]string, []error) {
	var notReady []string
	var failures []error
	for _, info := range resources {
		ready, err := checker.IsReady(ctx, info)
		if ready && err == nil {
			continue
		}
		name := objectName(info)
		notReady = append(notReady, name)
		if err != nil {
			failures = append(failures, fmt.Errorf("%s: %w", name, err))
		}
	}
	sort.Strings(notReady)
	return notReady, failures
}

func objectName(info *resource.Info) string {
	kind := "object"
	if info.Mapping != nil {
		kind = info.Mapping.GroupVersionKind.Kind
	}
	if info.Namespace == "" {
		return kind + "/" + info.Name
	}
	return kind + "/" + info.Namespace + "/" + info.Name
}
