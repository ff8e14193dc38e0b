package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keelson-dev/keelson/control"
	"github.com/keelson-dev/keelson/workflows"
)

// TestScheduleTrainOnTheLab drives a schedule from the CLI against the lab's
// Temporal server (issue 9): a trigger starts a train that starts the
// release; a second trigger while that release runs is skipped (overlap
// skip, because the train waits for its release); describe shows the next
// run times and what each train did; a train whose version is already the
// last successful release starts nothing; delete leaves nothing behind.
func TestScheduleTrainOnTheLab(t *testing.T) {
	t.Parallel() // waits on applications of its own (see TestMain)
	l := newLab(t)
	app := l.appName(t, "itsched")
	file := l.releaseFile(t, app, noGate("10s"))
	versionFile := filepath.Join(t.TempDir(), "VERSION")
	v1 := runVersion(1)
	if err := os.WriteFile(versionFile, []byte(v1+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	name := "itsched-" + runTag

	// Paused, with its only time in 2099: nothing runs but what the test
	// triggers.
	out, code := l.keelson(t, "schedule", "create", name, "-f", file, "--cron", "0 3 1 1 * 2099",
		"--timezone", "Europe/Dublin", "--paused", "--version-from", versionFile, "--user", "sched-tester")
	if code != 0 {
		t.Fatalf("schedule create: exit %d\n%s", code, out)
	}
	t.Cleanup(func() { l.keelson(t, "schedule", "delete", name) })
	for _, want := range []string{"schedule: " + name + " (paused:", "version from: file " + versionFile, "next run: Thu 2099-01-01 03:00 UTC (Thu 03:00 GMT in Europe/Dublin)"} {
		if !strings.Contains(out, want) {
			t.Errorf("create output lacks %q:\n%s", want, out)
		}
	}
	if out, code = l.keelson(t, "schedule", "create", name, "-f", file, "--cron", "0 3 1 1 * 2099", "--version-from", versionFile); code == 0 || !strings.Contains(out, "exists already") {
		t.Errorf("second create of %s: exit %d, want a refusal:\n%s", name, code, out)
	}

	out, code = l.keelson(t, "schedule", "describe", name)
	if code != 0 {
		t.Fatalf("schedule describe: exit %d\n%s", code, out)
	}
	for _, want := range []string{"state: paused", "Thu 2099-01-01 03:00", "Europe/Dublin (schedule)", "us-east-1 (", "trains: 0 started", "last runs: none yet"} {
		if !strings.Contains(out, want) {
			t.Errorf("describe lacks %q:\n%s", want, out)
		}
	}
	if out, _ := l.keelson(t, "schedule", "list", "--app", app); !strings.Contains(out, name) || !strings.Contains(out, "paused") {
		t.Errorf("schedule list --app %s:\n%s", app, out)
	}

	// A trigger starts a train (a paused schedule still takes triggers),
	// and the train starts the release of the file's version.
	if out, code := l.keelson(t, "schedule", "trigger", name); code != 0 {
		t.Fatalf("schedule trigger: exit %d\n%s", code, out)
	}
	id1 := workflows.ReleaseID(app, v1)
	var d *control.ScheduleDetails
	waitUntil(t, time.Minute, 500*time.Millisecond, "the train to start "+id1, func() bool {
		d = l.describeSchedule(t, name)
		return len(d.Runs) == 1 && d.Runs[0].ReleaseID == id1
	})
	train1 := d.Runs[0].TrainID
	if !strings.HasPrefix(train1, workflows.TrainID(name)) || d.Runs[0].Status != "Running" {
		t.Errorf("first train: %+v", d.Runs[0])
	}

	// While that release runs, a second trigger is skipped: the train
	// waits for its release, so the schedule still sees it running.
	if out, code := l.keelson(t, "schedule", "trigger", name); code != 0 {
		t.Fatalf("second trigger: exit %d\n%s", code, out)
	}
	waitUntil(t, 30*time.Second, 500*time.Millisecond, "the second trigger to be skipped", func() bool {
		d = l.describeSchedule(t, name)
		return d.SkippedOverlap == 1
	})
	if d.Actions != 1 || len(d.Runs) != 1 || len(d.Running) != 1 || d.Running[0] != train1 {
		t.Errorf("after a skipped trigger: %d actions, runs %+v, running %v; want one train, %s", d.Actions, d.Runs, d.Running, train1)
	}
	if st, err := l.ctl.Status(t.Context(), id1); err != nil || st.Phase.Done() {
		t.Fatalf("the release must still run when the second trigger comes, or skip proves nothing: %v %+v", err, st)
	}
	out, _ = l.keelson(t, "schedule", "describe", name)
	if !strings.Contains(out, "1 skipped") || !strings.Contains(out, "running: release ") || !strings.Contains(out, id1) {
		t.Errorf("describe while the release runs:\n%s", out)
	}

	res := l.result(t, id1, 4*time.Minute)
	if res.Phase != workflows.PhaseSucceeded {
		t.Fatalf("release %s: %s", id1, writeJSON(res))
	}
	waitUntil(t, time.Minute, 500*time.Millisecond, "the train to finish with its release", func() bool {
		d = l.describeSchedule(t, name)
		return len(d.Runs) == 1 && d.Runs[0].Status == "Completed"
	})
	if r := d.Runs[0]; r.Outcome != workflows.TrainReleased || r.Phase != string(workflows.PhaseSucceeded) || r.Version != v1 {
		t.Errorf("first train after its release: %+v", r)
	}
	for _, region := range regions {
		if v := l.deployedVersion(t, region, app); v != v1 {
			t.Errorf("%s runs %s, want %s", region, v, v1)
		}
	}
	l.record(t, train1, "train-released")

	// The same version again: the train says so and starts nothing.
	if out, code := l.keelson(t, "schedule", "trigger", name); code != 0 {
		t.Fatalf("third trigger: exit %d\n%s", code, out)
	}
	waitUntil(t, time.Minute, 500*time.Millisecond, "the third train to finish", func() bool {
		d = l.describeSchedule(t, name)
		return len(d.Runs) == 2 && d.Runs[0].Status == "Completed"
	})
	if r := d.Runs[0]; r.Outcome != workflows.TrainUpToDate || r.ReleaseID != "" || !strings.Contains(r.Message, "already the last successful release") {
		t.Errorf("train of a version already released: %+v", r)
	}
	list, err := l.ctl.List(t.Context(), control.ListQuery{Application: app})
	if err != nil || len(list) != 1 {
		t.Errorf("releases of %s: %v %+v; want only %s", app, err, list, id1)
	}
	l.record(t, d.Runs[0].TrainID, "train-up-to-date")

	// A version source that fails fails the train, clearly.
	if err := os.Remove(versionFile); err != nil {
		t.Fatal(err)
	}
	if out, code := l.keelson(t, "schedule", "trigger", name); code != 0 {
		t.Fatalf("fourth trigger: exit %d\n%s", code, out)
	}
	waitUntil(t, 2*time.Minute, time.Second, "the train without a version file to fail", func() bool {
		d = l.describeSchedule(t, name)
		return len(d.Runs) == 3 && d.Runs[0].Status == "Failed"
	})
	if msg := d.Runs[0].Message; !strings.Contains(msg, "cannot resolve the version of "+app) || !strings.Contains(msg, "no such file or directory") {
		t.Errorf("failed train's message: %q", msg)
	}
	l.record(t, d.Runs[0].TrainID, "train-version-failed")

	if out, code := l.keelson(t, "schedule", "delete", name); code != 0 {
		t.Fatalf("schedule delete: exit %d\n%s", code, out)
	}
	if out, code := l.keelson(t, "schedule", "describe", name); code != 1 || !strings.Contains(out, "not found") {
		t.Errorf("describe after delete: exit %d\n%s", code, out)
	}
}

// describeSchedule is `keelson schedule describe NAME -o json`.
func (l *lab) describeSchedule(t *testing.T, name string) *control.ScheduleDetails {
	t.Helper()
	out, code := l.keelson(t, "schedule", "describe", name, "-o", "json")
	if code != 0 {
		t.Fatalf("schedule describe %s: exit %d\n%s", name, code, out)
	}
	var d control.ScheduleDetails
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("schedule describe -o json: %v\n%s", err, out)
	}
	return &d
}

// TestScheduleFiresDuringAFreeze: a train that starts while the
// stop-the-line switch holds its application starts a release that waits,
// held before its first wave with who froze it and why; the train waits with
// it, so the schedule skips the trains due meanwhile; when the freeze is
// lifted the release goes on and the train ends with its outcome.
func TestScheduleFiresDuringAFreeze(t *testing.T) {
	l := newLab(t)
	app := l.appName(t, "itschedfrz")
	file := l.releaseFile(t, app, func(doc map[string]any) {
		delete(doc, "terraform")
		noGate("2s")(doc)
	})
	versionFile := filepath.Join(t.TempDir(), "VERSION")
	v1 := runVersion(1)
	if err := os.WriteFile(versionFile, []byte(v1+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	name := "itschedfrz-" + runTag
	if out, code := l.keelson(t, "schedule", "create", name, "-f", file, "--cron", "0 3 1 1 * 2099", "--paused", "--version-from", versionFile); code != 0 {
		t.Fatalf("schedule create: exit %d\n%s", code, out)
	}
	t.Cleanup(func() { l.keelson(t, "schedule", "delete", name) })
	t.Cleanup(func() { l.keelson(t, "unfreeze", "--app", app, "--user", "cleanup") })
	if out, code := l.keelson(t, "freeze", "--app", app, "--reason", "incident 4712", "--user", "sre-lead"); code != 0 {
		t.Fatalf("freeze --app %s: exit %d\n%s", app, code, out)
	}

	if out, code := l.keelson(t, "schedule", "trigger", name); code != 0 {
		t.Fatalf("schedule trigger: exit %d\n%s", code, out)
	}
	id := workflows.ReleaseID(app, v1)
	st := l.waitPhase(t, id, workflows.PhaseHeld, 2*time.Minute)
	if st.Hold == nil || st.Hold.Kind != workflows.HoldFreeze || st.Hold.By != "sre-lead" || st.Hold.Reason != "incident 4712" {
		t.Errorf("the train's release is held without the freeze's who and why: %s", writeJSON(st))
	}
	if out, code := l.keelson(t, "schedule", "trigger", name); code != 0 {
		t.Fatalf("second trigger: exit %d\n%s", code, out)
	}
	var d *control.ScheduleDetails
	waitUntil(t, 30*time.Second, 500*time.Millisecond, "the trigger during the freeze to be skipped", func() bool {
		d = l.describeSchedule(t, name)
		return d.SkippedOverlap == 1
	})
	if len(d.Runs) != 1 || d.Runs[0].ReleaseID != id || d.Runs[0].Phase != string(workflows.PhaseHeld) {
		t.Errorf("describe during the freeze: %+v, want one train whose release %s is held", d.Runs, id)
	}

	if out, code := l.keelson(t, "unfreeze", "--app", app, "--user", "sre-lead"); code != 0 {
		t.Fatalf("unfreeze: exit %d\n%s", code, out)
	}
	if res := l.result(t, id, 4*time.Minute); res.Phase != workflows.PhaseSucceeded {
		t.Fatalf("release %s after the freeze: %s", id, writeJSON(res))
	}
	waitUntil(t, time.Minute, 500*time.Millisecond, "the train to finish with its release", func() bool {
		d = l.describeSchedule(t, name)
		return len(d.Runs) == 1 && d.Runs[0].Status == "Completed"
	})
	if r := d.Runs[0]; r.Outcome != workflows.TrainReleased || r.Phase != string(workflows.PhaseSucceeded) {
		t.Errorf("train after the freeze: %+v", r)
	}
}
