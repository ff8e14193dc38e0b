package dora

import (
	"encoding/json"
	"testing"
	"time"
)

// at is a time in November 2026, UTC: at(2, 10, 20) is 2 Nov 10:20.
func at(day, hour, minute int) time.Time {
	return time.Date(2026, 11, day, hour, minute, 0, 0, time.UTC)
}

// history is ten days of releases of shop (and one of cart), with every
// case the definitions distinguish. The expected figures in the tests
// below were worked out by hand from it, as the comments show.
func history() []Release {
	rel := func(id, phase string, changed bool, start, end, commit time.Time) Release {
		return Release{Application: "shop", ReleaseID: id, RunID: id + "-run", Version: id, Phase: phase,
			Started: start, Finished: end, CommitTime: commit, Changed: changed}
	}
	var none time.Time
	undo := rel("rollback-shop-r4", PhaseSucceeded, true, at(4, 12, 0), at(4, 12, 10), none)
	undo.Undo, undo.UndoesReleaseID, undo.UndoesRunID = true, "r4", "r4-run"
	cart := rel("c1", PhaseSucceeded, true, at(3, 9, 0), at(3, 9, 20), at(3, 7, 20))
	cart.Application = "cart"
	return []Release{
		// Before the period: left out.
		rel("r0", PhaseFailed, true, at(1, 0, 0).Add(-2*time.Hour), at(1, 0, 0).Add(-time.Hour), none),
		// Lead 1h30m.
		rel("r1", PhaseSucceeded, true, at(1, 9, 0), at(1, 9, 30), at(1, 8, 0)),
		// Failed (rolled back); no lead time, it never ran in production.
		rel("r2", PhaseRolledBack, true, at(2, 10, 0), at(2, 10, 20), at(2, 7, 0)),
		// Lead 50m; recovers r2 in 1h20m; rework (started after r2 ended).
		rel("r3", PhaseSucceeded, true, at(2, 11, 0), at(2, 11, 40), at(2, 10, 50)),
		// Lead 24h30m; failed, because it was undone.
		rel("r4", PhaseSucceeded, true, at(4, 9, 0), at(4, 9, 30), at(3, 9, 0)),
		// The undo: rework; recovers r4 in 2h40m.
		undo,
		// Rejected at the first gate: changed nothing, not a deployment.
		rel("r5", PhaseRejected, false, at(5, 9, 0), at(5, 9, 5), at(5, 8, 0)),
		// Failed.
		rel("r6", PhaseFailed, true, at(6, 9, 0), at(6, 9, 15), at(6, 8, 0)),
		// Aborted after changing a region: failed, and rework (r6 not
		// recovered yet).
		rel("r7", PhaseAborted, true, at(6, 10, 0), at(6, 10, 30), at(6, 9, 40)),
		// Lead 1h; recovers r6 (2h30m) and r7 (1h15m); rework.
		rel("r8", PhaseSucceeded, true, at(6, 11, 0), at(6, 11, 45), at(6, 10, 45)),
		// Failed, and nothing recovers it in the period.
		rel("r9", PhaseRolledBack, true, at(9, 9, 0), at(9, 9, 20), none),
		// Succeeded without changing anything (the version was there
		// already): not a deployment, so not r9's recovery.
		rel("r10", PhaseSucceeded, false, at(9, 9, 30), at(9, 10, 0), at(9, 9, 0)),
		// After the period: left out.
		rel("r11", PhaseSucceeded, true, at(11, 0, 0), at(11, 0, 1), none),
		// Another application, lead 2h.
		cart,
	}
}

var period = Period{Since: at(1, 0, 0), Until: at(11, 0, 0)}

func seconds(d time.Duration) *float64 { s := d.Seconds(); return &s }

func ratio(a, b int) *float64 { v := float64(a) / float64(b); return &v }

func TestComputeOneApplication(t *testing.T) {
	got := Compute(history(), period, "shop")
	want := Report{
		Application: "shop", Period: period, Days: 10,
		// r1..r10 and the undo.
		Releases: 11,
		// All but r5 and r10.
		Deployments: 9, Undos: 1,
		// 9 in 10 days: at least once a week, less than once a day.
		DeploymentFrequency: Frequency{Deployments: 9, PerDay: 0.9, PerWeek: 6.3, Level: LevelHigh},
		// 50m, 1h, 1h30m, 24h30m: the mean of the middle two is 1h15m.
		ChangeLeadTime: DurationFigure{Samples: 4, MedianSeconds: seconds(75 * time.Minute), Level: LevelElite},
		// r2, r4, r6, r7, r9 of 9.
		ChangeFailRate: Rate{Count: 5, Of: 9, Value: ratio(5, 9), Level: LevelLow},
		// 1h15m, 1h20m, 2h30m, 2h40m: (1h20m + 2h30m) / 2 = 1h55m; r9 open.
		FailedDeploymentRecoveryTime: Recovery{
			DurationFigure: DurationFigure{Samples: 4, MedianSeconds: seconds(115 * time.Minute), Level: LevelHigh},
			Unrecovered:    1,
		},
		// r3, the undo, r7, r8 of 9; no published level.
		DeploymentReworkRate: Rate{Count: 4, Of: 9, Value: ratio(4, 9), Level: LevelNone},
		Tiers:                Tiers2024.Name,
	}
	assertReport(t, got, want)
}

func TestComputeAllApplications(t *testing.T) {
	got := Compute(history(), period, "")
	// shop's, plus cart's one deployment (lead 2h).
	want := Report{
		Period: period, Days: 10, Releases: 12, Deployments: 10, Undos: 1,
		DeploymentFrequency: Frequency{Deployments: 10, PerDay: 1, PerWeek: 7, Level: LevelElite},
		// 50m, 1h, 1h30m, 2h, 24h30m.
		ChangeLeadTime: DurationFigure{Samples: 5, MedianSeconds: seconds(90 * time.Minute), Level: LevelElite},
		ChangeFailRate: Rate{Count: 5, Of: 10, Value: ratio(5, 10), Level: LevelLow},
		FailedDeploymentRecoveryTime: Recovery{
			DurationFigure: DurationFigure{Samples: 4, MedianSeconds: seconds(115 * time.Minute), Level: LevelHigh},
			Unrecovered:    1,
		},
		DeploymentReworkRate: Rate{Count: 4, Of: 10, Value: ratio(4, 10)},
		Tiers:                Tiers2024.Name,
	}
	assertReport(t, got, want)
}

func TestRecoveryIsPerApplication(t *testing.T) {
	// cart's success right after shop's failure recovers nothing of shop.
	recs := []Release{
		{Application: "shop", ReleaseID: "s1", Phase: PhaseFailed, Changed: true, Started: at(2, 9, 0), Finished: at(2, 9, 10)},
		{Application: "cart", ReleaseID: "c1", Phase: PhaseSucceeded, Changed: true, Started: at(2, 9, 20), Finished: at(2, 9, 30)},
		{Application: "shop", ReleaseID: "s2", Phase: PhaseSucceeded, Changed: true, Started: at(2, 10, 0), Finished: at(2, 11, 10)},
	}
	cs := Classify(recs, period, "")
	if cs[0].RecoveredBy != "s2" || cs[0].Recovery != 2*time.Hour {
		t.Errorf("s1 recovered by %q in %s, want s2 in 2h", cs[0].RecoveredBy, cs[0].Recovery)
	}
	if cs[1].Rework || !cs[2].Rework || !cs[2].Fixes {
		t.Errorf("rework: c1 %v s2 %v (fixes %v), want false, true (true)", cs[1].Rework, cs[2].Rework, cs[2].Fixes)
	}
}

func TestQueuedBeforeTheFailureIsNotRework(t *testing.T) {
	// s2 was started (queued in the lane) before s1 failed: it was planned,
	// though it ran after, and it is what recovered s1.
	recs := []Release{
		{Application: "shop", ReleaseID: "s1", Phase: PhaseRolledBack, Changed: true, Started: at(2, 9, 0), Finished: at(2, 9, 30)},
		{Application: "shop", ReleaseID: "s2", Phase: PhaseSucceeded, Changed: true, Started: at(2, 9, 5), Finished: at(2, 10, 0)},
	}
	rep := Compute(recs, period, "shop")
	if rep.DeploymentReworkRate.Count != 0 || rep.FailedDeploymentRecoveryTime.Samples != 1 {
		t.Errorf("rework %d recoveries %d, want 0 and 1", rep.DeploymentReworkRate.Count, rep.FailedDeploymentRecoveryTime.Samples)
	}
}

func TestEmptyPeriodHasNoLevels(t *testing.T) {
	rep := Compute(nil, period, "shop")
	if rep.Deployments != 0 || rep.DeploymentFrequency.Level != LevelLow || rep.ChangeFailRate.Value != nil ||
		rep.ChangeLeadTime.MedianSeconds != nil || rep.FailedDeploymentRecoveryTime.Level != LevelNone {
		t.Errorf("%+v", rep)
	}
	// null, not 0, in JSON: "no data" must not read as "never fails".
	b, _ := json.Marshal(rep)
	var m map[string]map[string]any
	_ = json.Unmarshal(b, &m)
	if v, ok := m["changeFailRate"]["value"]; !ok || v != nil {
		t.Errorf("changeFailRate.value = %v (present %v), want null", v, ok)
	}
}

func TestByApplication(t *testing.T) {
	reps := ByApplication(history(), period)
	if len(reps) != 2 || reps[0].Application != "cart" || reps[1].Application != "shop" {
		t.Fatalf("applications %+v", reps)
	}
	if reps[0].Deployments != 1 || reps[1].Deployments != 9 {
		t.Errorf("deployments cart %d shop %d", reps[0].Deployments, reps[1].Deployments)
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []time.Duration
		want time.Duration
		ok   bool
	}{
		{nil, 0, false},
		{[]time.Duration{3}, 3, true},
		{[]time.Duration{5, 1, 3}, 3, true},
		{[]time.Duration{4, 1, 3, 2}, 2, true}, // (2+3)/2, rounded down
		{[]time.Duration{time.Hour, 2 * time.Hour}, 90 * time.Minute, true},
	} {
		got, ok := Median(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Median(%v) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestLevels(t *testing.T) {
	tr := Tiers2024
	for _, tc := range []struct {
		name string
		got  Level
		want Level
	}{
		{"2 a day", tr.FrequencyLevel(2), LevelElite},
		{"1 a day", tr.FrequencyLevel(1), LevelElite},
		{"3 a week", tr.FrequencyLevel(3.0 / 7), LevelHigh},
		{"1 a week", tr.FrequencyLevel(1.0 / 7), LevelHigh},
		{"2 a month", tr.FrequencyLevel(2.0 / 30), LevelMedium},
		{"1 a quarter", tr.FrequencyLevel(1.0 / 90), LevelLow},
		{"lead 3h", tr.LeadTimeLevel(3 * time.Hour), LevelElite},
		{"lead 1d", tr.LeadTimeLevel(day), LevelHigh},
		{"lead 10d", tr.LeadTimeLevel(10 * day), LevelMedium},
		{"lead 40d", tr.LeadTimeLevel(40 * day), LevelLow},
		{"fail 5%", tr.FailRateLevel(0.05), LevelElite},
		{"fail 8%", tr.FailRateLevel(0.08), LevelHigh}, // meets high's 20% (and medium's 10%)
		{"fail 20%", tr.FailRateLevel(0.20), LevelHigh},
		{"fail 30%", tr.FailRateLevel(0.30), LevelLow},
		{"recovery 59m", tr.RecoveryLevel(59 * time.Minute), LevelElite},
		{"recovery 5h", tr.RecoveryLevel(5 * time.Hour), LevelHigh},
		{"recovery 3d", tr.RecoveryLevel(3 * day), LevelLow},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, tc.got, tc.want)
		}
	}
}

func TestParseWindow(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"30d": 30 * day, "2w": 14 * day, "12h": 12 * time.Hour, "90m": 90 * time.Minute, "1.5d": 36 * time.Hour,
	} {
		if got, err := ParseWindow(in); err != nil || got != want {
			t.Errorf("ParseWindow(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "0d", "-1w", "30", "thirty days", "0s", "-5h"} {
		if _, err := ParseWindow(in); err == nil {
			t.Errorf("ParseWindow(%q): no error", in)
		}
	}
}

func assertReport(t *testing.T, got, want Report) {
	t.Helper()
	g, _ := json.MarshalIndent(got, "", "  ")
	w, _ := json.MarshalIndent(want, "", "  ")
	if string(g) != string(w) {
		t.Errorf("report\n got: %s\nwant: %s", g, w)
	}
}
