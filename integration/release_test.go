package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson-dev/keelson/workflows"
)

// runVersion is a version no earlier run of the suite used, so every run
// upgrades the lab's releases instead of finding them already deployed.
func runVersion(major int) string {
	return fmt.Sprintf("%d.%d.0", major, time.Now().Unix()%1_000_000)
}

func revisionCounts(t *testing.T, l *lab, app string) map[string]int {
	counts := map[string]int{}
	for _, r := range regions {
		counts[r] = len(l.helmRevisions(t, r, app))
	}
	return counts
}

// TestDemoReleaseThroughCLI runs the demo as a user does: start, a retried
// start, approve the gate, watch to the end; then a second version upgrades.
func TestDemoReleaseThroughCLI(t *testing.T) {
	l := newLab(t)
	app := l.appName(t, "itdemo")
	file := l.releaseFile(t, app, nil)
	before := revisionCounts(t, l, app)

	for i, version := range []string{runVersion(1), runVersion(2)} {
		begin := time.Now()
		id := l.start(t, file, version)
		if want := workflows.ReleaseID(app, version); id != want {
			t.Fatalf("release id %q, want %q", id, want)
		}
		// A CI retry: the same start again returns the running release.
		out, code := l.keelson(t, "release", "start", "-f", file, "--version", version)
		if code != 0 || !strings.Contains(out, "already running: yes") || !strings.Contains(out, "release: "+id) {
			t.Fatalf("second start: exit %d, want the running release:\n%s", code, out)
		}

		st := l.waitPhaseCLI(t, id, workflows.PhaseAwaitGate, 3*time.Minute)
		if st.Gate == nil || st.Gate.Name != "promote-to-rest" {
			t.Fatalf("gate at the gate: %+v", st.Gate)
		}
		out, code = l.keelson(t, "approve", id, "--gate", "promote-to-rest", "--user", "mallory")
		if code == 0 || !strings.Contains(out, "not an approver") {
			t.Fatalf("approve by mallory: exit %d, want a refusal:\n%s", code, out)
		}
		out, code = l.keelson(t, "approve", id, "--gate", "promote-to-rest", "--user", "demo-approver")
		if code != 0 {
			t.Fatalf("approve: exit %d\n%s", code, out)
		}
		out, code = l.keelson(t, "release", "watch", id)
		if code != 0 {
			t.Fatalf("watch: exit %d\n%s", code, out)
		}
		t.Logf("release %s through the CLI: %s", id, time.Since(begin).Round(time.Millisecond))

		res := l.result(t, id, time.Minute)
		if res.Phase != workflows.PhaseSucceeded || len(res.Approvals) != 1 || res.Approvals[0].User != "demo-approver" {
			t.Fatalf("result: %s", writeJSON(res))
		}
		if i == 0 {
			l.record(t, id, "release-gate-approved")
			l.record(t, workflows.RegionID(id, "eu-west-1"), "region-gate-approved")
			l.record(t, workflows.LaneID(app), "lane-demo")
		}
		for _, r := range regions {
			revs := l.helmRevisions(t, r, app)
			if len(revs) != before[r]+i+1 {
				t.Errorf("%s: %d Helm revisions after release %d, want %d (one new revision per release)", r, len(revs), i+1, before[r]+i+1)
			}
			if last := revs[len(revs)-1]; last.Status != "deployed" {
				t.Errorf("%s: latest revision %d is %s", r, last.Revision, last.Status)
			}
			if v := l.deployedVersion(t, r, app); v != version {
				t.Errorf("%s: ConfigMap carries version %q, want %q", r, v, version)
			}
			if label, image := l.podTemplate(t, r, app); label != version || !strings.HasSuffix(image, ":"+version) {
				t.Errorf("%s: Deployment's pod template has version label %q and image %q, want version %s", r, label, image, version)
			}
			if n := l.readyReplicas(t, r, app); n != 1 {
				t.Errorf("%s: %d ready replicas, want 1", r, n)
			}
		}
		for _, rr := range res.Regions {
			if i > 0 || before[rr.Region] > 0 {
				if rr.PreviousRevision == 0 || rr.Revision != rr.PreviousRevision+1 {
					t.Errorf("%s: revisions %d -> %d: an upgrade, not a fresh install, was expected", rr.Region, rr.PreviousRevision, rr.Revision)
				}
			}
		}
		// Only one run of the release exists, whatever the retried start did.
		runs, err := l.tc.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{
			Query: fmt.Sprintf("WorkflowId = '%s'", id),
		})
		if err != nil {
			t.Fatal(err)
		}
		if n := len(runs.Executions); n != 1 {
			t.Errorf("%d runs of %s, want 1", n, id)
		}
	}
}

// TestWorkerCrashMidActivity kills the worker with SIGKILL twice during one
// release: (a) while the canary's Terraform apply runs (the stack's
// apply_delay holds it in its `sleep` provisioner), and (b) while a region
// of the second wave waits for readiness (a ResourceQuota in that region's
// namespace keeps its pods from being created until the worker is dead).
// The worker is started again each time, the release completes, and every
// region has exactly one new Helm revision and one Terraform apply of the
// version, while the region histories show the retried activities.
func TestWorkerCrashMidActivity(t *testing.T) {
	l := newLab(t)
	app := l.appName(t, "itcrash")
	file := l.releaseFile(t, app, func(doc map[string]any) {
		delete(wave(doc, "rest"), "gate")
		// The stack waits this long inside its apply: the window to kill in.
		region(doc, "us-east-1")["terraformVars"].(map[string]any)["apply_delay"] = "8"
	})
	before := revisionCounts(t, l, app)
	version := runVersion(1)
	// Whatever happens, leave the lab with a worker (start is idempotent).
	t.Cleanup(func() { l.script(t, "worker.sh", "start") })

	// The hold for crash (b): no pod may be created in eu-west-1's namespace.
	ctx := context.Background()
	kube := l.kube["eu-west-1"]
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: app}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	hold := &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "hold-pods"},
		Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("0")}},
	}
	if _, err := kube.CoreV1().ResourceQuotas(app).Create(ctx, hold, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create the pod hold in eu-west-1: %v", err)
	}
	t.Cleanup(func() { _ = kube.CoreV1().ResourceQuotas(app).Delete(ctx, hold.Name, metav1.DeleteOptions{}) })

	begin := time.Now()
	id := l.start(t, file, version)
	canary := workflows.RegionID(id, "us-east-1")
	second := workflows.RegionID(id, "eu-west-1")

	// Crash (a): the child's pending activity says Apply has started, and
	// the provisioner's sleep in the working copy says Terraform is inside
	// the apply.
	workCopy := filepath.Join(l.dir, "work", app, "us-east-1")
	waitUntil(t, 2*time.Minute, 50*time.Millisecond, "the canary's Terraform apply to run", func() bool {
		n, _ := l.pendingAttempt(canary, "Apply")
		return n > 0 && processIn("sleep", workCopy)
	})
	killA := time.Now()
	l.killWorker(t)
	if processIn("terraform", workCopy) {
		t.Log("a Terraform orphaned by the kill still runs in the canary's working copy (the retry must cope)")
	}
	restartA := time.Now()
	l.script(t, "worker.sh", "start")

	// Crash (b): eu-west-1's readiness wait is running, held by the quota.
	waitUntil(t, 3*time.Minute, 50*time.Millisecond, "eu-west-1's readiness wait to run", func() bool {
		n, _ := l.pendingAttempt(second, "WaitReady")
		return n > 0
	})
	time.Sleep(time.Second) // inside the wait, not at its first instant
	killB := time.Now()
	l.killWorker(t)
	if err := kube.CoreV1().ResourceQuotas(app).Delete(ctx, hold.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("lift the pod hold in eu-west-1: %v", err)
	}
	restartB := time.Now()
	l.script(t, "worker.sh", "start")

	res := l.result(t, id, 5*time.Minute)
	t.Logf("release %s with two worker crashes: %s", id, time.Since(begin).Round(time.Millisecond))
	if res.Phase != workflows.PhaseSucceeded {
		t.Fatalf("release after two crashes: %s", writeJSON(res))
	}
	l.record(t, id, "release-crash-mid-step")
	l.record(t, workflows.RegionID(id, "us-east-1"), "region-crash-mid-step")
	for _, r := range regions {
		revs := l.helmHistory(t, r, app)
		if len(revs) != before[r]+1 {
			t.Errorf("%s: %d Helm revisions, want exactly one new (%d): %+v", r, len(revs), before[r]+1, revs)
		}
		if n := len(l.helmRevisions(t, r, app)); n != before[r]+1 {
			t.Errorf("%s: %d Helm storage Secrets, want %d", r, n, before[r]+1)
		}
		if last := revs[len(revs)-1]; last.Version != version || last.Status != "deployed" {
			t.Errorf("%s: latest revision %d is %s of %q, want deployed %s", r, last.Revision, last.Status, last.Version, version)
		}
		if v := l.deployedVersion(t, r, app); v != version {
			t.Errorf("%s: deployed version %q, want %q", r, v, version)
		}
		if n := l.applies(t, r, app, version); n != 1 {
			t.Errorf("%s: %d Terraform applies of %s recorded in applies.log, want exactly 1", r, n, version)
		}
	}
	// The histories show the retried activities, and how soon after the
	// worker came back they started again.
	for _, c := range []struct {
		region, workflowID, activity string
		kill, restart                time.Time
	}{
		{"us-east-1", canary, "Apply", killA, restartA},
		{"eu-west-1", second, "WaitReady", killB, restartB},
	} {
		rs := retries(l.history(t, c.workflowID), c.activity)
		if len(rs) == 0 {
			t.Errorf("%s: no retried %s (ActivityTaskStarted with attempt > 1) in %s's history", c.region, c.activity, c.workflowID)
			continue
		}
		r := rs[len(rs)-1]
		t.Logf("%s: %s attempt %d started %s after the worker's restart (%s after the SIGKILL); previous attempt: %s",
			c.region, c.activity, r.Attempt, r.At.Sub(c.restart).Round(time.Millisecond), r.At.Sub(c.kill).Round(time.Millisecond), r.LastFailure)
	}
}

// waitUntil polls cond until it holds, failing the test after within.
func waitUntil(t *testing.T, within, every time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", within, what)
		}
		time.Sleep(every)
	}
}

// TestTemporalRestartMidBake stops the Temporal dev server while the canary
// bakes and starts it again on the same SQLite file; the release completes.
func TestTemporalRestartMidBake(t *testing.T) {
	l := newLab(t)
	app := l.appName(t, "itrestart")
	file := l.releaseFile(t, app, func(doc map[string]any) {
		delete(wave(doc, "rest"), "gate")
		wave(doc, "canary")["bake"] = "20s"
	})
	id := l.start(t, file, runVersion(1))
	// The canary's own status says when it bakes: the release's copy of it
	// comes by signals that may arrive out of order (see the report).
	canary := workflows.RegionID(id, "us-east-1")
	var last workflows.RegionStatus
	waitUntil(t, 2*time.Minute, 200*time.Millisecond, "the canary to bake", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		v, err := l.tc.QueryWorkflow(ctx, canary, "", workflows.QueryStatus)
		if err != nil {
			return false
		}
		if err := v.Get(&last); err != nil {
			t.Fatalf("status of %s: %v", canary, err)
		}
		return last.Step == workflows.StepBake && last.Phase == workflows.PhaseBaking
	})
	down := time.Now()
	l.script(t, "temporal.sh", "stop")
	time.Sleep(2 * time.Second)
	l.script(t, "temporal.sh", "start")
	t.Logf("Temporal was down for %s in the middle of the canary's 20s bake", time.Since(down).Round(time.Millisecond))
	res := l.result(t, id, 4*time.Minute)
	if res.Phase != workflows.PhaseSucceeded {
		t.Fatalf("release after a Temporal restart: %s", writeJSON(res))
	}
	l.record(t, id, "release-temporal-restart")
	for _, rr := range res.Regions {
		if rr.Phase != workflows.PhaseSucceeded {
			t.Errorf("%s: %s (%s)", rr.Region, rr.Phase, rr.Error)
		}
	}
	if d := res.Regions[0].Duration; d < 20*time.Second {
		t.Errorf("canary took %s: its 20s bake was not kept across the restart", d)
	}
	t.Logf("release %s completed across the restart in %s", id, res.Duration().Round(time.Millisecond))
}

// TestFailingRegionRollsBack releases a good version, then one whose pods
// never become ready: the canary fails readiness, is rolled back to the good
// revision, and the other regions are never touched.
func TestFailingRegionRollsBack(t *testing.T) {
	l := newLab(t)
	app := l.appName(t, "itfail")
	file := l.releaseFile(t, app, func(doc map[string]any) {
		delete(wave(doc, "rest"), "gate")
		doc["readiness"] = map[string]any{"timeout": "15s"}
	})
	good := runVersion(1)
	if res := l.result(t, l.start(t, file, good), 4*time.Minute); res.Phase != workflows.PhaseSucceeded {
		t.Fatalf("good version: %s", writeJSON(res))
	}
	before := revisionCounts(t, l, app)

	bad := runVersion(2) + "-unready"
	id := l.start(t, file, bad)
	res := l.result(t, id, 4*time.Minute)
	if res.Phase != workflows.PhaseRolledBack {
		t.Fatalf("bad version: want rolled-back, got %s", writeJSON(res))
	}
	l.record(t, id, "release-not-shipped")
	l.record(t, workflows.RegionID(id, "us-east-1"), "region-lean-progress")
	// It did not ship: Temporal (the Web UI's list, `temporal workflow
	// list`) shows it Failed with the outcome as the message, the CLI
	// still reads its result, and --attention lists it.
	d, err := l.tc.DescribeWorkflowExecution(context.Background(), id, "")
	if err != nil {
		t.Fatal(err)
	}
	if st := d.GetWorkflowExecutionInfo().GetStatus(); st != enumspb.WORKFLOW_EXECUTION_STATUS_FAILED {
		t.Errorf("a rolled-back release closed as %s, want Failed", st)
	}
	events := l.history(t, id)
	if f := events[len(events)-1].GetWorkflowExecutionFailedEventAttributes().GetFailure(); !strings.HasPrefix(f.GetMessage(), "rolled-back: region us-east-1 failed") {
		t.Errorf("failure message %q, want the outcome and reason", f.GetMessage())
	}
	if out, code := l.keelson(t, "release", "list", "--attention", "--app", app); code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "rolled-back") {
		t.Errorf("release list --attention does not list %s: exit %d\n%s", id, code, out)
	}
	if !strings.Contains(res.Reason, "us-east-1") {
		t.Errorf("reason %q does not name the failing region", res.Reason)
	}
	canary := res.Regions[0]
	if canary.Region != "us-east-1" || canary.Phase != workflows.PhaseRolledBack || canary.RolledBackTo == 0 {
		t.Errorf("canary: %+v", canary)
	}
	revs := l.helmRevisions(t, "us-east-1", app)
	if len(revs) != before["us-east-1"]+2 {
		t.Errorf("us-east-1: %d revisions, want the bad upgrade and its rollback (%d)", len(revs), before["us-east-1"]+2)
	}
	if v := l.deployedVersion(t, "us-east-1", app); v != good {
		t.Errorf("us-east-1 runs %q after the rollback, want %q", v, good)
	}
	// Helm's last revision is the rollback, with the good version's values,
	// and the one before it the bad upgrade.
	hist := l.helmHistory(t, "us-east-1", app)
	if n := len(hist); n < 2 {
		t.Fatalf("us-east-1: Helm history %+v", hist)
	}
	last, prev := hist[len(hist)-1], hist[len(hist)-2]
	if last.Version != good || last.Status != "deployed" || !strings.Contains(last.Description, "Rollback to") || last.Revision != canary.RolledBackTo {
		t.Errorf("us-east-1: last revision %+v, want the rollback (revision %d) to %s", last, canary.RolledBackTo, good)
	}
	if prev.Version != bad {
		t.Errorf("us-east-1: revision %d has version %q, want the bad upgrade %q", prev.Revision, prev.Version, bad)
	}
	for _, r := range regions[1:] {
		if n := len(l.helmRevisions(t, r, app)); n != before[r] {
			t.Errorf("%s: %d revisions, want %d: the line stopped before it", r, n, before[r])
		}
		if v := l.deployedVersion(t, r, app); v != good {
			t.Errorf("%s runs %q, want the untouched %q", r, v, good)
		}
	}
	out, code := l.keelson(t, "release", "watch", id)
	if code != 1 {
		t.Errorf("watch of a rolled-back release: exit %d, want 1\n%s", code, out)
	}
}

// TestTerminatedRegionIsRolledBack kills a region's workflow (as `temporal
// workflow terminate` would) after its Helm upgrade and before it told its
// release anything (keelson-lean-history: the new revision travels with the
// next phase). The release reads the region's latest revision from the
// cluster, sees its own owner labels on it, and rolls it back.
func TestTerminatedRegionIsRolledBack(t *testing.T) {
	l := newLab(t)
	app := l.appName(t, "itterm")
	file := l.releaseFile(t, app, func(doc map[string]any) {
		delete(doc, "terraform")
		delete(wave(doc, "rest"), "gate")
		// Long enough for the test to find the upgrade and terminate.
		doc["readiness"] = map[string]any{"timeout": "3m"}
	})
	good := runVersion(1)
	if res := l.result(t, l.start(t, file, good), 4*time.Minute); res.Phase != workflows.PhaseSucceeded {
		t.Fatalf("good version: %s", writeJSON(res))
	}
	before := len(l.helmRevisions(t, "us-east-1", app))

	bad := runVersion(2) + "-unready"
	id := l.start(t, file, bad)
	deadline := time.Now().Add(2 * time.Minute)
	for len(l.helmRevisions(t, "us-east-1", app)) == before {
		if time.Now().After(deadline) {
			t.Fatalf("no Helm upgrade of %s in us-east-1 within 2m", app)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The region now waits for readiness (pods of -unready never become
	// ready); its release has not been told of the revision.
	region := workflows.RegionID(id, "us-east-1")
	if err := l.tc.TerminateWorkflow(context.Background(), region, "", "test: the region's workflow dies after its upgrade"); err != nil {
		t.Fatalf("terminate %s: %v", region, err)
	}
	res := l.result(t, id, 3*time.Minute)
	if res.Phase != workflows.PhaseRolledBack {
		t.Fatalf("want rolled-back, got %s", writeJSON(res))
	}
	l.record(t, id, "release-region-terminated")
	r0 := res.Regions[0]
	if !r0.Changed || r0.Revision != before+1 || r0.RolledBackTo == 0 {
		t.Errorf("us-east-1: %+v, want revision %d learned from the cluster and rolled back", r0, before+1)
	}
	if v := l.deployedVersion(t, "us-east-1", app); v != good {
		t.Errorf("us-east-1 runs %q, want %q after the rollback", v, good)
	}
	if n := len(l.helmRevisions(t, "us-east-1", app)); n != before+2 {
		t.Errorf("us-east-1: %d revisions, want the upgrade and its rollback (%d)", n, before+2)
	}
	for _, rr := range res.Regions[1:] {
		if rr.Changed {
			t.Errorf("%s changed after the first wave failed: %+v", rr.Region, rr)
		}
	}
}
