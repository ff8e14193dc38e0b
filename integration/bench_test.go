//go:build bench

// The benchmarks of `make bench` (bench/run.sh) that run against the lab:
// built only with -tags bench, so `make test` never runs them. They print
// figures (internal/benchfig) and fail only when what they measure did not
// happen (a release that did not succeed), never on a figure.

package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/testsuite"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson-dev/keelson/activities/artifacts"
	"github.com/keelson-dev/keelson/activities/helm"
	"github.com/keelson-dev/keelson/activities/terraform"
	"github.com/keelson-dev/keelson/internal/benchfig"
	"github.com/keelson-dev/keelson/workflows"
)

// benchRuns is how many times a measured thing runs (KEELSON_BENCH_RUNS, 5).
func benchRuns(t *testing.T) int {
	return slackEnvInt(t, "KEELSON_BENCH_RUNS", 5)
}

// span is a time some part of a release was busy: an activity running, or
// a timer (a bake, a pause) counting down.
type span struct{ from, to time.Time }

// union is the total time covered by spans, overlaps counted once.
func union(spans []span) time.Duration {
	s := slices.Clone(spans)
	slices.SortFunc(s, func(a, b span) int { return a.from.Compare(b.from) })
	var total time.Duration
	var cur span
	for i, x := range s {
		if i == 0 || x.from.After(cur.to) {
			if i > 0 {
				total += cur.to.Sub(cur.from)
			}
			cur = x
			continue
		}
		if x.to.After(cur.to) {
			cur.to = x.to
		}
	}
	if len(s) > 0 {
		total += cur.to.Sub(cur.from)
	}
	return total
}

// releaseTimes reads a finished release's histories (its own and its
// regions'): its wall time, the activities it ran and when they ran, and
// its timers.
type releaseTimes struct {
	wall               time.Duration
	activities, timers []span
	events, bytes      int
	largestPayload     int
}

func (l *lab) releaseTimes(t *testing.T, id string, regionNames []string) releaseTimes {
	t.Helper()
	var rt releaseTimes
	ids := []string{id}
	for _, r := range regionNames {
		ids = append(ids, workflows.RegionID(id, r))
	}
	for i, wf := range ids {
		events := l.history(t, wf)
		if i == 0 {
			rt.wall = events[len(events)-1].GetEventTime().AsTime().Sub(events[0].GetEventTime().AsTime())
			for _, e := range l.rawHistory(t, wf) {
				rt.events++
				rt.bytes += proto.Size(e)
			}
		}
		started := map[int64]time.Time{}
		timers := map[string]time.Time{}
		for _, e := range events {
			at := e.GetEventTime().AsTime()
			switch {
			case e.GetActivityTaskStartedEventAttributes() != nil:
				started[e.GetActivityTaskStartedEventAttributes().GetScheduledEventId()] = at
			case e.GetActivityTaskCompletedEventAttributes() != nil:
				rt.add(&rt.activities, started, e.GetActivityTaskCompletedEventAttributes().GetScheduledEventId(), at)
			case e.GetActivityTaskFailedEventAttributes() != nil:
				rt.add(&rt.activities, started, e.GetActivityTaskFailedEventAttributes().GetScheduledEventId(), at)
			case e.GetActivityTaskTimedOutEventAttributes() != nil:
				rt.add(&rt.activities, started, e.GetActivityTaskTimedOutEventAttributes().GetScheduledEventId(), at)
			case e.GetTimerStartedEventAttributes() != nil:
				timers[e.GetTimerStartedEventAttributes().GetTimerId()] = at
			case e.GetTimerFiredEventAttributes() != nil:
				if from, ok := timers[e.GetTimerFiredEventAttributes().GetTimerId()]; ok {
					rt.timers = append(rt.timers, span{from, at})
				}
			}
			if i == 0 {
				rt.largestPayload = max(rt.largestPayload, largestPayload(e))
			}
		}
	}
	return rt
}

func (rt *releaseTimes) add(to *[]span, started map[int64]time.Time, scheduled int64, at time.Time) {
	if from, ok := started[scheduled]; ok {
		*to = append(*to, span{from, at})
	}
}

// benchWaves edits a release file into one wave per region, in the
// lab's order, each with bake.
func benchWaves(doc map[string]any, bake string) {
	var waves []any
	for _, r := range regions {
		waves = append(waves, map[string]any{"name": r, "regions": []any{r}, "bake": bake})
	}
	doc["waves"] = waves
}

// TestBenchOverhead measures what Keelson adds around the tools: item 1,
// a release whose steps cost nothing (bench/chart, one ConfigMap;
// bench/stack, one built-in resource; no health checks, no bake): its
// wall time per step, and the time in which no step ran; item 3, a
// release like the demo's (its chart and stack, health checks, 5 s bakes)
// against the union of its steps' and bakes' own times.
func TestBenchOverhead(t *testing.T) {
	l := newLab(t)
	runs := benchRuns(t)
	measure := func(name, app string, edit func(doc map[string]any)) (perStep, idlePerStep, ratio []float64) {
		file := l.releaseFile(t, app, edit)
		for i := range runs {
			id := l.start(t, file, fmt.Sprintf("%s.%d", runVersion(1), i))
			if res := l.result(t, id, 5*time.Minute); res.Phase != workflows.PhaseSucceeded {
				t.Fatalf("%s: %s", name, writeJSON(res))
			}
			rt := l.releaseTimes(t, id, regions)
			busy := union(append(slices.Clone(rt.activities), rt.timers...))
			steps := len(rt.activities)
			perStep = append(perStep, benchfig.Millis(rt.wall)/float64(steps))
			idlePerStep = append(idlePerStep, benchfig.Millis(rt.wall-busy)/float64(steps))
			ratio = append(ratio, rt.wall.Seconds()/busy.Seconds())
			t.Logf("%s run %d: wall %s, %d steps, busy %s (steps %s, timers %s)", name, i, rt.wall.Round(time.Millisecond),
				steps, busy.Round(time.Millisecond), union(rt.activities).Round(time.Millisecond), union(rt.timers).Round(time.Millisecond))
		}
		return
	}
	median := func(v []float64) float64 {
		s := slices.Clone(v)
		slices.Sort(s)
		return s[len(s)/2]
	}

	null := l.appName(t, "bnull")
	perStep, idle, _ := measure("null release", null, func(doc map[string]any) {
		doc["chart"] = map[string]any{"path": filepath.Join(l.root, "bench/chart")}
		doc["terraform"] = map[string]any{"path": filepath.Join(l.root, "bench/stack")}
		doc["values"] = map[string]any{}
		doc["health"] = []any{}
		for _, r := range doc["regions"].([]any) {
			delete(r.(map[string]any), "terraformVars")
		}
		benchWaves(doc, "0s")
	})
	detail := fmt.Sprintf("3 regions in 3 waves, nothing to wait for; median of %d", runs)
	benchfig.Report(t, benchfig.Figure{Name: "overhead.wall_per_step", Value: median(perStep), Unit: "ms", Detail: detail})
	benchfig.Report(t, benchfig.Figure{Name: "overhead.idle_per_step", Value: median(idle), Unit: "ms",
		Detail: "wall time in which no step ran, per step; " + detail})

	demo := l.appName(t, "bdemo")
	_, _, ratio := measure("demo-like release", demo, func(doc map[string]any) { benchWaves(doc, "5s") })
	benchfig.Report(t, benchfig.Figure{Name: "release.wall_over_steps_and_bakes", Value: median(ratio), Unit: "ratio",
		Max: benchfig.AtMost(1.05), Detail: fmt.Sprintf("demo's chart and stack, health checks, 3 waves with 5 s bakes; median of %d", runs)})
}

// TestBenchToolRatios runs the tools Keelson drives side by side with
// their CLIs, on the same chart, stack and lab cluster (item 2): Keelson's
// Upgrade and WaitReady activities against `helm upgrade --install --wait`,
// and its Plan and Apply activities against `terraform init`, `plan -out`
// and `apply` of the plan, alternating, each run a new version: as a wave
// without a gate runs them, and as a gated wave does (the plan shown before
// it applies) against the CLI with `show -json` added.
func TestBenchToolRatios(t *testing.T) {
	l := newLab(t)
	runs := benchRuns(t)
	ctx := context.Background()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.SetTestTimeout(5 * time.Minute)

	// Helm: the demo's chart, one replica, in us-east-1.
	chart := filepath.Join(l.root, "infra/demo/chart")
	acts := &helm.Activities{Kubeconfig: l.kubeconfig}
	env.RegisterActivity(acts)
	nsK, nsC := l.appName(t, "bhelmk"), l.appName(t, "bhelmc")
	for _, ns := range []string{nsK, nsC} {
		if _, err := l.kube["us-east-1"].CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	helmBin := filepath.Join(l.dir, "bin", "helm")
	var viaKeelson, viaCLI []time.Duration
	for i := range runs + 1 { // the first run installs; it is not counted
		version := fmt.Sprintf("1.0.%d", i)
		target := helm.Target{Region: "us-east-1", KubeContext: "us-east-1", Namespace: nsK, Release: nsK}
		start := time.Now()
		v, err := env.ExecuteActivity(acts.Upgrade, helm.UpgradeInput{Target: target, ChartPath: chart, Version: version,
			BaseValues: map[string]any{"replicas": 1}})
		if err != nil {
			t.Fatalf("Keelson's helm upgrade: %v", err)
		}
		var up helm.UpgradeResult
		if err := v.Get(&up); err != nil {
			t.Fatal(err)
		}
		if _, err := env.ExecuteActivity(acts.WaitReady, helm.WaitInput{Target: target, Revision: up.Revision, Timeout: 2 * time.Minute}); err != nil {
			t.Fatalf("Keelson's wait: %v", err)
		}
		k := time.Since(start)

		start = time.Now()
		cmd := exec.Command(helmBin, "upgrade", "--install", nsC, chart, "--namespace", nsC, "--kubeconfig", l.kubeconfig,
			"--kube-context", "us-east-1", "--set", "version="+version, "--set", "replicas=1", "--wait", "--timeout", "2m")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("helm upgrade: %v\n%s", err, out)
		}
		c := time.Since(start)
		if i > 0 {
			viaKeelson, viaCLI = append(viaKeelson, k), append(viaCLI, c)
		}
		t.Logf("helm run %d: Keelson %s, CLI %s", i, k.Round(time.Millisecond), c.Round(time.Millisecond))
	}
	mk, mc := benchfig.Median(viaKeelson), benchfig.Median(viaCLI)
	benchfig.Report(t, benchfig.Figure{Name: "helm.upgrade_wait.ratio", Value: mk.Seconds() / mc.Seconds(), Unit: "ratio",
		Max: benchfig.AtMost(1.0), Detail: fmt.Sprintf("Keelson %s, helm CLI %s (medians of %d, demo chart, 1 replica)",
			mk.Round(time.Millisecond), mc.Round(time.Millisecond), runs)})

	// Terraform: the demo's stack, local state, in a working copy each.
	tfBin, err := exec.LookPath("terraform")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	store, err := artifacts.NewLocal(filepath.Join(root, "artifacts"))
	if err != nil {
		t.Fatal(err)
	}
	tfEnv := map[string]string{}
	if v := os.Getenv("TF_CLI_CONFIG_FILE"); v != "" {
		tfEnv["TF_CLI_CONFIG_FILE"] = v
	}
	tacts := &terraform.Activities{Binary: tfBin, WorkDir: filepath.Join(root, "work"), Artifacts: store, Env: tfEnv}
	env.RegisterActivity(tacts)
	stack := filepath.Join(l.root, "infra/demo/terraform")
	cliDir := filepath.Join(root, "cli")
	if err := os.CopyFS(cliDir, os.DirFS(stack)); err != nil {
		t.Fatal(err)
	}
	tf := func(args ...string) {
		cmd := exec.Command(tfBin, args...)
		cmd.Dir = cliDir
		cmd.Env = append(os.Environ(), "TF_IN_AUTOMATION=1", "CHECKPOINT_DISABLE=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("terraform %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// keelson plans and applies a version of app as a release does, the
	// plan shown before the apply when the wave has a gate.
	keelson := func(app, version string, gated bool) time.Duration {
		st := terraform.Stack{Application: app, Version: version, Region: "us-east-1", Dir: stack}
		start := time.Now()
		v, err := env.ExecuteActivity(tacts.Plan, terraform.PlanInput{Stack: st, Ungated: !gated})
		if err != nil {
			t.Fatalf("Keelson's terraform plan: %v", err)
		}
		var plan terraform.PlanResult
		if err := v.Get(&plan); err != nil {
			t.Fatal(err)
		}
		// As a release applies it: with the plan that was approved.
		if _, err := env.ExecuteActivity(tacts.Apply, terraform.ApplyInput{Stack: st, PlanKey: plan.PlanKey, Approved: &plan}); err != nil {
			t.Fatalf("Keelson's terraform apply: %v", err)
		}
		return time.Since(start)
	}
	viaKeelson, viaCLI = nil, nil
	var viaKeelsonGated, viaCLIShow []time.Duration
	for i := range runs + 1 {
		version := fmt.Sprintf("1.0.%d", i)
		k := keelson("bench", version, false)
		kg := keelson("bench-gated", version, true)

		start := time.Now()
		tf("init", "-input=false", "-no-color")
		tf("plan", "-input=false", "-no-color", "-out=plan.tfplan", "-var", "application=bench", "-var", "region=us-east-1", "-var", "app_version="+version)
		tf("apply", "-input=false", "-no-color", "plan.tfplan")
		c := time.Since(start)
		// What a pipeline that shows its plan to an approver adds, as
		// Keelson does for a gate: the plan as JSON.
		start = time.Now()
		tf("show", "-json", "plan.tfplan")
		show := time.Since(start)
		if i > 0 {
			viaKeelson, viaCLI = append(viaKeelson, k), append(viaCLI, c)
			viaKeelsonGated, viaCLIShow = append(viaKeelsonGated, kg), append(viaCLIShow, c+show)
		}
		t.Logf("terraform run %d: Keelson %s, CLI %s; gated: Keelson %s, CLI with show -json %s", i, k.Round(time.Millisecond),
			c.Round(time.Millisecond), kg.Round(time.Millisecond), (c + show).Round(time.Millisecond))
	}
	mk, mc = benchfig.Median(viaKeelson), benchfig.Median(viaCLI)
	benchfig.Report(t, benchfig.Figure{Name: "terraform.plan_apply.ratio", Value: mk.Seconds() / mc.Seconds(), Unit: "ratio",
		Max: benchfig.AtMost(1.05), Detail: fmt.Sprintf("Keelson %s (a wave without a gate: plan, then apply with show beside it), terraform CLI (init, plan -out, apply) %s (medians of %d, demo stack)",
			mk.Round(time.Millisecond), mc.Round(time.Millisecond), runs)})
	mg, ms := benchfig.Median(viaKeelsonGated), benchfig.Median(viaCLIShow)
	benchfig.Report(t, benchfig.Figure{Name: "terraform.gated_plan_apply.ratio", Value: mg.Seconds() / ms.Seconds(), Unit: "ratio",
		Max: benchfig.AtMost(1.05), Detail: fmt.Sprintf("Keelson %s (a gated wave: plan and show, then apply), terraform CLI with the plan shown as JSON (init, plan -out, show -json, apply) %s (medians of %d)",
			mg.Round(time.Millisecond), ms.Round(time.Millisecond), runs)})
}

// TestBenchRecovery kills the lab's worker with SIGKILL in the middle of a
// Terraform apply KEELSON_BENCH_KILLS (10) times, each in a release of its
// own, starting the worker again at once, and measures the time from each
// kill to the killed activity running again on a worker: its next attempt
// started (item 6). The restarted worker hands its dead predecessor's
// attempts back (worker/journal.go); without it, the heartbeat timeout.
func TestBenchRecovery(t *testing.T) {
	l := newLab(t)
	kills := slackEnvInt(t, "KEELSON_BENCH_KILLS", 10)
	base := l.appName(t, "brecover")
	// Each kill takes a release of its own: a second kill of the same step
	// would measure the retry policy's backoff (1 s, then 2, 4, 8) as well.
	const killsPerRelease = 1
	var child string
	startRelease := func(n int) {
		app := fmt.Sprintf("%s-%d", base, n)
		file := l.releaseFile(t, app, func(doc map[string]any) {
			doc["health"] = []any{}
			doc["regions"] = []any{region(doc, "us-east-1")}
			region(doc, "us-east-1")["terraformVars"].(map[string]any)["apply_delay"] = "3600"
			doc["waves"] = []any{map[string]any{"name": "only", "regions": []any{"us-east-1"}, "bake": "0s"}}
		})
		id := l.start(t, file, runVersion(1))
		child = workflows.RegionID(id, "us-east-1")
		t.Cleanup(func() {
			_ = l.tc.TerminateWorkflow(context.Background(), id, "", "make bench: recovery measured")
			_ = l.tc.TerminateWorkflow(context.Background(), workflows.RegionID(id, "us-east-1"), "", "make bench: recovery measured")
			_ = l.kube["us-east-1"].CoreV1().Namespaces().Delete(context.Background(), app, metav1.DeleteOptions{})
		})
	}
	// applying returns the attempt of the running Apply and when it
	// started.
	applying := func() (int32, time.Time, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d, err := l.tc.DescribeWorkflowExecution(ctx, child, "")
		if err != nil {
			return 0, time.Time{}, false
		}
		for _, pa := range d.PendingActivities {
			if pa.GetActivityType().GetName() == "Apply" && pa.GetState() == enumspb.PENDING_ACTIVITY_STATE_STARTED && pa.GetLastStartedTime() != nil {
				return pa.GetAttempt(), pa.GetLastStartedTime().AsTime(), true
			}
		}
		return 0, time.Time{}, false
	}
	var took []time.Duration
	for i := range kills {
		if i%killsPerRelease == 0 {
			startRelease(i / killsPerRelease)
		}
		var attempt int32
		var since time.Time
		// Terraform in the middle of the apply: it has run for a second.
		waitUntil(t, 3*time.Minute, 50*time.Millisecond, "the apply to run", func() bool {
			a, s, ok := applying()
			attempt, since = a, s
			return ok && time.Since(s) > time.Second
		})
		killed := time.Now()
		l.killWorker(t)
		l.script(t, "worker.sh", "start")
		var again time.Time
		waitUntil(t, time.Minute, 20*time.Millisecond, "the apply's next attempt to start", func() bool {
			a, s, ok := applying()
			again = s
			return ok && a > attempt && s.After(since)
		})
		took = append(took, again.Sub(killed))
		t.Logf("kill %d: attempt %d started again %s after the kill", i+1, attempt+1, again.Sub(killed).Round(time.Millisecond))
	}
	benchfig.Report(t, benchfig.Figure{Name: "recovery.kill_to_rerun.median", Value: benchfig.Seconds(benchfig.Median(took)), Unit: "s",
		Max: benchfig.AtMost(5), Detail: fmt.Sprintf("SIGKILL mid-apply to the activity's next attempt started, %d kills, worker restarted at once; max %s",
			len(took), slices.Max(took).Round(time.Millisecond))})
}

// TestBenchManyReleases starts KEELSON_BENCH_LOADS (100)
// releases of as many applications at once on the lab's one worker, one
// region each over the three clusters, held in a bake, every one required
// to succeed (item 4). What is measured is the worker: the releases install
// bench/chart (one ConfigMap), so that the lab's three API servers, which
// share the machine's two cores with everything else, are not what bounds
// how fast the releases get to their bake (with the demo's chart they
// reached it at about two per second: pods, ReplicaSets and their status
// updates); they still reach it at about two per second, the dev server's
// pace on two cores. The bake (KEELSON_BENCH_LOAD_BAKE, 60 s) grows with
// the count (half a second each, and 30 s) so that every release waits at
// once: 500 releases take about 9 minutes, 1,000 about 17.
func TestBenchManyReleases(t *testing.T) {
	l := newLab(t)
	for _, v := range strings.Split(envOr("KEELSON_BENCH_LOADS", "100"), ",") {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n <= 0 {
			t.Fatalf("KEELSON_BENCH_LOADS: %q is not a count", v)
		}
		bake, err := time.ParseDuration(envOr("KEELSON_BENCH_LOAD_BAKE", "60s"))
		if err != nil {
			t.Fatal(err)
		}
		// Deploying n releases takes a while: the bake must outlast it for
		// every release to wait at once.
		bake = max(bake, time.Duration(n)*500*time.Millisecond+30*time.Second)
		res := l.load(t, fmt.Sprintf("bload%d", n), n, bake, regions, filepath.Join(l.root, "bench/chart"))
		detail := fmt.Sprintf("%d releases, one worker, bake %s, bench/chart", n, bake)
		benchfig.Report(t, benchfig.Figure{Name: fmt.Sprintf("load.%d.started", n), Value: res.started.Seconds(), Unit: "s", Detail: detail})
		benchfig.Report(t, benchfig.Figure{Name: fmt.Sprintf("load.%d.all_waiting", n), Value: res.deployed.Seconds(), Unit: "s",
			Detail: "from the first start to the last release in its bake"})
		benchfig.Report(t, benchfig.Figure{Name: fmt.Sprintf("load.%d.worker_rss_peak", n), Value: res.peakRSS, Unit: "MiB",
			Max: benchfig.AtMost(1024), Detail: detail})
		benchfig.Report(t, benchfig.Figure{Name: fmt.Sprintf("load.%d.worker_cpu_waiting", n), Value: res.waitCPU, Unit: "cores",
			Detail: fmt.Sprintf("while every release waited in its bake (%s measured)", res.waitFor.Round(time.Second))})
		benchfig.Report(t, benchfig.Figure{Name: fmt.Sprintf("load.%d.finish_after_bakes", n), Value: res.tail.Seconds(), Unit: "s",
			Detail: "from the last bake's end to the last release's end"})
	}
}
