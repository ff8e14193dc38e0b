package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/keelson-dev/keelson/dora"
	"github.com/keelson-dev/keelson/workflows"
)

// TestDoraFiguresFromRealReleases runs six releases of a fresh application
// on the lab: two that succeed, one whose pods never become ready (rolled
// back), the one that recovers it, one that succeeds and is then undone
// with `keelson rollback`, the undo itself, and one without a commit time.
// It works the five figures out by hand from the releases' results, as
// docs/dora.md defines them, and requires `keelson report dora` and the
// worker's /metrics to show exactly those.
func TestDoraFiguresFromRealReleases(t *testing.T) {
	t.Parallel() // waits on applications of its own (see TestMain)
	l := newLab(t)
	app := l.appName(t, "itdora")
	file := l.releaseFile(t, app, func(doc map[string]any) {
		noGate("2s")(doc)
		doc["readiness"] = map[string]any{"timeout": "15s"}
	})
	began := time.Now()
	v := func(n int) string { return fmt.Sprintf("%d.%d.0", n, time.Now().Unix()%100000) }

	// Commit times before each start, second precision as CI gives them.
	c1 := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Second)
	r1 := l.releaseWithCommit(t, file, v(1), c1, workflows.PhaseSucceeded)
	r2 := l.releaseWithCommit(t, file, v(2)+"-unready", time.Now().Add(-time.Hour).UTC().Truncate(time.Second), workflows.PhaseRolledBack)
	c3 := time.Now().Add(-30 * time.Minute).UTC().Truncate(time.Second)
	r3 := l.releaseWithCommit(t, file, v(3), c3, workflows.PhaseSucceeded)
	c4 := time.Now().Add(-10 * time.Minute).UTC().Truncate(time.Second)
	r4 := l.releaseWithCommit(t, file, v(4), c4, workflows.PhaseSucceeded)
	out, code := l.keelson(t, "rollback", r4.ReleaseID, "--user", "oncall", "--reason", "latency up after "+r4.Version)
	if code != 0 || !strings.Contains(out, "undo started: "+workflows.UndoID(app, r4.Version)) {
		t.Fatalf("rollback of %s: exit %d\n%s", r4.ReleaseID, code, out)
	}
	undo := l.result(t, workflows.UndoID(app, r4.Version), 4*time.Minute)
	if undo.Phase != workflows.PhaseSucceeded {
		t.Fatalf("undo: %s", writeJSON(undo))
	}
	r5 := l.releaseWithCommit(t, file, v(5), time.Time{}, workflows.PhaseSucceeded)

	// By hand, from the results (docs/dora.md).
	all := []*workflows.ReleaseResult{r1, r2, r3, r4, undo, r5}
	for _, r := range all {
		// Every one of them changed a region: six deployments. (r2
		// changed the canary region before it was rolled back.)
		if !slices.ContainsFunc(r.Regions, func(rr workflows.RegionResult) bool { return rr.Changed }) {
			t.Fatalf("%s changed no region: %s", r.ReleaseID, writeJSON(r))
		}
	}
	deployments := len(all)
	perDay := float64(deployments) / 30
	// Lead times: successful non-undo deployments with a commit time.
	leads := []time.Duration{r1.Finished.Sub(c1), r3.Finished.Sub(c3), r4.Finished.Sub(c4)}
	slices.Sort(leads)
	lead := leads[1]
	// Failed: r2 (rolled back) and r4 (undone). r2 recovers when r3
	// ends, r4 when its undo does; the median of two is their mean.
	rec2, rec4 := r3.Finished.Sub(r2.Finished), undo.Finished.Sub(r4.Finished)
	recovery := (rec2 + rec4) / 2
	// Rework: r3 (started after r2 failed, the deployment that recovered
	// it) and the undo.
	failRate, reworkRate := 2.0/float64(deployments), 2.0/float64(deployments)
	t.Logf("by hand: %d deployments (%.3f a day), lead %s (of %v), fail rate %.3f, recovery %s (%s, %s), rework %.3f",
		deployments, perDay, lead, leads, failRate, recovery, rec2, rec4, reworkRate)

	// The 2024 levels (docs/dora.md): 6 in 30 days is more than once a
	// week; a third failing is above 20%.
	wantLevel := func(d time.Duration, elite, high time.Duration) dora.Level {
		switch {
		case d < elite:
			return dora.LevelElite
		case d < high:
			return dora.LevelHigh
		}
		return dora.LevelLow
	}

	out, code = l.keelson(t, "report", "dora", "--app", app, "--since", "30d", "--format", "json")
	if code != 0 {
		t.Fatalf("keelson report dora: exit %d\n%s", code, out)
	}
	var rep dora.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, out)
	}
	t.Logf("keelson report dora --app %s --format json:\n%s", app, out)
	check := func(what string, got, want any) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("report: %s = %v, want %v", what, got, want)
		}
	}
	check("releases", rep.Releases, len(all))
	check("deployments", rep.Deployments, deployments)
	check("undos", rep.Undos, 1)
	check("days", rep.Days, 30.0)
	check("deployments a day", rep.DeploymentFrequency.PerDay, perDay)
	check("frequency level", rep.DeploymentFrequency.Level, dora.LevelHigh)
	check("lead time samples", rep.ChangeLeadTime.Samples, 3)
	check("lead time", deref(rep.ChangeLeadTime.MedianSeconds), lead.Seconds())
	check("lead time level", rep.ChangeLeadTime.Level, wantLevel(lead, 24*time.Hour, 7*24*time.Hour))
	check("failed deployments", rep.ChangeFailRate.Count, 2)
	check("change fail rate", deref(rep.ChangeFailRate.Value), failRate)
	check("change fail rate level", rep.ChangeFailRate.Level, dora.LevelLow)
	check("recovered", rep.FailedDeploymentRecoveryTime.Samples, 2)
	check("unrecovered", rep.FailedDeploymentRecoveryTime.Unrecovered, 0)
	check("recovery time", deref(rep.FailedDeploymentRecoveryTime.MedianSeconds), recovery.Seconds())
	check("recovery level", rep.FailedDeploymentRecoveryTime.Level, wantLevel(recovery, time.Hour, 24*time.Hour))
	check("rework deployments", rep.DeploymentReworkRate.Count, 2)
	check("rework rate", deref(rep.DeploymentReworkRate.Value), reworkRate)
	check("rework level", rep.DeploymentReworkRate.Level, dora.LevelNone)

	// The worker recomputes its figures every minute (30-day window, the
	// lab's default): wait for the refresh that includes the last release.
	wantMetrics := map[string]float64{
		"keelson_dora_deployments":                             float64(deployments),
		"keelson_dora_deployment_frequency_per_day":            perDay,
		"keelson_dora_change_lead_time_seconds":                lead.Seconds(),
		"keelson_dora_change_fail_rate":                        failRate,
		"keelson_dora_failed_deployments":                      2,
		"keelson_dora_failed_deployment_recovery_time_seconds": recovery.Seconds(),
		"keelson_dora_unrecovered_deployments":                 0,
		"keelson_dora_deployment_rework_rate":                  reworkRate,
	}
	var families map[string]*dto.MetricFamily
	var diff []string
	waitUntil(t, 3*time.Minute, 2*time.Second, "the worker's /metrics to show "+app+"'s figures", func() bool {
		families = l.workerMetrics(t)
		diff = nil
		for name, want := range wantMetrics {
			if got, ok := gauge(families, name, "application", app); !ok || got != want {
				diff = append(diff, fmt.Sprintf("%s = %v (present %v), want %v", name, got, ok, want))
			}
		}
		return len(diff) == 0
	})
	for _, metric := range []string{"deployment_frequency", "change_lead_time", "change_fail_rate", "failed_deployment_recovery_time"} {
		got, _ := gauge(families, "keelson_dora_level", "application", app, "metric", metric)
		var want dora.Level
		switch metric {
		case "deployment_frequency":
			want = rep.DeploymentFrequency.Level
		case "change_lead_time":
			want = rep.ChangeLeadTime.Level
		case "change_fail_rate":
			want = rep.ChangeFailRate.Level
		default:
			want = rep.FailedDeploymentRecoveryTime.Level
		}
		if int(got) != want.Rank() {
			t.Errorf("keelson_dora_level{metric=%q} = %v, want %d (%s)", metric, got, want.Rank(), want)
		}
	}
	if _, ok := gauge(families, "keelson_dora_level", "application", app, "metric", "deployment_rework_rate"); ok {
		t.Errorf("a level for deployment_rework_rate, which has none published")
	}

	// Beside them: the SDK's own metrics, and this worker's counts of
	// releases and steps. The counts are the worker process's: exact only
	// if nobody restarted the lab's worker while the releases ran.
	if _, ok := families["temporal_request_total"]; !ok {
		t.Errorf("no Temporal SDK metrics (temporal_request_total) on /metrics")
	}
	if f, ok := families["keelson_steps_total"]; !ok || len(f.GetMetric()) == 0 {
		t.Errorf("no keelson_steps_total on /metrics")
	}
	started, _ := gauge(families, "process_start_time_seconds")
	succeeded, _ := counter(families, "keelson_releases_total", "application", app, "phase", "succeeded")
	rolledBack, _ := counter(families, "keelson_releases_total", "application", app, "phase", "rolled-back")
	if time.Unix(int64(started), 0).Before(began) {
		if succeeded != 5 || rolledBack != 1 {
			t.Errorf("keelson_releases_total{application=%q}: %v succeeded, %v rolled back; want 5 and 1", app, succeeded, rolledBack)
		}
	} else {
		t.Logf("the worker restarted during the test (at %s): its release counts (%v succeeded, %v rolled back) cover only what it finished since",
			time.Unix(int64(started), 0).UTC().Format(time.RFC3339), succeeded, rolledBack)
	}
	t.Logf("from /metrics: %d deployments, lead %vs, fail rate %v, recovery %vs, rework %v",
		deployments, wantMetrics["keelson_dora_change_lead_time_seconds"], failRate, recovery.Seconds(), reworkRate)
}

// releaseWithCommit starts a release with --commit-time (none when zero),
// as CI would, and waits for it to end in phase.
func (l *lab) releaseWithCommit(t *testing.T, file, version string, commit time.Time, phase workflows.Phase) *workflows.ReleaseResult {
	t.Helper()
	args := []string{"release", "start", "-f", file, "--version", version}
	if !commit.IsZero() {
		args = append(args, "--commit-time", commit.Format(time.RFC3339))
	}
	out, code := l.keelson(t, args...)
	if code != 0 {
		t.Fatalf("keelson %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	id := strings.TrimSpace(strings.TrimPrefix(strings.SplitN(out, "\n", 2)[0], "release:"))
	res := l.result(t, id, 4*time.Minute)
	if res.Phase != phase {
		t.Fatalf("release %s: want %s, got %s", version, phase, writeJSON(res))
	}
	return res
}

// workerMetrics scrapes the lab's worker.
func (l *lab) workerMetrics(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	url := "http://127.0.0.1:" + envOr("KEELSON_WORKER_HTTP_PORT", "8095") + "/metrics"
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Logf("scrape %s: %v", url, err)
		return nil
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return families
}

// gauge finds the gauge of a family with the given label pairs.
func gauge(families map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	m := find(families, name, labels)
	if m == nil {
		return 0, false
	}
	return m.GetGauge().GetValue(), true
}

func counter(families map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	m := find(families, name, labels)
	if m == nil {
		return 0, false
	}
	return m.GetCounter().GetValue(), true
}

func find(families map[string]*dto.MetricFamily, name string, labels []string) *dto.Metric {
	f, ok := families[name]
	if !ok {
		return nil
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			if !slices.ContainsFunc(m.GetLabel(), func(lp *dto.LabelPair) bool {
				return lp.GetName() == labels[i] && lp.GetValue() == labels[i+1]
			}) {
				continue next
			}
		}
		return m
	}
	return nil
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}
