// Package dora computes DORA's software delivery figures from Keelson's
// release history: deployment frequency, change lead time, change fail
// rate, failed deployment recovery time and deployment rework rate, each
// with its performance level. It is plain Go over a slice of records (no
// Temporal, no I/O): the CLI and the worker gather the records from
// Temporal's visibility and the releases' results (control.DoraRecords),
// and both compute the figures here, so they always agree.
//
// The definitions follow dora.dev (the five metrics of the 2025 guide:
// throughput is change lead time, deployment frequency and failed
// deployment recovery time; instability is change fail rate and deployment
// rework rate), made precise for Keelson's releases in docs/dora.md. The
// performance levels are those of the 2024 Accelerate State of DevOps
// Report (see Tiers2024): the 2025 report replaced the four levels with
// seven team archetypes and publishes no levels, so the 2024 table is the
// latest one there is, and rework rate, new in 2025, has none.
package dora

import (
	"sort"
	"time"
)

// Phases of a finished release, as workflows.Phase spells them. The
// package keeps to strings so that it imports nothing of Keelson's.
const (
	PhaseSucceeded  = "succeeded"
	PhaseFailed     = "failed"
	PhaseRolledBack = "rolled-back"
	PhaseRejected   = "rejected"
	PhaseAborted    = "aborted"
)

// Release is one finished release run, as its result and input tell.
type Release struct {
	Application string `json:"application"`
	ReleaseID   string `json:"releaseId"`
	// RunID tells runs of one release ID apart (a re-run); an undo names
	// the run it undid.
	RunID    string    `json:"runId,omitempty"`
	Version  string    `json:"version"`
	Phase    string    `json:"phase"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// CommitTime is when the released change was committed; zero when the
	// start did not say (--commit-time, KEELSON_COMMIT_TIME, CI_COMMIT_TIMESTAMP).
	CommitTime time.Time `json:"commitTime,omitzero"`
	// Changed is true when the release made a Helm revision in at least
	// one region: it reached production, so it is a deployment.
	Changed bool `json:"changed"`
	// Undo is true for the undo of a finished release (rollback-APP-VERSION),
	// which names the release run it undid.
	Undo            bool   `json:"undo,omitempty"`
	UndoesReleaseID string `json:"undoesReleaseId,omitempty"`
	UndoesRunID     string `json:"undoesRunId,omitempty"`
}

// key identifies a run: its run ID, or its release ID when the record has
// no run ID (hand-made records in tests and docs).
func (r *Release) key() string {
	if r.RunID != "" {
		return r.RunID
	}
	return r.ReleaseID
}

func (r *Release) undoneKey() string {
	if r.UndoesRunID != "" {
		return r.UndoesRunID
	}
	return r.UndoesReleaseID
}

// Period is the half-open interval [Since, Until) of release ends a report
// covers.
type Period struct {
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
}

// Days is the period's length in days, the denominator of deployment
// frequency.
func (p Period) Days() float64 { return p.Until.Sub(p.Since).Hours() / 24 }

func (p Period) contains(t time.Time) bool { return !t.Before(p.Since) && t.Before(p.Until) }

// Report holds the five figures of one application, or of all of them
// when Application is empty, over a period.
type Report struct {
	Application string  `json:"application,omitempty"`
	Period      Period  `json:"period"`
	Days        float64 `json:"days"`
	// Releases counts the finished releases of the period; Skipped those
	// that ended without a result (terminated, timed out), which no
	// figure can use. The gatherer sets Skipped.
	Releases int `json:"releases"`
	Skipped  int `json:"skipped"`
	// Truncated: the period held more releases than the gatherer reads;
	// the figures cover the newest ones only.
	Truncated bool `json:"truncated,omitempty"`
	// Unreadable are releases the gatherer could not decrypt (encrypted
	// with keys it lacks), left out of every figure.
	Unreadable  []string `json:"unreadable,omitempty"`
	Deployments int      `json:"deployments"`
	Undos       int      `json:"undos"`

	DeploymentFrequency          Frequency      `json:"deploymentFrequency"`
	ChangeLeadTime               DurationFigure `json:"changeLeadTime"`
	ChangeFailRate               Rate           `json:"changeFailRate"`
	FailedDeploymentRecoveryTime Recovery       `json:"failedDeploymentRecoveryTime"`
	DeploymentReworkRate         Rate           `json:"deploymentReworkRate"`

	// Tiers names the table the levels come from.
	Tiers string `json:"tiers"`
}

// Frequency is deployments per day over the period (per week too, for
// people); Level is empty when the period is empty.
type Frequency struct {
	Deployments int     `json:"deployments"`
	PerDay      float64 `json:"perDay"`
	PerWeek     float64 `json:"perWeek"`
	Level       Level   `json:"level"`
}

// DurationFigure is the median of a set of durations. MedianSeconds is nil
// (null in JSON) and Level empty when there is no sample.
type DurationFigure struct {
	Samples       int      `json:"samples"`
	MedianSeconds *float64 `json:"medianSeconds"`
	Level         Level    `json:"level"`
}

// Median returns the median as a duration, and false without samples.
func (f DurationFigure) Median() (time.Duration, bool) {
	if f.MedianSeconds == nil {
		return 0, false
	}
	return time.Duration(*f.MedianSeconds * float64(time.Second)), true
}

// Recovery is the failed deployment recovery time: the median over the
// failed deployments that recovered in the period, and how many did not.
type Recovery struct {
	DurationFigure
	Unrecovered int `json:"unrecovered"`
}

// Rate is Count out of Of; Value is nil (null in JSON) and Level empty
// when Of is zero.
type Rate struct {
	Count int      `json:"count"`
	Of    int      `json:"of"`
	Value *float64 `json:"value"`
	Level Level    `json:"level"`
}

// Classified is a release with what the definitions make of it.
type Classified struct {
	Release
	// Deployment: it changed at least one region.
	Deployment bool `json:"deployment"`
	// Failed: a deployment that failed, rolled back, was aborted, or was
	// undone later (an undo of it is among the records).
	Failed bool `json:"failed"`
	// Rework: an unplanned deployment made because of a failure in
	// production: an undo, or a deployment started while its application
	// had a failed deployment not yet recovered, up to and including the
	// one that recovered it.
	Rework bool `json:"rework"`
	// Recovery is how long this failed deployment took to recover (its end
	// to the end of the next successful deployment of its application);
	// RecoveredBy names that deployment, empty when none did in the period.
	Recovery    time.Duration `json:"recovery,omitempty"`
	RecoveredBy string        `json:"recoveredBy,omitempty"`
	// LeadTime is commit to end, for successful deployments with a commit
	// time (HasLeadTime); a commit time after the end is clock skew and
	// gives none.
	LeadTime    time.Duration `json:"leadTime,omitempty"`
	HasLeadTime bool          `json:"hasLeadTime,omitempty"`
	// Fixes is set on a successful deployment that recovered failed ones.
	Fixes bool `json:"fixes,omitempty"`
}

// Classify applies the definitions to the records of one period: which
// are deployments, which failed, which are rework, and each failure's
// recovery. Records outside the period or of other applications (when
// application is not empty) are left out. The result is ordered by end,
// then start, then release ID.
func Classify(records []Release, p Period, application string) []Classified {
	var out []Classified
	undone := map[string]bool{}
	for _, r := range records {
		if !p.contains(r.Finished) || (application != "" && r.Application != application) {
			continue
		}
		out = append(out, Classified{Release: r, Deployment: r.Changed})
		if r.Undo && r.undoneKey() != "" {
			// A person asked to undo it: the release needed remediation,
			// whether or not the undo itself got through.
			undone[r.undoneKey()] = true
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if !a.Finished.Equal(b.Finished) {
			return a.Finished.Before(b.Finished)
		}
		if !a.Started.Equal(b.Started) {
			return a.Started.Before(b.Started)
		}
		return a.ReleaseID < b.ReleaseID
	})
	for i := range out {
		c := &out[i]
		if !c.Deployment {
			continue
		}
		switch c.Phase {
		case PhaseFailed, PhaseRolledBack, PhaseAborted:
			c.Failed = true
		}
		if undone[c.key()] {
			c.Failed = true
		}
		if c.Phase == PhaseSucceeded && !c.Undo && !c.CommitTime.IsZero() && !c.Finished.Before(c.CommitTime) {
			c.LeadTime, c.HasLeadTime = c.Finished.Sub(c.CommitTime), true
		}
		c.Rework = c.Undo
	}
	// Recovery of each failed deployment: the next successful deployment
	// of the same application, by end. Rework: deployments of the
	// application that started after a failure ended and ended no later
	// than its recovery (or at any time, while it has none).
	for i := range out {
		f := &out[i]
		if !f.Failed {
			continue
		}
		var fix *Classified
		for j := i + 1; j < len(out); j++ {
			s := &out[j]
			if s.Application == f.Application && s.Deployment && s.Phase == PhaseSucceeded && s.Finished.After(f.Finished) {
				fix = s
				break
			}
		}
		if fix != nil {
			f.Recovery = fix.Finished.Sub(f.Finished)
			f.RecoveredBy = fix.ReleaseID
			fix.Fixes = true
		}
		for j := range out {
			d := &out[j]
			if j == i || d.Application != f.Application || !d.Deployment || d.Started.Before(f.Finished) {
				continue
			}
			if fix == nil || !d.Finished.After(fix.Finished) {
				d.Rework = true
			}
		}
	}
	return out
}

// Compute returns the figures of application (all applications when
// empty) over the period, from the records of finished releases.
func Compute(records []Release, p Period, application string) Report {
	rep := Report{Application: application, Period: p, Days: p.Days(), Tiers: Tiers2024.Name}
	var leads, recoveries []time.Duration
	failed, rework := 0, 0
	for _, c := range Classify(records, p, application) {
		rep.Releases++
		if !c.Deployment {
			continue
		}
		rep.Deployments++
		if c.Undo {
			rep.Undos++
		}
		if c.HasLeadTime {
			leads = append(leads, c.LeadTime)
		}
		if c.Failed {
			failed++
			if c.RecoveredBy != "" {
				recoveries = append(recoveries, c.Recovery)
			} else {
				rep.FailedDeploymentRecoveryTime.Unrecovered++
			}
		}
		if c.Rework {
			rework++
		}
	}
	t := Tiers2024
	rep.DeploymentFrequency = Frequency{Deployments: rep.Deployments}
	if days := rep.Days; days > 0 {
		rep.DeploymentFrequency.PerDay = float64(rep.Deployments) / days
		rep.DeploymentFrequency.PerWeek = rep.DeploymentFrequency.PerDay * 7
		rep.DeploymentFrequency.Level = t.FrequencyLevel(rep.DeploymentFrequency.PerDay)
	}
	rep.ChangeLeadTime = durationFigure(leads, t.LeadTimeLevel)
	rep.FailedDeploymentRecoveryTime.DurationFigure = durationFigure(recoveries, t.RecoveryLevel)
	rep.ChangeFailRate = rate(failed, rep.Deployments, t.FailRateLevel)
	rep.DeploymentReworkRate = rate(rework, rep.Deployments, func(float64) Level { return LevelNone })
	return rep
}

// ByApplication computes one report per application found in the period,
// ordered by application.
func ByApplication(records []Release, p Period) []Report {
	seen := map[string]bool{}
	var apps []string
	for _, r := range records {
		if p.contains(r.Finished) && !seen[r.Application] {
			seen[r.Application] = true
			apps = append(apps, r.Application)
		}
	}
	sort.Strings(apps)
	out := make([]Report, 0, len(apps))
	for _, app := range apps {
		out = append(out, Compute(records, p, app))
	}
	return out
}

func durationFigure(ds []time.Duration, level func(time.Duration) Level) DurationFigure {
	f := DurationFigure{Samples: len(ds)}
	if m, ok := Median(ds); ok {
		s := m.Seconds()
		f.MedianSeconds = &s
		f.Level = level(m)
	}
	return f
}

func rate(count, of int, level func(float64) Level) Rate {
	r := Rate{Count: count, Of: of}
	if of > 0 {
		v := float64(count) / float64(of)
		r.Value = &v
		r.Level = level(v)
	}
	return r
}

// Median is the middle value of ds, or the mean of the two middle values
// for an even count (rounded down to the nanosecond); false when empty.
// DORA's figures are typical values, and a median is not dragged by the
// one release that waited a weekend at a gate, as a mean would be.
func Median(ds []time.Duration) (time.Duration, bool) {
	if len(ds) == 0 {
		return 0, false
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	n := len(s)
	if n%2 == 1 {
		return s[n/2], true
	}
	return (s[n/2-1] + s[n/2]) / 2, true
}
