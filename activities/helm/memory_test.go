//go:build bench

// The memory measurement starts a cluster of its own and takes about a
// minute: `make bench-helm-memory` (or go test -tags bench -run
// TestHelmMemoryPerNamespace -v ./activities/helm/) prints its figures.

package helm

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keelson-dev/keelson/internal/labtest"
)

// memStats is what the process holds after a full GC.
type memStats struct {
	heapInuse uint64 // runtime.MemStats.HeapInuse
	sys       uint64 // runtime.MemStats.Sys: all the Go runtime got from the OS
	rss       uint64 // VmRSS of /proc/self/status
	rssFreed  uint64 // VmRSS after debug.FreeOSMemory: what the live heap needs
}

func readMem(t *testing.T) memStats {
	t.Helper()
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m := memStats{heapInuse: ms.HeapInuse, sys: ms.Sys, rss: vmRSS(t)}
	// FreeOSMemory returns freed pages to the OS; the RSS after it is a
	// floor, the RSS before it what a worker would show between GCs.
	debug.FreeOSMemory()
	m.rssFreed = vmRSS(t)
	return m
}

func vmRSS(t *testing.T) uint64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	require.NoError(t, err)
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			fields := strings.Fields(rest) // "123456 kB"
			require.Len(t, fields, 2)
			kb, err := strconv.ParseUint(fields[0], 10, 64)
			require.NoError(t, err)
			return kb * 1024
		}
	}
	require.NoError(t, s.Err())
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// TestHelmMemoryPerNamespace measures what one worker keeps per namespace
// it has deployed to: one Activities, one kube context, and for each of N
// namespaces a Snapshot and a small Upgrade (a first install of the test
// chart), as every region of a release does before its bake. N grows to
// 10, 100 and 300 namespaces on the same Activities (on a kwok cluster of
// its own); after each step it prints heap in use and RSS in total, per
// namespace on average since the baseline taken before the first one and
// at the margin since the previous step, and what the margin projects for
// 1000 namespaces. It prints figures and never asserts them; it fails only
// on errors. KEELSON_MEMORY_STEPS and KEELSON_HEAP_PROFILE are below.
//
//	go test -run TestHelmMemoryPerNamespace -v ./activities/helm/
func TestHelmMemoryPerNamespace(t *testing.T) {
	steps := []int{10, 100, 300}
	if testing.Short() {
		steps = []int{10}
	}
	// KEELSON_MEMORY_STEPS=10,100,1000 measures other steps.
	if env := os.Getenv("KEELSON_MEMORY_STEPS"); env != "" {
		steps = nil
		for f := range strings.SplitSeq(env, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			require.NoError(t, err, "KEELSON_MEMORY_STEPS")
			require.True(t, n > 0 && (len(steps) == 0 || n > steps[len(steps)-1]), "KEELSON_MEMORY_STEPS must grow: %q", env)
			steps = append(steps, n)
		}
	}
	// A cluster of its own: the deployment controller of the package's
	// cluster would still be working through these hundreds of
	// deployments while the tests after this one wait for theirs.
	kubeconfig, kubeContext := labtest.StartCluster(t, "helm-memory")
	acts := &Activities{Kubeconfig: kubeconfig, Logger: slog.New(slog.DiscardHandler)}
	target := func(i int) Target {
		return Target{Region: "eu-test-1", KubeContext: kubeContext, Namespace: fmt.Sprintf("mem-%03d", i), Release: "app"}
	}
	run := func(ctx context.Context, i int) error {
		tg := target(i)
		if _, err := acts.Snapshot(ctx, tg); err != nil {
			return fmt.Errorf("snapshot %s: %w", tg.Namespace, err)
		}
		in := UpgradeInput{Target: tg, ChartPath: chartPath, Version: "1.0.0",
			// No pods: the cluster's two nodes hold 220.
			RegionValues: map[string]any{"replicas": 0}}
		if _, err := acts.Upgrade(ctx, in); err != nil {
			return fmt.Errorf("upgrade %s: %w", tg.Namespace, err)
		}
		return nil
	}

	base := readMem(t)
	t.Logf("measured: baseline, no namespace yet: heap in use %s, RSS %s (%s after FreeOSMemory), Go sys %s",
		mib(base.heapInuse), mib(base.rss), mib(base.rssFreed), mib(base.sys))
	// per is the cost of one namespace between two measures, in KiB.
	per := func(now, was uint64, n int) float64 { return (float64(now) - float64(was)) / float64(n) / (1 << 10) }
	prev, done := base, 0
	for _, n := range steps {
		start := time.Now()
		// A few at a time: the machine has two cores and one API server.
		const workers = 4
		next := make(chan int)
		errs := make(chan error, n-done)
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for i := range next {
					if err := run(context.Background(), i); err != nil {
						errs <- err
					}
				}
			})
		}
		for i := done; i < n; i++ {
			next <- i
		}
		close(next)
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		took := time.Since(start)

		// Per namespace on average since the baseline (it carries what
		// the first namespace of a context costs), and at the margin since
		// the previous step (what one more namespace costs).
		m := readMem(t)
		added := n - done
		t.Logf("measured: N=%d namespaces (%d more in %s): heap in use %s, RSS %s (%s after FreeOSMemory), Go sys %s",
			n, added, took.Round(time.Millisecond), mib(m.heapInuse), mib(m.rss), mib(m.rssFreed), mib(m.sys))
		t.Logf("measured: N=%d per namespace, average since baseline: heap in use %.0f KiB, RSS %.0f KiB (%.0f KiB after FreeOSMemory)",
			n, per(m.heapInuse, base.heapInuse, n), per(m.rss, base.rss, n), per(m.rssFreed, base.rssFreed, n))
		if done > 0 {
			mh, mr := per(m.heapInuse, prev.heapInuse, added), per(m.rss, prev.rss, added)
			t.Logf("measured: N=%d per namespace, marginal since N=%d: heap in use %.0f KiB, RSS %.0f KiB (%.0f KiB after FreeOSMemory)",
				n, done, mh, mr, per(m.rssFreed, prev.rssFreed, added))
			if n < 1000 {
				// The marginal cost of the last step, for the namespaces to 1000.
				t.Logf("measured: projected for 1000 namespaces from N=%d: heap in use %s, RSS %s",
					n, mib(uint64(float64(m.heapInuse)+max(0, mh)*(1<<10)*float64(1000-n))),
					mib(uint64(float64(m.rss)+max(0, mr)*(1<<10)*float64(1000-n))))
			}
		}
		prev, done = m, n
	}

	// KEELSON_HEAP_PROFILE=file writes a heap profile while the
	// configurations are still alive (go test -memprofile writes its own
	// after the test, when they are garbage).
	if path := os.Getenv("KEELSON_HEAP_PROFILE"); path != "" {
		f, err := os.Create(path)
		require.NoError(t, err)
		runtime.GC()
		require.NoError(t, pprof.WriteHeapProfile(f))
		require.NoError(t, f.Close())
		t.Logf("heap profile written to %s", path)
	}
	runtime.KeepAlive(acts)
}
