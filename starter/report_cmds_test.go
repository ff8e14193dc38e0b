package main

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keelson-dev/keelson/control"
	"github.com/keelson-dev/keelson/dora"
)

// doraFake returns three releases of demo on the day before the fake's
// now (2026-11-21 10:12 UTC), and one from before the default period.
func doraFake() *fake {
	day := func(d, h, m int) time.Time { return time.Date(2026, 11, d, h, m, 0, 0, time.UTC) }
	rec := func(id, phase string, start, end, commit time.Time) dora.Release {
		return dora.Release{Application: "demo", ReleaseID: id, RunID: id, Version: id, Phase: phase, Started: start, Finished: end, CommitTime: commit, Changed: true}
	}
	return &fake{dora: control.DoraData{Skipped: 1, Releases: []dora.Release{
		rec("a0", dora.PhaseSucceeded, time.Date(2026, 10, 1, 9, 0, 0, 0, time.UTC), time.Date(2026, 10, 1, 9, 30, 0, 0, time.UTC), time.Time{}),
		rec("a1", dora.PhaseSucceeded, day(20, 9, 0), day(20, 9, 30), day(20, 8, 0)),
		rec("a2", dora.PhaseRolledBack, day(20, 10, 0), day(20, 10, 20), day(20, 9, 50)),
		rec("a3", dora.PhaseSucceeded, day(20, 11, 0), day(20, 11, 40), day(20, 11, 0)),
	}}}
}

func TestReportDoraJSON(t *testing.T) {
	f := doraFake()
	r := runWith(t, f, nil, "report", "dora", "--app", "demo", "--format", "json")
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	now := time.Date(2026, 11, 21, 10, 12, 0, 0, time.UTC)
	if f.doraQuery.Application != "demo" || !f.doraQuery.Since.Equal(now.Add(-30*24*time.Hour)) {
		t.Errorf("query %+v, want demo since 30 days before now", f.doraQuery)
	}
	var rep dora.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, r.stdout)
	}
	// a0 ended before the period. a1 (lead 1h30m), a2 (rolled back), a3
	// (lead 40m, recovers a2 in 1h20m, rework): 3 deployments in 30 days.
	lead, _ := rep.ChangeLeadTime.Median()
	rec, _ := rep.FailedDeploymentRecoveryTime.Median()
	if rep.Releases != 3 || rep.Skipped != 1 || rep.Deployments != 3 ||
		rep.DeploymentFrequency.PerDay != 0.1 || rep.DeploymentFrequency.Level != dora.LevelMedium ||
		lead != 65*time.Minute || rep.ChangeLeadTime.Level != dora.LevelElite ||
		rep.ChangeFailRate.Count != 1 || rep.ChangeFailRate.Of != 3 || rep.ChangeFailRate.Level != dora.LevelLow ||
		rec != 80*time.Minute || rep.FailedDeploymentRecoveryTime.Level != dora.LevelHigh ||
		rep.DeploymentReworkRate.Count != 1 || rep.DeploymentReworkRate.Level != dora.LevelNone {
		t.Errorf("report:\n%s", r.stdout)
	}
}

func TestReportDoraTable(t *testing.T) {
	r := runWith(t, doraFake(), nil, "report", "dora", "--app", "demo")
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{
		"DORA figures: demo, 2026-10-22 10:12 UTC to 2026-11-21 10:12 UTC (30 days)",
		"releases: 3 finished, 3 deployments; 1 ended without a result",
		"levels: DORA 2024",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("no %q in:\n%s", want, r.stdout)
		}
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(r.stdout, "\n") {
		if cells := strings.Split(line, "  "); len(cells) > 1 {
			var kept []string
			for _, c := range cells {
				if c = strings.TrimSpace(c); c != "" {
					kept = append(kept, c)
				}
			}
			rows[kept[0]] = kept[1:]
		}
	}
	for metric, want := range map[string][]string{
		"deployment frequency":            {"0.1 a day (0.7 a week)", "3 deployments", "medium"},
		"change lead time":                {"1h05m (median)", "2 successful deployments with a commit time", "elite"},
		"change fail rate":                {"33.33% (1 of 3)", "3 deployments", "low"},
		"failed deployment recovery time": {"1h20m (median)", "1 recovered", "high"},
		"deployment rework rate":          {"33.33% (1 of 3)", "3 deployments", "-"},
	} {
		if got := strings.Join(rows[metric], " | "); got != strings.Join(want, " | ") {
			t.Errorf("%s: %q, want %q", metric, got, strings.Join(want, " | "))
		}
	}
}

func TestReportDoraCSV(t *testing.T) {
	r := runWith(t, doraFake(), nil, "report", "dora", "--app", "demo", "--format", "csv", "--since", "2w")
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	recs, err := csv.NewReader(strings.NewReader(r.stdout)).ReadAll()
	if err != nil || len(recs) != 6 {
		t.Fatalf("%d records, %v:\n%s", len(recs), err, r.stdout)
	}
	got := map[string][]string{}
	for _, rec := range recs[1:] {
		got[rec[3]] = rec
		if rec[0] != "demo" || rec[1] != "2026-11-07T10:12:00Z" || rec[2] != "2026-11-21T10:12:00Z" {
			t.Errorf("row %v: application or period", rec)
		}
	}
	// 3 deployments in 14 days.
	if v := got["deployment_frequency"]; v[4] != "0.21428571428571427" || v[5] != "per_day" || v[7] != "high" {
		t.Errorf("deployment_frequency %v", v)
	}
	if v := got["change_lead_time"]; v[4] != "3900" || v[5] != "seconds" || v[6] != "2" {
		t.Errorf("change_lead_time %v", v)
	}
	if v := got["failed_deployment_recovery_time"]; v[4] != "4800" {
		t.Errorf("failed_deployment_recovery_time %v", v)
	}
}

func TestReportDoraNoData(t *testing.T) {
	r := runWith(t, &fake{}, nil, "report", "dora", "--format", "csv")
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	// No deployment: no lead time, rates or recovery; frequency is 0.
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n")[1:] {
		cells := strings.Split(line, ",")
		if cells[3] == "deployment_frequency" {
			if cells[4] != "0" || cells[7] != "low" {
				t.Errorf("frequency row %q", line)
			}
		} else if cells[4] != "" || cells[7] != "" {
			t.Errorf("row %q: want no value and no level", line)
		}
	}
}

func TestReportDoraUsageAndFailure(t *testing.T) {
	for _, args := range [][]string{
		{"report", "dora", "--since", "a month"},
		{"report", "dora", "--since", "0d"},
		{"report", "dora", "--format", "yaml"},
		{"report", "dora", "extra"},
	} {
		f := &fake{}
		if r := runWith(t, f, nil, args...); r.code != exitUsage || r.dialed {
			t.Errorf("%v: exit %d dialed %v, want %d without dialing", args, r.code, r.dialed, exitUsage)
		}
	}
	r := runWith(t, &fake{err: errors.New("visibility is down")}, nil, "report", "dora")
	if r.code != exitFailure || r.stderr != "keelson: gather releases for the DORA report: visibility is down\n" {
		t.Errorf("exit %d stderr %q", r.code, r.stderr)
	}
}
