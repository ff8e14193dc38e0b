package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/keelson-dev/keelson/control"
	"github.com/keelson-dev/keelson/dora"
	"github.com/keelson-dev/keelson/workflows"
)

var quiet = slog.New(slog.DiscardHandler)

func TestDoraGaugesExportTheReportFigures(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	h := func(hour, min int) time.Time { return time.Date(2026, 11, 21, hour, min, 0, 0, time.UTC) }
	recs := []dora.Release{
		{Application: "shop", ReleaseID: "s1", Phase: dora.PhaseSucceeded, Changed: true, Started: h(8, 0), Finished: h(8, 30), CommitTime: h(7, 0)},
		{Application: "shop", ReleaseID: "s2", Phase: dora.PhaseRolledBack, Changed: true, Started: h(9, 0), Finished: h(9, 10)},
		{Application: "shop", ReleaseID: "s3", Phase: dora.PhaseSucceeded, Changed: true, Started: h(9, 20), Finished: h(9, 40), CommitTime: h(9, 0)},
		{Application: "cart", ReleaseID: "c1", Phase: dora.PhaseRejected, Started: h(10, 0), Finished: h(10, 5)},
	}
	var since time.Time
	g := newDoraGauges(7*24*time.Hour, func(_ context.Context, s time.Time) (control.DoraData, error) {
		since = s
		return control.DoraData{Releases: recs}, nil
	}, quiet)
	g.now = func() time.Time { return now }
	if err := g.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !since.Equal(now.Add(-7 * 24 * time.Hour)) {
		t.Errorf("gathered since %s, want the window before now", since)
	}
	// The figures on /metrics are dora.Compute's, whatever they are.
	shop := dora.Compute(recs, dora.Period{Since: since, Until: now}, "shop")
	want := map[string]float64{
		`keelson_dora_deployments{application="shop"}`:                             float64(shop.Deployments),
		`keelson_dora_deployment_frequency_per_day{application="shop"}`:            shop.DeploymentFrequency.PerDay,
		`keelson_dora_change_lead_time_seconds{application="shop"}`:                *shop.ChangeLeadTime.MedianSeconds,
		`keelson_dora_change_fail_rate{application="shop"}`:                        *shop.ChangeFailRate.Value,
		`keelson_dora_failed_deployment_recovery_time_seconds{application="shop"}`: *shop.FailedDeploymentRecoveryTime.MedianSeconds,
		`keelson_dora_deployment_rework_rate{application="shop"}`:                  *shop.DeploymentReworkRate.Value,
		`keelson_dora_level{application="shop",metric="change_fail_rate"}`:         float64(shop.ChangeFailRate.Level.Rank()),
		`keelson_dora_deployments{application="cart"}`:                             0,
		`keelson_dora_window_seconds`:                                              7 * 24 * 3600,
	}
	got := scrape(t, g)
	for series, v := range want {
		if gv, ok := got[series]; !ok || gv != v {
			t.Errorf("%s = %v (present %v), want %v", series, gv, ok, v)
		}
	}
	// cart deployed nothing: no rate, no lead time, no level of them.
	for _, absent := range []string{`keelson_dora_change_fail_rate{application="cart"}`, `keelson_dora_change_lead_time_seconds{application="cart"}`,
		`keelson_dora_level{application="cart",metric="change_fail_rate"}`} {
		if _, ok := got[absent]; ok {
			t.Errorf("%s is exported without data", absent)
		}
	}
	if problems, err := testutil.CollectAndLint(g); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}

	// A failed refresh keeps the last figures and counts the failure.
	g.gather = func(context.Context, time.Time) (control.DoraData, error) {
		return control.DoraData{}, errors.New("visibility down")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.run(ctx, time.Hour); close(done) }()
	waitFor(t, func() bool { return testutil.ToFloat64(g.errors) == 1 })
	cancel()
	<-done
	if got := scrape(t, g); got[`keelson_dora_deployments{application="shop"}`] != float64(shop.Deployments) {
		t.Errorf("figures lost after a failed refresh: %v", got)
	}
}

func TestMetricsCountReleasesAndSteps(t *testing.T) {
	m := newMetrics(quiet)
	defer m.close()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetWorkerOptions(worker.Options{Interceptors: m.interceptors()})
	step := func(_ context.Context, fail bool) error {
		if fail {
			return errors.New("helm upgrade failed")
		}
		return nil
	}
	env.RegisterActivityWithOptions(step, activity.RegisterOptions{Name: "Upgrade"})
	release := func(ctx workflow.Context, in *workflows.ReleaseInput) (*workflows.ReleaseResult, error) {
		ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
		_ = workflow.ExecuteActivity(ctx, "Upgrade", false).Get(ctx, nil)
		_ = workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
			StartToCloseTimeout: time.Minute, RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 2},
		}), "Upgrade", true).Get(ctx, nil)
		start := workflow.Now(ctx)
		_ = workflow.Sleep(ctx, 3*time.Minute)
		return &workflows.ReleaseResult{Application: in.Spec.Application, Phase: workflows.PhaseRolledBack, Started: start, Finished: workflow.Now(ctx)}, nil
	}
	env.RegisterWorkflowWithOptions(release, workflow.RegisterOptions{Name: releaseWorkflow})
	in := &workflows.ReleaseInput{Version: "1.0.0"}
	in.Spec.Application = "shop"
	env.ExecuteWorkflow(releaseWorkflow, in)
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if v := testutil.ToFloat64(m.releases.WithLabelValues("shop", "rolled-back")); v != 1 {
		t.Errorf("keelson_releases_total{shop,rolled-back} = %v, want 1", v)
	}
	if n := testutil.CollectAndCount(m.releaseDuration); n != 1 {
		t.Errorf("%d release duration series, want 1", n)
	}
	if v := testutil.ToFloat64(m.steps.WithLabelValues("Upgrade", "ok")); v != 1 {
		t.Errorf("ok upgrades %v, want 1", v)
	}
	// Every attempt of a failing step counts.
	if v := testutil.ToFloat64(m.steps.WithLabelValues("Upgrade", "error")); v != 2 {
		t.Errorf("failed upgrades %v, want 2 attempts", v)
	}

	// /metrics serves them, with the Go runtime's.
	rec := httptest.NewRecorder()
	m.handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{`keelson_releases_total{application="shop",phase="rolled-back"} 1`, "keelson_step_duration_seconds_bucket", "go_goroutines"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics has no %q", want)
		}
	}
}

// A worker that replays a finished release (after a restart, or for a
// query of a closed one) must not count it again.
func TestReplayedReleaseIsNotCounted(t *testing.T) {
	m := newMetrics(quiet)
	defer m.close()
	hist, err := client.HistoryFromJSON(mustOpen(t, "../workflows/testdata/release-failing-region.json"), client.HistoryJSONOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := worker.NewWorkflowReplayerWithOptions(worker.WorkflowReplayerOptions{Interceptors: m.interceptors()})
	if err != nil {
		t.Fatal(err)
	}
	r.RegisterWorkflow(workflows.Release)
	r.RegisterWorkflow(workflows.RegionRollout)
	// Child workflow IDs derive from the release's, which the history
	// file does not hold: testdata/index.json does.
	var index map[string]string
	if err := json.NewDecoder(mustOpen(t, "../workflows/testdata/index.json")).Decode(&index); err != nil {
		t.Fatal(err)
	}
	opts := worker.ReplayWorkflowHistoryOptions{OriginalExecution: workflow.Execution{ID: index["release-failing-region.json"]}}
	if err := r.ReplayWorkflowHistoryWithOptions(nil, hist, opts); err != nil {
		t.Fatalf("replay: %v", err)
	}
	if n := testutil.CollectAndCount(m.releases); n != 0 {
		t.Errorf("%d release series after a replay, want none", n)
	}
}

func mustOpen(t *testing.T, path string) io.Reader {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestDoraConfig(t *testing.T) {
	env := envOf(map[string]string{"HOME": "/h", "KEELSON_DORA_WINDOW": "2w"})
	c, err := parseConfig([]string{"--dora-interval", "0"}, env, io.Discard)
	if err != nil || c.DoraWindow != 14*24*time.Hour || c.DoraInterval != 0 {
		t.Errorf("config %v %v, err %v", c.DoraWindow, c.DoraInterval, err)
	}
	for _, args := range [][]string{{"--dora-window", "a month"}, {"--dora-interval", "often"}, {"--dora-interval", "-1m"}} {
		if _, err := parseConfig(args, envOf(map[string]string{"HOME": "/h"}), io.Discard); err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%v: error %v, want one naming the flag", args, err)
		}
	}
}

// scrape collects g into series (name{labels}) and values.
func scrape(t *testing.T, g *doraGauges) map[string]float64 {
	t.Helper()
	m := newMetrics(quiet)
	defer m.close()
	m.reg.MustRegister(g)
	families, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "keelson_dora_") {
			continue
		}
		for _, mt := range f.GetMetric() {
			var labels []string
			for _, l := range mt.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			name := f.GetName()
			if len(labels) > 0 {
				name += "{" + strings.Join(labels, ",") + "}"
			}
			out[name] = mt.GetGauge().GetValue() + mt.GetCounter().GetValue()
		}
	}
	return out
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met within 5s")
}
