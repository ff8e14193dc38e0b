package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keelson-dev/keelson/activities/helm"
	"github.com/keelson-dev/keelson/control"
	"github.com/keelson-dev/keelson/workflows"
)

// These tests hold Keelson to its first duty, never to harm what it does
// not own (issue 7): one release per application at a time, changes owned
// by the run, failed upgrades rolled back, a cancel that never cuts a step
// in half, plans applied only as approved, rollbacks that outlast an
// outage. Each records the history of the path it takes when
// KEELSON_RECORD_DIR is set (see docs/versioning.md).

// noGate drops the demo's gate and shortens its bakes.
func noGate(bake string) func(doc map[string]any) {
	return func(doc map[string]any) {
		delete(wave(doc, "rest"), "gate")
		for _, w := range doc["waves"].([]any) {
			w.(map[string]any)["bake"] = bake
		}
	}
}

// keelsonRevisions is, per Helm revision made by Keelson, the release id in
// its labels, oldest first.
func keelsonRevisions(hist []helm.Revision) []string {
	var ids []string
	for _, r := range hist {
		if r.ReleaseID != "" {
			ids = append(ids, r.ReleaseID)
		}
	}
	return ids
}

// succeed releases version of the file's application and requires it to
// succeed (files without a gate).
func (l *lab) succeed(t *testing.T, file, version string) string {
	t.Helper()
	id := l.start(t, file, version)
	if res := l.result(t, id, 4*time.Minute); res.Phase != workflows.PhaseSucceeded {
		t.Fatalf("release %s: %s", version, writeJSON(res))
	}
	return id
}

// throughGate releases version of the file's application, approving the
// demo's gate from the CLI, and requires it to succeed.
func (l *lab) throughGate(t *testing.T, file, version string) string {
	t.Helper()
	id := l.start(t, file, version)
	l.waitPhase(t, id, workflows.PhaseAwaitGate, 2*time.Minute)
	if out, code := l.keelson(t, "approve", id, "--user", "demo-approver"); code != 0 {
		t.Fatalf("approve %s: %s", id, out)
	}
	if res := l.result(t, id, 3*time.Minute); res.Phase != workflows.PhaseSucceeded {
		t.Fatalf("release %s: %s", version, writeJSON(res))
	}
	return id
}

func lastRevision(t *testing.T, hist []helm.Revision) helm.Revision {
	t.Helper()
	if len(hist) == 0 {
		t.Fatal("empty Helm history")
	}
	return hist[len(hist)-1]
}

func TestSecondVersionWaitsInTheLane(t *testing.T) {
	t.Parallel() // waits on applications of its own (see TestMain)
	l := newLab(t)
	app := l.appName(t, "itlane")
	file := l.releaseFile(t, app, noGate("6s"))
	v1, v2 := runVersion(1), runVersion(2)
	id1 := l.start(t, file, v1)
	id2 := l.start(t, file, v2)

	// The second waits, saying behind whom, in status and in the CLI.
	var st *workflows.Status
	waitUntil(t, 60*time.Second, 300*time.Millisecond, id2+" queued behind "+id1, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := l.ctl.Status(ctx, id2)
		if err != nil {
			return false
		}
		st = s
		return s.Phase == workflows.PhaseQueued && s.Queue != nil && s.Queue.Behind == id1
	})
	if st.Queue.Position != 1 {
		t.Errorf("queue position %d, want 1", st.Queue.Position)
	}
	out, _ := l.keelson(t, "release", "status", id2)
	if !strings.Contains(out, "queued") || !strings.Contains(out, id1) {
		t.Errorf("release status of a queued release does not say it is queued behind %s:\n%s", id1, out)
	}
	r1 := l.result(t, id1, 4*time.Minute)
	r2 := l.result(t, id2, 4*time.Minute)
	if r1.Phase != workflows.PhaseSucceeded || r2.Phase != workflows.PhaseSucceeded {
		t.Fatalf("both should succeed:\n%s\n%s", writeJSON(r1), writeJSON(r2))
	}
	if r2.Regions[0].Started.Before(r1.Finished) {
		t.Errorf("%s started its first region at %s, before %s finished at %s", id2, r2.Regions[0].Started, id1, r1.Finished)
	}
	for _, region := range regions {
		ids := keelsonRevisions(l.helmHistory(t, region, app))
		if want := []string{id1, id2}; !slices.Equal(ids, want) {
			t.Errorf("%s: Keelson's revisions were made by %v, want %v (contiguous, in start order)", region, ids, want)
		}
		if v := l.deployedVersion(t, region, app); v != v2 {
			t.Errorf("%s runs %s, want %s", region, v, v2)
		}
	}
	l.record(t, id2, "release-queued")

	// --supersede aborts the running release (it rolls back what it
	// changed) and then the new one runs.
	slow := l.releaseFile(t, app, noGate("90s"))
	v3, v4 := runVersion(3), runVersion(4)
	id3 := l.start(t, slow, v3)
	waitUntil(t, 2*time.Minute, 300*time.Millisecond, id3+" baking in us-east-1", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := l.ctl.Status(ctx, id3)
		return err == nil && s.Waves[0].Regions[0].Phase == workflows.PhaseBaking
	})
	out, code := l.keelson(t, "release", "start", "-f", file, "--version", v4, "--supersede")
	if code != 0 {
		t.Fatalf("start --supersede: exit %d\n%s", code, out)
	}
	id4 := workflows.ReleaseID(app, v4)
	r3 := l.result(t, id3, 3*time.Minute)
	if r3.Phase != workflows.PhaseAborted || !strings.Contains(r3.Reason, "superseded by "+id4) {
		t.Errorf("superseded release: want aborted, superseded by %s; got %s: %s", id4, r3.Phase, r3.Reason)
	}
	if r3.Regions[0].RolledBackTo == 0 {
		t.Errorf("superseded release did not roll back its canary: %+v", r3.Regions[0])
	}
	r4 := l.result(t, id4, 4*time.Minute)
	if r4.Phase != workflows.PhaseSucceeded {
		t.Fatalf("superseding release: %s", writeJSON(r4))
	}
	if v := l.deployedVersion(t, "us-east-1", app); v != v4 {
		t.Errorf("us-east-1 runs %s after the superseding release, want %s", v, v4)
	}
	l.record(t, id3, "release-superseded")
}

func TestSucceededReleaseIsNotStartedAgain(t *testing.T) {
	l := newLab(t)
	app := l.appName(t, "itrerun")
	file := l.releaseFile(t, app, noGate("2s"))
	v := runVersion(1)
	l.succeed(t, file, v)
	out, code := l.keelson(t, "release", "start", "-f", file, "--version", v)
	if code == 0 || !strings.Contains(out, "already succeeded") || !strings.Contains(out, "--rerun") {
		t.Fatalf("second start of a succeeded release: exit %d, want a refusal naming --rerun:\n%s", code, out)
	}
	before := revisionCounts(t, l, app)

	// A re-run whose canary fails its health checks: it changed nothing
	// (every region already ran this version), so it rolls nothing back.
	failing := l.releaseFile(t, app, func(doc map[string]any) {
		noGate("2s")(doc)
		doc["health"] = []any{map[string]any{"name": "closed-port", "url": "http://127.0.0.1:9/healthz", "interval": "1s", "timeout": "1s", "failureLimit": 1}}
	})
	out, code = l.keelson(t, "release", "start", "-f", failing, "--version", v, "--rerun", "--wait")
	if code != 1 {
		t.Fatalf("failing re-run: exit %d, want 1\n%s", code, out)
	}
	id := workflows.ReleaseID(app, v)
	res := l.result(t, id, time.Minute)
	if res.Phase != workflows.PhaseFailed {
		t.Errorf("failing re-run: want failed (nothing of its own to roll back), got %s: %s", res.Phase, res.Reason)
	}
	for _, r := range res.Regions {
		if r.Changed || r.RolledBackTo != 0 {
			t.Errorf("%s: changed %v, rolled back to %d: the re-run made no revision there", r.Region, r.Changed, r.RolledBackTo)
		}
	}
	if after := revisionCounts(t, l, app); !mapsEqual(after, before) {
		t.Errorf("Helm revisions %v after the failed re-run, want %v untouched", after, before)
	}
	l.record(t, id, "release-rerun-failed")
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// helmCLI runs the lab's helm binary against region, as a person would.
func (l *lab) helmCLI(t *testing.T, region string, args ...string) string {
	t.Helper()
	full := append([]string{"--kubeconfig", l.kubeconfig, "--kube-context", region}, args...)
	cmd := exec.Command(filepath.Join(l.labBin(), "helm"), full...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(full, " "), err, out)
	}
	return string(out)
}

func (l *lab) labBin() string {
	return envOr("KEELSON_LAB_BIN", filepath.Join(l.root, ".cache/lab/bin"))
}

func TestHandMadeRevisionStopsTheRelease(t *testing.T) {
	l := newLab(t)
	app := l.appName(t, "itforeign")
	file := l.releaseFile(t, app, nil)
	v1, v2 := runVersion(1), runVersion(2)
	l.throughGate(t, file, v1)

	id2 := l.start(t, file, v2)
	l.waitPhase(t, id2, workflows.PhaseAwaitGate, 2*time.Minute)
	// Between the waves, someone upgrades eu-west-1 by hand.
	l.helmCLI(t, "eu-west-1", "upgrade", app, filepath.Join(l.root, "infra/demo/chart"), "-n", app, "--reuse-values", "--set", "replicas=2")
	hand := lastRevision(t, l.helmHistory(t, "eu-west-1", app))
	if hand.ReleaseID != "" {
		t.Fatalf("the hand-made revision carries Keelson's labels: %+v", hand)
	}
	if out, code := l.keelson(t, "approve", id2, "--user", "demo-approver"); code != 0 {
		t.Fatalf("approve: %s", out)
	}
	res := l.result(t, id2, 3*time.Minute)
	if res.Phase != workflows.PhaseRolledBack && res.Phase != workflows.PhaseFailed {
		t.Fatalf("release over a hand-made revision: want failed or rolled back, got %s", writeJSON(res))
	}
	eu := res.Regions[1]
	if eu.Region != "eu-west-1" || !strings.Contains(eu.Error, fmt.Sprintf("revision %d", hand.Revision)) {
		t.Errorf("eu-west-1's error does not name the foreign revision %d: %+v", hand.Revision, eu)
	}
	if !strings.Contains(res.Reason, "eu-west-1") {
		t.Errorf("reason %q does not name eu-west-1", res.Reason)
	}
	after := lastRevision(t, l.helmHistory(t, "eu-west-1", app))
	if after.Revision != hand.Revision || after.Status != "deployed" {
		t.Errorf("eu-west-1's latest revision is %+v, want the hand-made %d still deployed (neither overwritten nor rolled back)", after, hand.Revision)
	}
	if v := l.deployedVersion(t, "us-east-1", app); v != v1 {
		t.Errorf("us-east-1 runs %s, want %s after the rollback", v, v1)
	}
	l.record(t, id2, "release-foreign-revision")
}

func TestUpgradeFailingAfterApplyIsRolledBack(t *testing.T) {
	l := newLab(t)
	app := l.appName(t, "ithook")
	file := l.releaseFile(t, app, noGate("2s"))
	v1, v2 := runVersion(1), runVersion(2)
	l.succeed(t, file, v1)
	failing := l.releaseFile(t, app, func(doc map[string]any) {
		noGate("2s")(doc)
		doc["values"] = map[string]any{"replicas": 1, "hooks": map[string]any{"postUpgradeFail": true}}
	})
	id := l.start(t, failing, v2)
	res := l.result(t, id, 4*time.Minute)
	if res.Phase != workflows.PhaseRolledBack {
		t.Fatalf("failing hook: want rolled-back, got %s", writeJSON(res))
	}
	canary := res.Regions[0]
	if !canary.Changed || canary.RolledBackTo == 0 {
		t.Errorf("canary: the failed upgrade changed the region and must be rolled back: %+v", canary)
	}
	hist := l.helmHistory(t, "us-east-1", app)
	last := lastRevision(t, hist)
	if last.Status != "deployed" || last.Version != v1 || last.Operation != "rollback" || last.RunID == "" {
		t.Errorf("us-east-1's latest revision %+v, want Keelson's rollback to %s", last, v1)
	}
	for _, r := range hist {
		if strings.HasPrefix(r.Status, "pending") {
			t.Errorf("revision %d left %s", r.Revision, r.Status)
		}
	}
	if v := l.deployedVersion(t, "us-east-1", app); v != v1 {
		t.Errorf("us-east-1 runs %s, want %s", v, v1)
	}
	l.record(t, id, "release-failed-upgrade")

	// A first install that fails is uninstalled, and said so.
	fresh := l.appName(t, "itinst")
	first := l.releaseFile(t, fresh, func(doc map[string]any) {
		noGate("2s")(doc)
		doc["values"] = map[string]any{"replicas": 1, "hooks": map[string]any{"postUpgradeFail": true}}
	})
	id = l.start(t, first, v1)
	res = l.result(t, id, 4*time.Minute)
	if res.Phase != workflows.PhaseRolledBack || res.Regions[0].Phase != workflows.PhaseRolledBack {
		t.Fatalf("failed first install: want rolled back (uninstalled), got %s", writeJSON(res))
	}
	last = lastRevision(t, l.helmHistory(t, "us-east-1", fresh))
	if last.Status != "uninstalled" {
		t.Errorf("failed first install: latest revision %+v, want uninstalled", last)
	}
}

func TestCancelLetsTheUpgradeFinishThenRollsBack(t *testing.T) {
	l := newLab(t)
	app := l.appName(t, "itcancel")
	file := l.releaseFile(t, app, noGate("2s"))
	v1, v2 := runVersion(1), runVersion(2)
	l.succeed(t, file, v1)
	slow := l.releaseFile(t, app, func(doc map[string]any) {
		noGate("2s")(doc)
		doc["values"] = map[string]any{"replicas": 1, "hooks": map[string]any{"preUpgradeSeconds": 8}}
	})
	id := l.start(t, slow, v2)
	child := workflows.RegionID(id, "us-east-1")
	waitUntil(t, 2*time.Minute, 100*time.Millisecond, "the canary's Helm upgrade to run", func() bool {
		return l.pendingActivity(child, "Upgrade")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	canceller, err := control.Dial(ctx, control.DialOptions{Address: l.address, Namespace: "default", Identity: "it-canceller@" + runTag, DataConverter: l.codec.dc, FailureConverter: l.codec.fc})
	if err != nil {
		t.Fatal(err)
	}
	defer canceller.Close()
	if err := canceller.CancelWorkflow(ctx, id, ""); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	res := l.result(t, id, 3*time.Minute)
	if res.Phase != workflows.PhaseAborted || !strings.Contains(res.Reason, "it-canceller@"+runTag) {
		t.Errorf("cancelled release: want aborted by it-canceller@%s, got %s: %s", runTag, res.Phase, res.Reason)
	}
	hist := l.helmHistory(t, "us-east-1", app)
	var upgraded *helm.Revision
	for i := range hist {
		if hist[i].ReleaseID == id && hist[i].Operation == "upgrade" {
			upgraded = &hist[i]
		}
	}
	if upgraded == nil || upgraded.Version != v2 || upgraded.Status != "superseded" {
		t.Errorf("the upgrade in progress at the cancel should have completed (then been superseded by the rollback): %+v in %+v", upgraded, hist)
	}
	if last := lastRevision(t, hist); last.Operation != "rollback" || last.Version != v1 || last.Status != "deployed" {
		t.Errorf("latest revision %+v, want the rollback to %s", last, v1)
	}
	for _, e := range l.history(t, child) {
		if a := e.GetActivityTaskCanceledEventAttributes(); a != nil {
			t.Errorf("an activity of the region was cancelled: %v", a)
		}
	}
	l.record(t, id, "release-cancelled")
	l.record(t, child, "region-cancelled")
}

func TestGrownPlanOpensTheGateAgain(t *testing.T) {
	l := newLab(t)
	app := l.appName(t, "itplan")
	file := l.releaseFile(t, app, nil)
	v1, v2 := runVersion(1), runVersion(2)
	l.throughGate(t, file, v1)

	id2 := l.start(t, file, v2)
	l.waitPhase(t, id2, workflows.PhaseAwaitGate, 2*time.Minute)
	// While the gate is open, eu-west-1's state changes so that a new plan
	// must replace the network, which the approved plan left alone.
	work := filepath.Join(l.dir, "work", app, "eu-west-1")
	tf := exec.Command("terraform", "-chdir="+work, "taint", "terraform_data.network")
	tf.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE="+filepath.Join(l.dir, "terraformrc"))
	if out, err := tf.CombinedOutput(); err != nil {
		t.Fatalf("terraform taint: %v\n%s", err, out)
	}
	if out, code := l.keelson(t, "approve", id2, "--user", "demo-approver"); code != 0 {
		t.Fatalf("approve: %s", out)
	}
	var st *workflows.Status
	waitUntil(t, 2*time.Minute, 300*time.Millisecond, "the gate to open again with the new plan", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := l.ctl.Status(ctx, id2)
		if err != nil {
			return false
		}
		st = s
		return s.Gate != nil && s.Gate.Note != ""
	})
	if !strings.Contains(st.Gate.Note, "terraform_data.network") {
		t.Errorf("gate note %q does not name the replaced resource", st.Gate.Note)
	}
	shown := false
	for _, p := range st.Gate.Plans {
		if p.Region == "eu-west-1" && slices.Contains(p.Destroyed, "terraform_data.network") {
			shown = true
		}
	}
	if !shown {
		t.Errorf("the reopened gate does not show eu-west-1 destroying terraform_data.network: %+v", st.Gate.Plans)
	}
	out, _ := l.keelson(t, "release", "status", id2)
	if !strings.Contains(out, "terraform_data.network") {
		t.Errorf("release status does not show the destroy:\n%s", out)
	}
	if out, code := l.keelson(t, "reject", id2, "--user", "demo-approver", "--reason", "the network must not be replaced"); code != 0 {
		t.Fatalf("reject: %s", out)
	}
	res := l.result(t, id2, 3*time.Minute)
	if res.Phase != workflows.PhaseRejected {
		t.Errorf("want rejected, got %s", writeJSON(res))
	}
	if n := len(res.Approvals); n != 2 || !res.Approvals[0].Approved || res.Approvals[1].Approved {
		t.Errorf("approvals: want the first approval then the rejection of the new plan, got %+v", res.Approvals)
	}
	l.record(t, id2, "release-plan-grew")
}

func TestRollbackOutlastsAnAPIServerOutage(t *testing.T) {
	l := newLab(t)
	app := l.appName(t, "itoutage")
	file := l.releaseFile(t, app, func(doc map[string]any) {
		noGate("2s")(doc)
		doc["health"] = []any{}
	})
	v1 := runVersion(1)
	l.succeed(t, file, v1)
	bad := l.releaseFile(t, app, func(doc map[string]any) {
		noGate("2s")(doc)
		doc["health"] = []any{}
		doc["readiness"] = map[string]any{"timeout": "15s"}
	})
	id := l.start(t, bad, runVersion(2)+"-unready")
	waitUntil(t, 2*time.Minute, 200*time.Millisecond, "the canary's readiness wait", func() bool {
		return l.pendingActivity(workflows.RegionID(id, "us-east-1"), "WaitReady")
	})
	// The API server goes away while the readiness wait runs; it fails,
	// and the rollback meets the outage.
	l.script(t, "apiserver.sh", "stop", "us-east-1")
	stopped := time.Now()
	restarted := false
	defer func() {
		if !restarted {
			l.script(t, "apiserver.sh", "start", "us-east-1")
		}
	}()
	sawRetrying := false
	for time.Since(stopped) < 90*time.Second {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if s, err := l.ctl.Status(ctx, id); err == nil && strings.HasPrefix(s.Waves[0].Regions[0].Step, "rollback retrying: ") {
			sawRetrying = true
		}
		cancel()
		time.Sleep(time.Second)
	}
	l.script(t, "apiserver.sh", "start", "us-east-1")
	restarted = true
	if !sawRetrying {
		t.Errorf("the details never showed \"rollback retrying: ERROR\" during the outage")
	}
	res := l.result(t, id, 5*time.Minute)
	if res.Phase != workflows.PhaseRolledBack || res.Regions[0].RolledBackTo == 0 {
		t.Fatalf("rollback across a 90 s outage: %s", writeJSON(res))
	}
	if v := l.deployedVersion(t, "us-east-1", app); v != v1 {
		t.Errorf("us-east-1 runs %s after the rollback, want %s", v, v1)
	}
	l.record(t, id, "release-rollback-outage")
}

func TestRollbackOfAFinishedReleaseToAVersion(t *testing.T) {
	l := newLab(t)
	app := l.appName(t, "itundo")
	file := l.releaseFile(t, app, nil)
	v1, v2 := runVersion(1), runVersion(2)
	l.throughGate(t, file, v1)
	l.throughGate(t, file, v2)
	out, code := l.keelson(t, "rollback", app, "--to", v2, "--user", "oncall")
	if code == 0 || !strings.Contains(out, "already "+v2) {
		t.Errorf("rollback to the version already released: exit %d, want a refusal\n%s", code, out)
	}
	out, code = l.keelson(t, "rollback", app, "--to", v1, "--user", "oncall", "--reason", "bad latency")
	if code != 0 {
		t.Fatalf("rollback --to: exit %d\n%s", code, out)
	}
	id := workflows.UndoID(app, v2)
	if !strings.Contains(out, "undo started: "+id) {
		t.Fatalf("rollback --to did not say which undo started:\n%s", out)
	}
	// The file's gate asks before the undo reaches the rest wave, which
	// it undoes first.
	st := l.waitPhase(t, id, workflows.PhaseAwaitGate, 2*time.Minute)
	if st.Waves[0].Regions[0].Revision != 0 && st.Waves[0].Regions[0].Phase == workflows.PhaseRolledBack {
		t.Errorf("the canary was undone before the rest wave: %+v", st.Waves[0])
	}
	if out, code := l.keelson(t, "approve", id, "--user", "demo-approver"); code != 0 {
		t.Fatalf("approve the undo: %s", out)
	}
	res := l.result(t, id, 3*time.Minute)
	if res.Phase != workflows.PhaseSucceeded {
		t.Fatalf("undo: %s", writeJSON(res))
	}
	var rest, canary time.Time
	for _, r := range res.Regions {
		if r.Phase != workflows.PhaseRolledBack || r.RolledBackTo == 0 {
			t.Errorf("%s: %+v, want rolled back", r.Region, r)
		}
		if r.Region == "us-east-1" {
			canary = r.Started
		} else if r.Started.After(rest) {
			rest = r.Started
		}
	}
	if !canary.After(rest) {
		t.Errorf("the canary (started %s) was undone before the rest wave (started %s)", canary, rest)
	}
	for _, r := range regions {
		if v := l.deployedVersion(t, r, app); v != v1 {
			t.Errorf("%s runs %s after the undo, want %s", r, v, v1)
		}
		last := lastRevision(t, l.helmHistory(t, r, app))
		if last.ReleaseID != id || last.Operation != "rollback" {
			t.Errorf("%s: latest revision %+v, want the undo's rollback", r, last)
		}
	}
	l.record(t, id, "release-undo")
}
