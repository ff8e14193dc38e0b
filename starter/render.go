package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keelson-dev/keelson/control"
	"github.com/keelson-dev/keelson/workflows"
)

const timeLayout = "2006-01-02 15:04:05 MST"

// paint colours a phase for a terminal; CI logs get the plain word.
func paint(p workflows.Phase, color bool) string {
	if !color {
		return string(p)
	}
	code := ""
	switch p {
	case workflows.PhaseSucceeded:
		code = "32" // green
	case workflows.PhaseFailed, workflows.PhaseRolledBack, workflows.PhaseRejected, workflows.PhaseAborted, workflows.PhaseRollingBack:
		code = "31" // red
	case workflows.PhaseAwaitGate, workflows.PhasePaused:
		code = "33" // yellow
	default:
		return string(p)
	}
	return "\x1b[" + code + "m" + string(p) + "\x1b[0m"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// revisions prints "3 -> 4"; unknown ends are "-", nothing known is "-".
func revisions(prev, cur int) string {
	if prev == 0 && cur == 0 {
		return "-"
	}
	f := func(n int) string {
		if n == 0 {
			return "-"
		}
		return fmt.Sprint(n)
	}
	return f(prev) + " -> " + f(cur)
}

func dur(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func joinComma(s []string) string { return strings.Join(s, ", ") }

// maxCell bounds an error in a table cell: the full text is on the
// message or reason line above the table, and in -o json.
const maxCell = 100

func cell(s string) string {
	s = dash(oneLine(s))
	if r := []rune(s); len(r) > maxCell {
		return string(r[:maxCell-3]) + "..."
	}
	return s
}

func when(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return "-"
	}
	return t.In(loc).Format(timeLayout)
}

// gateLine describes an open gate: for what, who may answer, until when.
func gateLine(g *workflows.GateStatus, loc *time.Location) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s for wave %s", g.Name, g.Wave)
	if len(g.Regions) > 0 {
		fmt.Fprintf(&b, " (%s)", joinComma(g.Regions))
	}
	var who []string
	who = append(who, g.Approvers...)
	for _, grp := range g.Groups {
		who = append(who, "group "+grp)
	}
	if len(who) > 0 {
		fmt.Fprintf(&b, "; approvers %s", joinComma(who))
	} else {
		b.WriteString("; anyone may answer")
	}
	if !g.Deadline.IsZero() {
		fmt.Fprintf(&b, "; deadline %s", when(g.Deadline, loc))
	}
	if g.Escalated {
		b.WriteString(" (escalated)")
	}
	return b.String()
}

func approvalLine(ap workflows.Approval, loc *time.Location) string {
	var b strings.Builder
	b.WriteString(ap.Gate + ": ")
	switch {
	case ap.TimedOut:
		b.WriteString("timed out")
	case ap.Approved:
		b.WriteString("approved by " + answerer(ap))
	default:
		b.WriteString("rejected by " + answerer(ap))
	}
	if ap.Needed > 1 && ap.Approved {
		fmt.Fprintf(&b, " (gate needs %d approvals)", ap.Needed)
	}
	if ap.Via != "" && !ap.TimedOut {
		b.WriteString(" via " + ap.Via)
	}
	if !ap.At.IsZero() {
		b.WriteString(" at " + when(ap.At, loc))
	}
	if ap.Reason != "" {
		b.WriteString(": " + ap.Reason)
	}
	return b.String()
}

// renderStatus prints a release's status as a header and a table of waves
// and regions.
func renderStatus(w io.Writer, id string, st *workflows.Status, now time.Time, loc *time.Location, color bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	phase := paint(st.Phase, color)
	if st.Paused && st.Phase != workflows.PhasePaused {
		phase += " (paused)"
	}
	fmt.Fprintf(tw, "release\t%s\n", id)
	fmt.Fprintf(tw, "app\t%s %s\n", st.Application, st.Version)
	fmt.Fprintf(tw, "phase\t%s\n", phase)
	if !st.Started.IsZero() {
		line := fmt.Sprintf("%s (%s ago)", when(st.Started, loc), dur(now.Sub(st.Started)))
		if st.StartedBy != "" {
			line += " by " + st.StartedBy
		}
		fmt.Fprintf(tw, "started\t%s\n", line)
	}
	if st.Access != "" {
		fmt.Fprintf(tw, "identities\t%s\n", st.Access)
	}
	if st.Message != "" {
		fmt.Fprintf(tw, "message\t%s\n", st.Message)
	}
	if h := st.Hold; h != nil {
		line := fmt.Sprintf("%s since %s (%s ago)", h.Kind, when(h.Since, loc), dur(now.Sub(h.Since)))
		if h.By != "" {
			line += " by " + h.By
		}
		if !h.Until.IsZero() {
			line += ", until " + when(h.Until, loc)
		}
		fmt.Fprintf(tw, "held\t%s\n", line)
	}
	if q := st.Queue; q != nil && q.Behind != "" {
		fmt.Fprintf(tw, "queued\tbehind %s (position %d in the lane of %s)\n", q.Behind, q.Position, st.Application)
	}
	if st.Gate != nil {
		fmt.Fprintf(tw, "gate\t%s\n", gateLine(st.Gate, loc))
		if st.Gate.Note != "" {
			fmt.Fprintf(tw, "\topened again: %s\n", st.Gate.Note)
		}
		for _, p := range st.Gate.Plans {
			line := fmt.Sprintf("%s: terraform %s", p.Region, p.Summary)
			if len(p.Destroyed) > 0 {
				line += ", destroys " + strings.Join(p.Destroyed, ", ")
			}
			fmt.Fprintf(tw, "\t%s\n", line)
		}
	}
	for i, ap := range st.Approvals {
		label := ""
		if i == 0 {
			label = "answers"
		}
		fmt.Fprintf(tw, "%s\t%s\n", label, approvalLine(ap, loc))
	}
	tw.Flush()

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	// Traffic is a column only for releases with a progressive strategy.
	progressive := false
	for _, wave := range st.Waves {
		for _, r := range wave.Regions {
			progressive = progressive || r.Strategy != ""
		}
	}
	traffic := func(r workflows.RegionStatus) string {
		if !progressive {
			return ""
		}
		return dash(workflows.Weights(r.Traffic)) + "\t"
	}
	head := "WAVE\tREGION\tPHASE\tSTEP\tREVISION\tHEALTH\tDURATION\tERROR"
	if progressive {
		head = "WAVE\tREGION\tPHASE\tSTEP\tREVISION\tHEALTH\tTRAFFIC\tDURATION\tERROR"
	}
	fmt.Fprintln(tw, head)
	for _, wave := range st.Waves {
		if len(wave.Regions) == 0 {
			fmt.Fprintf(tw, "%s\t-\t%s\t-\t-\t-\t%s-\t-\n", wave.Name, paint(wave.Phase, color), traffic(workflows.RegionStatus{}))
		}
		for _, r := range wave.Regions {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s%s\t%s\n", wave.Name, r.Region, paint(r.Phase, color),
				dash(r.Step), revisions(r.PreviousRevision, r.Revision), dash(r.Health), traffic(r), dur(r.Duration), cell(r.Error))
		}
	}
	tw.Flush()
	// The latest analysis of each region, on its own lines: a reason is
	// longer than a table cell.
	for _, wave := range st.Waves {
		for _, r := range wave.Regions {
			if r.Analysis != "" {
				fmt.Fprintf(w, "analysis %s: %s\n", r.Region, r.Analysis)
			}
		}
	}
	for _, f := range st.Failovers {
		fmt.Fprintln(w, failoverLine(f))
	}
}

// failoverLine says which region lost its share, why, and how to give it back.
func failoverLine(f workflows.Failover) string {
	line := fmt.Sprintf("failover %s: check %s failed (%s)", f.Region, f.Check, f.Reason)
	if f.Error != "" {
		return line + "; " + f.Error
	}
	line += "; weights now " + workflows.Weights(f.After)
	if !f.DecidedAt.IsZero() && !f.TrafficAt.IsZero() {
		line += fmt.Sprintf(", %s after the deciding sample", f.TrafficAt.Sub(f.DecidedAt).Round(10*time.Millisecond))
	}
	return line + fmt.Sprintf("; give it back with `keelson traffic restore %s --release ID --reason ...`", f.Region)
}

// renderResult prints a finished release: outcome, every region, answers.
func renderResult(w io.Writer, res *workflows.ReleaseResult, loc *time.Location, color bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "result\t%s in %s\n", paint(res.Phase, color), dur(res.Duration()))
	fmt.Fprintf(tw, "release\t%s (%s %s)\n", res.ReleaseID, res.Application, res.Version)
	if res.Reason != "" {
		fmt.Fprintf(tw, "reason\t%s\n", res.Reason)
	}
	fmt.Fprintf(tw, "finished\t%s\n", when(res.Finished, loc))
	tw.Flush()

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REGION\tWAVE\tOUTCOME\tREVISION\tROLLED BACK TO\tTERRAFORM\tDURATION\tERROR")
	for _, r := range res.Regions {
		rb := "-"
		if r.RolledBackTo > 0 {
			rb = fmt.Sprint(r.RolledBackTo)
		}
		rev := revisions(r.PreviousRevision, r.Revision)
		if !r.Changed && r.Revision > 0 && r.Revision == r.PreviousRevision {
			rev += " (unchanged)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Region, r.Wave, paint(r.Phase, color), rev, rb,
			dash(r.Terraform), dur(r.Duration), cell(r.Error))
	}
	tw.Flush()
	for _, r := range res.Regions {
		for _, a := range r.Analysis {
			line := fmt.Sprintf("analysis %s %s: %s, %d samples", r.Region, a.Step, a.Verdict, a.Samples)
			if a.Reason != "" {
				line += " (" + a.Reason + ")"
			}
			if a.Accepted {
				line += ", accepted by a person"
			}
			fmt.Fprintln(w, line)
		}
		if ar := r.AutoRollback; ar != nil {
			line := fmt.Sprintf("automatic rollback %s: %s", r.Region, ar.Reason)
			if !ar.DecidedAt.IsZero() && !ar.TrafficAt.IsZero() {
				line += fmt.Sprintf("; traffic on stable %s after the deciding sample", ar.TrafficAt.Sub(ar.DecidedAt).Round(10*time.Millisecond))
			}
			if !ar.DecidedAt.IsZero() && !ar.HelmAt.IsZero() {
				line += fmt.Sprintf(", side removed after %s", ar.HelmAt.Sub(ar.DecidedAt).Round(10*time.Millisecond))
			}
			if ar.Error != "" {
				line += "; " + ar.Error
			}
			fmt.Fprintln(w, line)
		}
	}
	for _, f := range res.Failovers {
		fmt.Fprintln(w, strings.Replace(failoverLine(f), "--release ID", "--release "+res.ReleaseID, 1))
	}
	if len(res.Approvals) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "answers")
		for _, ap := range res.Approvals {
			fmt.Fprintf(w, "  %s\n", approvalLine(ap, loc))
		}
	}
}

// renderList prints releases one per line.
func renderList(w io.Writer, list []control.ReleaseInfo, loc *time.Location) {
	if len(list) == 0 {
		fmt.Fprintln(w, "no releases")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RELEASE\tAPP\tVERSION\tPHASE\tSTATUS\tSTARTED\tCLOSED")
	for _, r := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ReleaseID, dash(r.Application), dash(r.Version),
			dash(r.Phase), dash(r.Status), when(r.Started, loc), when(r.Closed, loc))
	}
	tw.Flush()
}

// watcher prints one line per change: of the release's phase, of each
// region, of the gate, and of each answer. Lines are plain text with a
// time, readable in a CI log.
type watcher struct {
	out       io.Writer
	now       func() time.Time
	loc       *time.Location
	color     bool
	releaseID string

	seen        bool
	phase       workflows.Phase
	paused      bool
	message     string
	regions     map[string]string // region -> its last printed line
	gate        string            // last printed gate line, "" when none open
	approvals   int
	failovers   int
	lastProblem string
}

func (w *watcher) printf(format string, args ...any) {
	fmt.Fprintf(w.out, w.now().In(w.loc).Format("15:04:05")+" "+format+"\n", args...)
}

// problem reports a failed poll once, until polling works again.
func (w *watcher) problem(err error) {
	msg := oneLine(err.Error())
	if msg == w.lastProblem {
		return
	}
	w.lastProblem = msg
	w.printf("status unavailable (retrying): %s", msg)
}

func (w *watcher) update(st *workflows.Status) {
	if w.lastProblem != "" {
		w.lastProblem = ""
		w.printf("status available again")
	}
	if !w.seen {
		w.seen = true
		w.regions = map[string]string{}
		w.printf("watching %s (%s %s)", w.releaseID, st.Application, st.Version)
	}
	if st.Phase != w.phase || st.Message != w.message {
		line := "release " + paint(st.Phase, w.color)
		if st.Message != "" {
			line += ": " + st.Message
		}
		w.printf("%s", line)
		w.phase, w.message = st.Phase, st.Message
	}
	if st.Paused != w.paused {
		if st.Paused {
			w.printf("release paused")
		} else {
			w.printf("release resumed")
		}
		w.paused = st.Paused
	}
	for _, wave := range st.Waves {
		for _, r := range wave.Regions {
			line := regionLine(wave.Name, r, w.color)
			if w.regions[r.Region] != line {
				w.regions[r.Region] = line
				w.printf("%s", line)
			}
		}
	}
	for ; w.failovers < len(st.Failovers); w.failovers++ {
		w.printf("%s", failoverLine(st.Failovers[w.failovers]))
	}
	for ; w.approvals < len(st.Approvals); w.approvals++ {
		w.printf("gate %s", approvalLine(st.Approvals[w.approvals], w.loc))
	}
	gate := ""
	if st.Gate != nil {
		gate = gateLine(st.Gate, w.loc)
	}
	if gate != w.gate {
		if gate != "" {
			w.printf("gate %s", gate)
			w.printf("gate %s: answer with `keelson approve %s --gate %s` or `keelson reject %s --gate %s --reason ...`",
				st.Gate.Name, w.releaseID, st.Gate.Name, w.releaseID, st.Gate.Name)
		}
		w.gate = gate
	}
}

func regionLine(wave string, r workflows.RegionStatus, color bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s [%s] %s", r.Region, wave, paint(r.Phase, color))
	if r.Step != "" {
		b.WriteString(" step=" + r.Step)
	}
	if rev := revisions(r.PreviousRevision, r.Revision); rev != "-" {
		b.WriteString(" revision " + rev)
	}
	if r.Health != "" {
		b.WriteString(" health=" + r.Health)
	}
	if wt := workflows.Weights(r.Traffic); wt != "" {
		b.WriteString(" traffic " + wt)
	}
	if r.Analysis != "" {
		b.WriteString(" analysis=" + r.Analysis)
	}
	if r.Error != "" {
		b.WriteString(" error: " + r.Error)
	}
	return b.String()
}

// answerer names who answered: the verified identity when there is one,
// with the Slack account or key that proved it, and never a Slack display
// name alone.
func answerer(ap workflows.Approval) string {
	if ap.Identity == "" {
		return ap.User
	}
	switch {
	case ap.UserID != "":
		s := fmt.Sprintf("%s (Slack user %s of team %s", ap.Identity, ap.UserID, ap.Team)
		if ap.User != "" && ap.User != ap.Identity {
			s += ", shown as " + ap.User
		}
		return s + ")"
	case ap.Key != "":
		return fmt.Sprintf("%s (key %s)", ap.Identity, ap.Key)
	}
	return ap.Identity
}
