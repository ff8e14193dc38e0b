package integration

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson-dev/keelson/control"
	"github.com/keelson-dev/keelson/release"
	"github.com/keelson-dev/keelson/workflows"
)

// TestManyReleasesAtOnce starts releases of KEELSON_LOAD_RELEASES (100)
// applications at once on the lab's one worker, one region each, a chart
// like the demo's and a bake, and requires every one of them to succeed:
// concurrency must degrade by queueing, never by failing a release (issue
// 12). It prints how long the starts and the releases took; the figures
// for 500 and 1,000 come from `make bench`.
func TestManyReleasesAtOnce(t *testing.T) {
	l := newLab(t)
	n := 100
	if v := os.Getenv("KEELSON_LOAD_RELEASES"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	bake := envOr("KEELSON_LOAD_BAKE", "20s")
	base := l.appName(t, "itload")
	version := runVersion(1)
	specs := make([]*release.Spec, n)
	for i := range specs {
		app := fmt.Sprintf("%s-%03d", base, i)
		file := l.releaseFile(t, app, func(doc map[string]any) {
			delete(doc, "terraform")
			doc["health"] = []any{}
			doc["regions"] = []any{region(doc, "us-east-1")}
			doc["waves"] = []any{map[string]any{"name": "only", "regions": []any{"us-east-1"}, "bake": bake}}
		})
		spec, err := release.Load(file)
		if err != nil {
			t.Fatalf("load %s: %v", file, err)
		}
		specs[i] = spec
	}
	t.Cleanup(func() {
		for i := range specs {
			_ = l.kube["us-east-1"].CoreV1().Namespaces().Delete(context.Background(), specs[i].Application, metav1.DeleteOptions{})
		}
	})

	start := time.Now()
	ids := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			res, err := l.ctl.Start(ctx, specs[i], version, control.StartOptions{StartedBy: "load-test"})
			if err != nil {
				errs <- fmt.Errorf("start %s: %w", specs[i].Application, err)
				return
			}
			ids[i] = res.ReleaseID
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	started := time.Since(start)

	failed := 0
	var last time.Time
	for _, id := range ids {
		res := l.result(t, id, 15*time.Minute)
		if res.Phase != workflows.PhaseSucceeded {
			failed++
			t.Errorf("%s: %s: %s", id, res.Phase, res.Reason)
		}
		if res.Finished.After(last) {
			last = res.Finished
		}
	}
	t.Logf("%d releases on one worker: started in %s, all finished %s after the first start (bake %s); %d failed",
		n, started.Round(time.Millisecond), last.Sub(start).Round(time.Second), bake, failed)
}
