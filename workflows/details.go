package workflows

import (
	"fmt"
	"strings"
	"time"

	"github.com/keelson-dev/keelson/activities/traffic"
)

// releaseDetails renders the release's current details for the Web UI: a
// Markdown table of every region, kept up to date as the release moves.
func releaseDetails(s *Status) string {
	var b strings.Builder
	b.WriteString(fmt.Sprintf("**%s %s**: %s", s.Application, s.Version, s.Phase))
	if s.Paused {
		b.WriteString(" (paused)")
	}
	if s.Message != "" {
		b.WriteString(fmt.Sprintf(" — %s", s.Message))
	}
	b.WriteString("\n\n")
	if q := s.Queue; q != nil {
		if q.Behind != "" {
			b.WriteString(fmt.Sprintf("Queued behind **%s** (position %d in the lane of %s): one release of an application changes regions at a time\n\n", q.Behind, q.Position, s.Application))
		} else {
			b.WriteString(fmt.Sprintf("Waiting for the lane of %s\n\n", s.Application))
		}
	}
	if g := s.Gate; g != nil {
		b.WriteString(fmt.Sprintf("Gate **%s** before wave %s waits for approval until %s", g.Name, g.Wave, g.Deadline.UTC().Format(time.RFC3339)))
		if len(g.Approvers)+len(g.Groups) > 0 {
			b.WriteString(fmt.Sprintf(" (approvers: %s)", strings.Join(append(append([]string{}, g.Approvers...), prefixed("@", g.Groups)...), ", ")))
		}
		b.WriteString("\n\n")
		if g.Note != "" {
			b.WriteString(fmt.Sprintf("**Opened again**: %s\n\n", g.Note))
		}
		for _, p := range g.Plans {
			b.WriteString(fmt.Sprintf("- %s: terraform %s", p.Region, p.Summary))
			if len(p.Destroyed) > 0 {
				b.WriteString(fmt.Sprintf(", **destroys** %s", strings.Join(p.Destroyed, ", ")))
			}
			b.WriteString("\n")
		}
		if len(g.Plans) > 0 {
			b.WriteString("\n")
		}
	}
	if h := s.Hold; h != nil {
		b.WriteString(fmt.Sprintf("**Held** (%s) since %s", h.Kind, h.Since.UTC().Format(time.RFC3339)))
		if h.By != "" {
			b.WriteString(" by " + h.By)
		}
		if !h.Until.IsZero() {
			b.WriteString(", until " + h.Until.UTC().Format(time.RFC3339))
		}
		b.WriteString(": " + h.Reason + "\n\n")
	}
	for _, f := range s.Failovers {
		b.WriteString(fmt.Sprintf("**Failover**: %s failed check %s (%s)", f.Region, f.Check, f.Reason))
		if f.Error != "" {
			b.WriteString("; " + f.Error)
		} else {
			b.WriteString(fmt.Sprintf("; regions' weights now %s, until `keelson traffic restore %s`", Weights(f.After), f.Region))
		}
		b.WriteString("\n\n")
	}
	progressive := false
	for _, w := range s.Waves {
		for _, r := range w.Regions {
			progressive = progressive || r.Strategy != ""
		}
	}
	if !progressive {
		b.WriteString("| wave | region | phase | step | revision | health |\n|---|---|---|---|---|---|\n")
	} else {
		b.WriteString("| wave | region | phase | step | revision | health | traffic | analysis |\n|---|---|---|---|---|---|---|---|\n")
	}
	for _, w := range s.Waves {
		for _, r := range w.Regions {
			b.WriteString(fmt.Sprintf("| %s | %s | %s | %s | %s | %s |", w.Name, r.Region, r.Phase, cell(r.Step, r.Error), revisions(r.PreviousRevision, r.Revision), cell(r.Health, "")))
			if progressive {
				b.WriteString(fmt.Sprintf(" %s | %s |", cell(Weights(r.Traffic), ""), cell(r.Analysis, "")))
			}
			b.WriteString("\n")
		}
	}
	if len(s.Approvals) > 0 {
		b.WriteString("\n")
	}
	for _, a := range s.Approvals {
		verb := "rejected"
		if a.Approved {
			verb = "approved"
		}
		if a.TimedOut {
			verb = "timed out"
		}
		if a.Gate == UpdateOverrideWindow {
			verb = "granted"
		}
		b.WriteString(fmt.Sprintf("- %s %s", gateWord(a.Gate), verb))
		if a.User != "" {
			b.WriteString(fmt.Sprintf(" by %s", a.User))
		}
		if a.Via != "" {
			b.WriteString(fmt.Sprintf(" via %s", a.Via))
		}
		b.WriteString(fmt.Sprintf(" at %s", a.At.UTC().Format(time.RFC3339)))
		if a.Reason != "" {
			b.WriteString(fmt.Sprintf(": %s", a.Reason))
		}
		b.WriteString("\n")
	}
	// The Web UI makes the pane a little shorter than what it renders: a
	// last line that may be clipped keeps the table and answers whole.
	b.WriteString("\n_Each region's own workflow shows its live step._\n")
	return b.String()
}

// gateWord names an approval's subject: a gate, or the windows' override.
func gateWord(gate string) string {
	if gate == UpdateOverrideWindow {
		return "Deploy windows override"
	}
	return "Gate " + gate
}

func regionDetails(in *RegionInput, s RegionStatus) string {
	if s.Strategy != "" {
		return fmt.Sprintf("**%s %s in %s** (wave %s, %s): %s\n\n| step | revision | health | traffic | analysis |\n|---|---|---|---|---|\n| %s | %s | %s | %s | %s |\n",
			in.Application, in.Version, in.Region.Name, in.Wave, s.Strategy, s.Phase, cell(s.Step, s.Error), revisions(s.PreviousRevision, s.Revision),
			cell(s.Health, ""), cell(Weights(s.Traffic), ""), cell(s.Analysis, ""))
	}
	return fmt.Sprintf("**%s %s in %s** (wave %s): %s\n\n| step | revision | health |\n|---|---|---|\n| %s | %s | %s |\n",
		in.Application, in.Version, in.Region.Name, in.Wave, s.Phase, cell(s.Step, s.Error), revisions(s.PreviousRevision, s.Revision), cell(s.Health, ""))
}

func revisions(prev, cur int) string {
	switch {
	case cur == 0:
		return "-"
	case prev == 0 || prev == cur:
		return fmt.Sprint(cur)
	}
	return fmt.Sprintf("%d → %d", prev, cur)
}

// cell keeps a table cell on one line and free of pipes.
func cell(s, errText string) string {
	if errText != "" {
		s += ": " + errText
	}
	if s == "" {
		return "-"
	}
	s = strings.NewReplacer("|", "/", "\n", " ").Replace(s)
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}

// Weights renders a region's traffic weights: "stable 90 / canary 10".
func Weights(w map[string]int) string {
	if len(w) == 0 {
		return ""
	}
	// Whether any key is a region does not depend on the order.
	//workflowcheck:ignore
	for k := range w {
		if k != SideStable && k != SideCanary {
			// Weights between regions (failover): every region, sorted.
			return traffic.Weights(w).String()
		}
	}
	return fmt.Sprintf("stable %d / canary %d", w[SideStable], w[SideCanary])
}
