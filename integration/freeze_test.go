package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/keelson-dev/keelson/workflows"
)

// TestStopTheLineHoldsReleasesOfTwoApplications: two releases of different
// applications are running when a person freezes both applications; each
// finishes the step under way and holds before its next wave, a release of
// a third frozen application waits before its first, and all three go on
// when the freezes are lifted.
func TestStopTheLineHoldsReleasesOfTwoApplications(t *testing.T) {
	t.Parallel() // waits on applications of its own (see TestMain)
	l := newLab(t)
	var apps, files, ids []string
	for _, prefix := range []string{"stopa", "stopb", "stopc"} {
		app := l.appName(t, prefix)
		apps = append(apps, app)
		files = append(files, l.releaseFile(t, app, func(doc map[string]any) {
			delete(doc, "terraform")
			noGate("2s")(doc)
			wave(doc, "canary")["bake"] = "30s"
		}))
	}
	t.Cleanup(func() {
		for _, app := range apps {
			l.keelson(t, "unfreeze", "--app", app, "--user", "cleanup")
		}
	})
	for i := range 2 {
		ids = append(ids, l.start(t, files[i], "1.0.0"))
	}
	for _, id := range ids {
		waitUntil(t, 2*time.Minute, 300*time.Millisecond, id+" baking its first wave", func() bool {
			st, err := l.ctl.Status(t.Context(), id)
			return err == nil && st.Waves[0].Regions[0].Phase == workflows.PhaseBaking
		})
	}
	for _, app := range apps {
		if out, code := l.keelson(t, "freeze", "--app", app, "--reason", "incident 4711", "--user", "sre-lead"); code != 0 {
			t.Fatalf("freeze --app %s: exit %d\n%s", app, code, out)
		}
	}
	out, _ := l.keelson(t, "freezes")
	for _, app := range apps {
		if !strings.Contains(out, app) || !strings.Contains(out, "frozen by sre-lead") {
			t.Errorf("keelson freezes does not show %s:\n%s", app, out)
		}
	}
	ids = append(ids, l.start(t, files[2], "1.0.0"))

	// Each holds: the first two before their second wave, the third before
	// its first; nothing of the held waves has started.
	for i, id := range ids {
		st := l.waitPhase(t, id, workflows.PhaseHeld, 2*time.Minute)
		if st.Hold == nil || st.Hold.Kind != workflows.HoldFreeze || st.Hold.By != "sre-lead" || st.Hold.Reason != "incident 4711" {
			t.Errorf("%s held without the freeze's who and why: %s", id, writeJSON(st))
		}
		if !strings.Contains(st.Message, apps[i]+" frozen by sre-lead") {
			t.Errorf("%s message %q", id, st.Message)
		}
	}
	time.Sleep(5 * time.Second)
	for i, id := range ids {
		st, err := l.ctl.Status(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		want := 1 // the first wave finished, the second waits
		if i == 2 {
			want = 0
		}
		if st.Phase != workflows.PhaseHeld {
			t.Errorf("%s is %s after 5 s more, want still held", id, st.Phase)
		}
		if i < 2 && st.Waves[0].Phase != workflows.PhaseSucceeded {
			t.Errorf("%s: the first wave did not finish its step before holding: %s", id, st.Waves[0].Phase)
		}
		started := 0
		for _, w := range st.Waves {
			for _, r := range w.Regions {
				if r.Phase != workflows.PhasePending {
					started++
				}
			}
		}
		if started != want {
			t.Errorf("%s: %d regions started while held, want %d: %s", id, started, want, writeJSON(st))
		}
	}
	if out, code := l.keelson(t, "release", "status", ids[0]); code != 0 || !strings.Contains(out, "held") || !strings.Contains(out, "by sre-lead") {
		t.Errorf("keelson release status does not say who holds it:\n%s", out)
	}

	for _, app := range apps {
		if out, code := l.keelson(t, "unfreeze", "--app", app, "--user", "sre-lead"); code != 0 {
			t.Fatalf("unfreeze --app %s: exit %d\n%s", app, code, out)
		}
	}
	for _, id := range ids {
		if res := l.result(t, id, 3*time.Minute); res.Phase != workflows.PhaseSucceeded {
			t.Errorf("%s after the freeze: %s", id, writeJSON(res))
		}
	}
	l.record(t, ids[0], "release-frozen-mid-release")
	l.record(t, ids[2], "release-frozen-before-start")
}

// TestDeployWindowHoldsUntilAnApproverOverrides: a release whose file
// freezes its regions now waits before its first wave, held, with the
// freeze's reason and end; a person who is not an approver cannot send it
// outside its windows, an approver can, and the override is recorded.
func TestDeployWindowHoldsUntilAnApproverOverrides(t *testing.T) {
	l := newLab(t)
	app := l.appName(t, "window")
	now := time.Now().UTC()
	file := l.releaseFile(t, app, func(doc map[string]any) {
		delete(doc, "terraform")
		doc["freezes"] = []any{map[string]any{
			"from": now.Add(-time.Hour).Format(time.RFC3339), "to": now.Add(2 * time.Hour).Format(time.RFC3339), "reason": "launch week",
		}}
	})
	id := l.start(t, file, "1.0.0")
	st := l.waitPhase(t, id, workflows.PhaseHeld, 2*time.Minute)
	if st.Hold == nil || st.Hold.Kind != workflows.HoldWindow || !strings.Contains(st.Hold.Reason, "freeze: launch week") || st.Hold.Until.IsZero() {
		t.Errorf("held without the freeze's reason and end: %s", writeJSON(st))
	}
	for _, w := range st.Waves {
		for _, r := range w.Regions {
			if r.Phase != workflows.PhasePending {
				t.Errorf("%s started while its window was closed: %s", r.Region, r.Phase)
			}
		}
	}
	if out, code := l.keelson(t, "release", "override-window", id, "--reason", "hurry", "--user", "mallory"); code == 0 || !strings.Contains(out, "not an approver") {
		t.Errorf("override by a non-approver: exit %d\n%s", code, out)
	}
	if out, code := l.keelson(t, "release", "override-window", id, "--reason", "security fix", "--user", "demo-approver"); code != 0 {
		t.Fatalf("override by an approver: exit %d\n%s", code, out)
	}
	l.waitPhase(t, id, workflows.PhaseAwaitGate, 2*time.Minute)
	if out, code := l.keelson(t, "approve", id, "--user", "demo-approver"); code != 0 {
		t.Fatalf("approve: %s", out)
	}
	res := l.result(t, id, 3*time.Minute)
	if res.Phase != workflows.PhaseSucceeded || len(res.Approvals) == 0 || res.Approvals[0].Gate != workflows.UpdateOverrideWindow || res.Approvals[0].User != "demo-approver" {
		t.Errorf("release after the override: %s", writeJSON(res))
	}
	l.record(t, id, "release-window-overridden")
	l.record(t, workflows.FreezeID, "freeze-switch")
}
