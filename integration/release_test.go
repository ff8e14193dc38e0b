package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
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
	const app = "itdemo"
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

		st := l.waitPhase(t, id, workflows.PhaseAwaitGate, 3*time.Minute)
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

// killWorker sends SIGKILL to the lab's worker, as a crashed node would.
func (l *lab) killWorker(t *testing.T) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(l.dir, "worker.pid"))
	if err != nil {
		t.Fatalf("worker pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatalf("worker pid %q: %v", raw, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", pid, err)
	}
	t.Logf("worker %d killed with SIGKILL", pid)
}

// TestWorkerCrashMidActivity kills the worker twice during one release:
// while the canary's Terraform apply runs, and while a second region's
// Helm upgrade is half written. The release completes, and every region has
// exactly one new Helm revision and one Terraform apply.
func TestWorkerCrashMidActivity(t *testing.T) {
	l := newLab(t)
	const app = "itcrash"
	file := l.releaseFile(t, app, func(doc map[string]any) {
		delete(wave(doc, "rest"), "gate")
		// The stack waits this long inside its apply: the window to kill in.
		region(doc, "us-east-1")["terraformVars"].(map[string]any)["apply_delay"] = "8"
	})
	before := revisionCounts(t, l, app)
	version := runVersion(1)
	// Whatever happens, leave the lab with a worker (start is idempotent).
	t.Cleanup(func() { l.script(t, "worker.sh", "start") })

	id := l.start(t, file, version)

	// Crash 1: Terraform apply in flight in us-east-1.
	canary := workflows.RegionID(id, "us-east-1")
	deadline := time.Now().Add(2 * time.Minute)
	for !l.pendingActivity(canary, "Apply") {
		if time.Now().After(deadline) {
			t.Fatal("the canary's Terraform apply never showed as running")
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // well inside the apply's 8 s wait
	l.killWorker(t)
	time.Sleep(time.Second)
	restart1 := time.Now()
	l.script(t, "worker.sh", "start")

	// Crash 2: Helm upgrade half written in eu-west-1 (Helm's storage holds
	// the new revision as pending-upgrade while it applies the manifests).
	ns := app
	status := "pending-upgrade"
	if before["eu-west-1"] == 0 {
		status = "pending-install"
	}
	deadline = time.Now().Add(3 * time.Minute)
	for {
		secrets, err := l.kube["eu-west-1"].CoreV1().Secrets(ns).List(context.Background(),
			metav1.ListOptions{LabelSelector: "owner=helm,name=" + app + ",status=" + status})
		if err == nil && len(secrets.Items) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("eu-west-1's Helm upgrade never showed as %s", status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	l.killWorker(t)
	time.Sleep(time.Second)
	restart2 := time.Now()
	l.script(t, "worker.sh", "start")

	res := l.result(t, id, 5*time.Minute)
	if res.Phase != workflows.PhaseSucceeded {
		t.Fatalf("release after two crashes: %s", writeJSON(res))
	}
	for _, r := range regions {
		if n := len(l.helmRevisions(t, r, app)); n != before[r]+1 {
			t.Errorf("%s: %d Helm revisions, want exactly one new (%d)", r, n, before[r]+1)
		}
		if v := l.deployedVersion(t, r, app); v != version {
			t.Errorf("%s: deployed version %q, want %q", r, v, version)
		}
		if n := l.applies(t, r, app, version); n != 1 {
			t.Errorf("%s: %d Terraform applies of %s recorded, want exactly 1", r, n, version)
		}
	}
	// The histories show the retried activities, and how soon after the
	// worker came back they started again.
	for _, c := range []struct {
		region   string
		activity string
		restart  time.Time
	}{{"us-east-1", "Apply", restart1}, {"eu-west-1", "Upgrade", restart2}} {
		retried := time.Time{}
		events := l.history(t, workflows.RegionID(id, c.region))
		scheduled := map[int64]string{}
		for _, e := range events {
			if a := e.GetActivityTaskScheduledEventAttributes(); a != nil {
				scheduled[e.GetEventId()] = a.GetActivityType().GetName()
			}
			if a := e.GetActivityTaskStartedEventAttributes(); a != nil && scheduled[a.GetScheduledEventId()] == c.activity && a.GetAttempt() > 1 {
				retried = e.GetEventTime().AsTime()
			}
		}
		if c.region == "us-east-1" && retried.IsZero() {
			t.Errorf("%s: no retried %s in the history", c.region, c.activity)
			continue
		}
		if retried.IsZero() {
			// The kill may land after Upgrade returned, during readiness.
			t.Logf("%s: %s finished before the kill; the retry was of a later step", c.region, c.activity)
			continue
		}
		t.Logf("%s: retried %s started %s after the worker's restart", c.region, c.activity, retried.Sub(c.restart).Round(time.Millisecond))
	}
}

// TestTemporalRestartMidBake stops the Temporal dev server while the canary
// bakes and starts it again on the same SQLite file; the release completes.
func TestTemporalRestartMidBake(t *testing.T) {
	l := newLab(t)
	const app = "itrestart"
	file := l.releaseFile(t, app, func(doc map[string]any) {
		delete(wave(doc, "rest"), "gate")
		wave(doc, "canary")["bake"] = "20s"
	})
	id := l.start(t, file, runVersion(1))
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, err := l.ctl.Status(context.Background(), id)
		if err == nil && st.Waves[0].Regions[0].Step == workflows.StepBake {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the canary never started baking: %+v %v", st, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	l.script(t, "temporal.sh", "stop")
	time.Sleep(2 * time.Second)
	l.script(t, "temporal.sh", "start")
	res := l.result(t, id, 4*time.Minute)
	if res.Phase != workflows.PhaseSucceeded {
		t.Fatalf("release after a Temporal restart: %s", writeJSON(res))
	}
	if d := res.Regions[0].Duration; d < 20*time.Second {
		t.Errorf("canary took %s: its 20s bake was not kept across the restart", d)
	}
}

// TestFailingRegionRollsBack releases a good version, then one whose pods
// never become ready: the canary fails readiness, is rolled back to the good
// revision, and the other regions are never touched.
func TestFailingRegionRollsBack(t *testing.T) {
	l := newLab(t)
	const app = "itfail"
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
