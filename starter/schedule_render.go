package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	// describe shows times in the regions' zones whatever this machine has
	// in /usr/share/zoneinfo.
	_ "time/tzdata"

	"github.com/keelson-dev/keelson/control"
	"github.com/keelson-dev/keelson/release"
	"github.com/keelson-dev/keelson/workflows"
)

const utcLayout = "Mon 2006-01-02 15:04 UTC"

// zonedTimes is "Mon 2026-11-23 08:00 UTC (Mon 08:00 GMT in Europe/Dublin)".
func zonedTimes(t time.Time, tz string) string {
	s := t.UTC().Format(utcLayout)
	if tz == "" || tz == "UTC" {
		return s
	}
	if loc, err := time.LoadLocation(tz); err == nil {
		s += fmt.Sprintf(" (%s in %s)", t.In(loc).Format("Mon 15:04 MST"), tz)
	}
	return s
}

// regionZone is a region's zone and deploy policy, for describe.
type regionZone struct {
	Region string
	Zone   string // IANA name; "" when the file names none
	loc    *time.Location
	policy *release.DeployPolicy
}

// regionZones is the one place schedules meet deploy windows: each region's
// zone and windows come from the release file's deploy policy
// (release.Spec.Policy), and --region-zone REGION=TZ adds or replaces a
// zone. A region without a zone is shown in UTC.
func regionZones(spec *release.Spec, overrides map[string]string) []regionZone {
	if spec == nil {
		return nil
	}
	var out []regionZone
	for _, r := range spec.Regions {
		p := spec.Policy(r.Name)
		rz := regionZone{Region: r.Name, Zone: p.TimeZone}
		if !p.Empty() {
			rz.policy = &p
		}
		if tz, ok := overrides[r.Name]; ok {
			rz.Zone = tz
		}
		loc := time.UTC
		if rz.Zone != "" {
			if l, err := time.LoadLocation(rz.Zone); err == nil {
				loc = l
			}
		}
		rz.loc = loc
		out = append(out, rz)
	}
	return out
}

// scheduleView is how describe renders.
type scheduleView struct {
	next  int
	zones []regionZone
	// local is the digest of the schedule's file on this machine now.
	local string
}

func renderSchedule(w io.Writer, d *control.ScheduleDetails, v scheduleView) {
	fmt.Fprintf(w, "schedule: %s\n", d.Name)
	state := "active"
	if d.Paused {
		state = "paused"
	}
	if d.Note != "" {
		state += " (" + d.Note + ")"
	}
	fmt.Fprintf(w, "state: %s\n", state)
	fmt.Fprintf(w, "application: %s\n", dash(d.Application))
	fmt.Fprintf(w, "file: %s\n", dash(d.File))
	digest := dash(d.Digest)
	switch {
	case v.local == "" || d.Digest == "":
	case v.local == d.Digest:
		digest += " (the file here is the same)"
	default:
		digest += fmt.Sprintf(" (the file here differs, %s: trains release the file as it was when the schedule was created; delete and create the schedule to use the new one)", v.local)
	}
	fmt.Fprintf(w, "digest: %s\n", digest)
	fmt.Fprintf(w, "version from: %s\n", dash(d.VersionFrom))
	when := d.When
	if when == "" {
		when = "calendar " + strings.Join(d.Calendars, " + ")
	}
	zone := d.TimeZone
	if zone == "" {
		zone = "UTC"
	}
	fmt.Fprintf(w, "when: %s in %s", when, zone)
	if d.Jitter > 0 {
		fmt.Fprintf(w, ", jitter %s", d.Jitter)
	}
	fmt.Fprintln(w)
	overlap := d.Overlap
	if overlap == "skip" {
		overlap += " (no train starts while the last one's release runs)"
	}
	fmt.Fprintf(w, "overlap: %s\n", overlap)
	if d.CatchupWindow > 0 {
		fmt.Fprintf(w, "catch-up window: %s (trains missed by a Temporal outage up to this long are still started)\n", days(d.CatchupWindow))
	}
	created := "-"
	if !d.Created.IsZero() {
		created = d.Created.UTC().Format(timeLayout)
		if d.CreatedBy != "" {
			created += " by " + d.CreatedBy
		}
	}
	fmt.Fprintf(w, "created: %s\n", created)
	fmt.Fprintf(w, "trains: %d started, %d skipped (the last one still ran), %d missed (catch-up window)\n", d.Actions, d.SkippedOverlap, d.MissedCatchup)
	if len(d.Running) > 0 {
		fmt.Fprintf(w, "running: %s\n", joinComma(d.Running))
	}
	fmt.Fprintf(w, "url: %s\n", d.URL)

	fmt.Fprintln(w)
	renderNextRuns(w, d, v)
	fmt.Fprintln(w)
	renderRuns(w, d.Runs)
}

// renderNextRuns shows each next run in UTC, in the schedule's zone, and in
// every region's zone, marking a region whose deploy window is closed at
// that instant: its wave will wait there until the window opens.
func renderNextRuns(w io.Writer, d *control.ScheduleDetails, v scheduleView) {
	next := d.Next
	if len(next) > v.next {
		next = next[:v.next]
	}
	if len(next) == 0 {
		fmt.Fprintln(w, "next runs: none (its calendar has no time left)")
		return
	}
	fmt.Fprintln(w, "next runs:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := []string{"UTC"}
	var schedLoc *time.Location
	if d.TimeZone != "" && d.TimeZone != "UTC" {
		if l, err := time.LoadLocation(d.TimeZone); err == nil {
			schedLoc = l
			head = append(head, d.TimeZone+" (schedule)")
		}
	}
	closedSeen := false
	for _, z := range v.zones {
		zone := z.Zone
		if zone == "" {
			zone = "UTC, no zone in the file"
		}
		head = append(head, fmt.Sprintf("%s (%s)", z.Region, zone))
	}
	fmt.Fprintln(tw, "  "+strings.Join(head, "\t"))
	for _, t := range next {
		row := []string{t.UTC().Format("Mon 2006-01-02 15:04")}
		if schedLoc != nil {
			row = append(row, t.In(schedLoc).Format("Mon 15:04 MST"))
		}
		for _, z := range v.zones {
			cell := t.In(z.loc).Format("Mon 15:04 MST")
			if z.policy != nil {
				if dec := z.policy.At(t); !dec.Open {
					closedSeen = true
					cell += " (closed"
					if !dec.Until.IsZero() {
						cell += ", opens " + opens(t, dec.Until.In(z.loc))
					}
					cell += ")"
				}
			}
			row = append(row, cell)
		}
		fmt.Fprintln(tw, "  "+strings.Join(row, "\t"))
	}
	tw.Flush()
	if closedSeen {
		fmt.Fprintln(w, "  (closed): the region's deploy window is closed when the train starts; its wave waits for it to open")
	}
}

// opens is when a closed window opens: the weekday and time within the
// week, the date as well beyond it (a freeze over the holidays).
func opens(at, until time.Time) string {
	if until.Sub(at) < 6*24*time.Hour {
		return until.Format("Mon 15:04")
	}
	return until.Format("Mon 2006-01-02 15:04")
}

// days writes a duration of whole days as days: a catch-up window of a year
// is "365d", not "8760h0m0s".
func days(d time.Duration) string {
	if d >= 24*time.Hour && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// renderRuns lists the latest trains, newest first.
func renderRuns(w io.Writer, runs []control.TrainRun) {
	if len(runs) == 0 {
		fmt.Fprintln(w, "last runs: none yet")
		return
	}
	fmt.Fprintln(w, "last runs (newest first):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  STARTED (UTC)\tTRAIN\tVERSION\tRELEASE\tOUTCOME")
	for _, r := range runs {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", r.Started.UTC().Format("2006-01-02 15:04:05"), dash(r.TrainID), dash(r.Version), dash(r.ReleaseID), cell(runOutcome(r)))
	}
	tw.Flush()
}

// runOutcome says in a few words what a train did or is doing.
func runOutcome(r control.TrainRun) string {
	switch {
	case r.Status == "Running" && r.ReleaseID != "":
		return "running: release " + dash(r.Phase)
	case r.Status == "Running":
		return "running: " + r.Message
	case r.Outcome == workflows.TrainReleased:
		return "released: " + r.Phase
	case r.Outcome != "":
		return string(r.Outcome) + ": " + r.Message
	case r.Message != "":
		return strings.ToLower(dash(r.Status)) + ": " + r.Message
	}
	return strings.ToLower(dash(r.Status))
}

func renderScheduleList(w io.Writer, list []control.ScheduleSummary) {
	if len(list) == 0 {
		fmt.Fprintln(w, "no schedules")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tAPP\tWHEN\tZONE\tNEXT (UTC)\tLAST TRAIN (UTC)\tSTATE")
	for _, s := range list {
		next, last, state := "-", "-", "active"
		if !s.Next.IsZero() {
			next = s.Next.UTC().Format("Mon 2006-01-02 15:04")
		}
		if !s.LastRun.IsZero() {
			last = s.LastRun.UTC().Format("2006-01-02 15:04")
		}
		if s.Paused {
			state = "paused"
		}
		zone := s.TimeZone
		if zone == "" {
			zone = "UTC"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, dash(s.Application), cell(s.When), zone, next, last, state)
	}
	tw.Flush()
}
