package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/keelson-dev/keelson/workflows"
)

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

func sampleStatus() *workflows.Status {
	return &workflows.Status{
		Application: "demo",
		Version:     "1.2.0",
		Phase:       workflows.PhaseAwaitGate,
		Message:     "waiting for approval of wave rest",
		Started:     t0,
		Waves: []workflows.WaveStatus{
			{Name: "canary", Phase: workflows.PhaseSucceeded, Regions: []workflows.RegionStatus{
				{Region: "us-east-1", Phase: workflows.PhaseSucceeded, Step: "done", PreviousRevision: 3, Revision: 4, Health: "ok", Duration: 62 * time.Second},
			}},
			{Name: "rest", Phase: workflows.PhasePending, Regions: []workflows.RegionStatus{
				{Region: "eu-west-1", Phase: workflows.PhasePending},
				{Region: "ap-south-1", Phase: workflows.PhasePending, PreviousRevision: 7},
			}},
		},
		Gate: &workflows.GateStatus{
			Name: "promote-to-rest", Wave: "rest", Regions: []string{"eu-west-1", "ap-south-1"},
			Approvers: []string{"alice"}, Groups: []string{"sre"}, Deadline: t0.Add(30 * time.Minute),
		},
	}
}

func sampleResult() *workflows.ReleaseResult {
	return &workflows.ReleaseResult{
		ReleaseID: "release-demo-1.2.0", Application: "demo", Version: "1.2.0",
		Phase: workflows.PhaseRolledBack, Reason: "eu-west-1: health check api failed 3 times",
		Started: t0, Finished: t0.Add(4*time.Minute + 12*time.Second),
		Regions: []workflows.RegionResult{
			{Region: "us-east-1", Wave: "canary", Phase: workflows.PhaseRolledBack, PreviousRevision: 3, Revision: 4, RolledBackTo: 5, Changed: true, Duration: 95 * time.Second, Terraform: "+1 ~0 -0"},
			{Region: "eu-west-1", Wave: "rest", Phase: workflows.PhaseFailed, PreviousRevision: 7, Revision: 8, RolledBackTo: 9, Changed: true, Duration: 2 * time.Minute, Error: "health check api failed 3 times"},
			{Region: "ap-south-1", Wave: "rest", Phase: workflows.PhaseSucceeded, PreviousRevision: 2, Revision: 2, Duration: 1500 * time.Millisecond},
		},
		Approvals: []workflows.Approval{
			{Gate: "promote-to-rest", Approved: true, User: "alice", Via: "slack", At: t0.Add(3 * time.Minute), Reason: "canary looks fine"},
		},
	}
}

func TestRenderStatusGolden(t *testing.T) {
	var b bytes.Buffer
	renderStatus(&b, "release-demo-1.2.0", sampleStatus(), t0.Add(12*time.Minute), time.UTC, false)
	want := `release  release-demo-1.2.0
app      demo 1.2.0
phase    awaiting-approval
started  2026-11-21 10:00:00 UTC (12m0s ago)
message  waiting for approval of wave rest
gate     promote-to-rest for wave rest (eu-west-1, ap-south-1); approvers alice, group sre; deadline 2026-11-21 10:30:00 UTC

WAVE    REGION      PHASE      STEP  REVISION  HEALTH  DURATION  ERROR
canary  us-east-1   succeeded  done  3 -> 4    ok      1m2s      -
rest    eu-west-1   pending    -     -         -       -         -
rest    ap-south-1  pending    -     7 -> -    -       -         -
`
	if got := b.String(); got != want {
		t.Errorf("status rendering\n got:\n%s\nwant:\n%s", got, want)
	}
}

func TestRenderResultGolden(t *testing.T) {
	var b bytes.Buffer
	renderResult(&b, sampleResult(), time.UTC, false)
	want := `result    rolled-back in 4m12s
release   release-demo-1.2.0 (demo 1.2.0)
reason    eu-west-1: health check api failed 3 times
finished  2026-11-21 10:04:12 UTC

REGION      WAVE    OUTCOME      REVISION            ROLLED BACK TO  TERRAFORM  DURATION  ERROR
us-east-1   canary  rolled-back  3 -> 4              5               +1 ~0 -0   1m35s     -
eu-west-1   rest    failed       7 -> 8              9               -          2m0s      health check api failed 3 times
ap-south-1  rest    succeeded    2 -> 2 (unchanged)  -               -          2s        -

answers
  promote-to-rest: approved by alice via slack at 2026-11-21 10:03:00 UTC: canary looks fine
`
	if got := b.String(); got != want {
		t.Errorf("result rendering\n got:\n%s\nwant:\n%s", got, want)
	}
}

func TestRenderColorOnlyOnTerminal(t *testing.T) {
	var plain, colored bytes.Buffer
	renderResult(&plain, sampleResult(), time.UTC, false)
	renderResult(&colored, sampleResult(), time.UTC, true)
	if strings.Contains(plain.String(), "\x1b[") {
		t.Error("escape codes without a terminal")
	}
	if !strings.Contains(colored.String(), "\x1b[31mrolled-back\x1b[0m") {
		t.Errorf("no colour on a terminal:\n%q", colored.String())
	}
}

func TestWatcherPrintsChangesOnly(t *testing.T) {
	var b bytes.Buffer
	clock := t0
	w := &watcher{out: &b, now: func() time.Time { return clock }, loc: time.UTC, releaseID: "release-demo-1.2.0"}

	st := sampleStatus()
	st.Gate = nil
	st.Phase, st.Message = workflows.PhaseDeploying, ""
	w.update(st)
	clock = clock.Add(time.Second)
	w.update(st) // nothing changed: nothing printed

	clock = clock.Add(time.Second)
	st2 := sampleStatus()
	w.update(st2)

	clock = clock.Add(time.Second)
	st3 := sampleStatus()
	st3.Gate = nil
	st3.Phase, st3.Message = workflows.PhaseDeploying, ""
	st3.Approvals = []workflows.Approval{{Gate: "promote-to-rest", Approved: true, User: "alice", Via: "cli", At: clock}}
	st3.Waves[1].Regions[0] = workflows.RegionStatus{Region: "eu-west-1", Phase: workflows.PhaseDeploying, Step: "helm-upgrade", PreviousRevision: 7}
	w.update(st3)

	want := `10:00:00 watching release-demo-1.2.0 (demo 1.2.0)
10:00:00 release deploying
10:00:00 us-east-1 [canary] succeeded step=done revision 3 -> 4 health=ok
10:00:00 eu-west-1 [rest] pending
10:00:00 ap-south-1 [rest] pending revision 7 -> -
10:00:02 release awaiting-approval: waiting for approval of wave rest
10:00:02 gate promote-to-rest for wave rest (eu-west-1, ap-south-1); approvers alice, group sre; deadline 2026-11-21 10:30:00 UTC
10:00:02 gate promote-to-rest: answer with ` + "`keelson approve release-demo-1.2.0 --gate promote-to-rest` or `keelson reject release-demo-1.2.0 --gate promote-to-rest --reason ...`" + `
10:00:03 release deploying
10:00:03 eu-west-1 [rest] deploying step=helm-upgrade revision 7 -> -
10:00:03 gate promote-to-rest: approved by alice via cli at 2026-11-21 10:00:03 UTC
`
	if got := b.String(); got != want {
		t.Errorf("watch output\n got:\n%s\nwant:\n%s", got, want)
	}
}

func TestLongErrorsAreCutInTablesOnly(t *testing.T) {
	res := sampleResult()
	long := strings.Repeat("x", 300)
	res.Reason, res.Regions[1].Error = long, long
	var b bytes.Buffer
	renderResult(&b, res, time.UTC, false)
	if !strings.Contains(b.String(), "reason    "+long+"\n") {
		t.Error("reason line was cut")
	}
	if !strings.Contains(b.String(), strings.Repeat("x", maxCell-3)+"...\n") || strings.Count(b.String(), long) != 1 {
		t.Errorf("table cell not cut to %d characters:\n%s", maxCell, b.String())
	}
}
