package slack

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/slack-go/slack"
)

// Slack refuses a section text over 3,000 characters and a message over 50
// blocks; lists of addresses are cut well below that.
const (
	maxSectionText = 2900
	maxAddresses   = 25
)

// gateBlocks renders a gate's message: open (with buttons) when closed is
// nil, or closed with who answered. Destroys come first, right under the
// header, in their own section, so nobody approves them without seeing them.
func (a *Activities) gateBlocks(ctx context.Context, g GateMessage, closed *CloseGateInput) []slack.Block {
	var blocks []slack.Block
	title := fmt.Sprintf("Approval needed: %s %s", g.Application, g.Version)
	if closed != nil {
		title = fmt.Sprintf("%s %s: %s %s", outcomeEmoji(closed.Outcome), strings.ToUpper(closed.Outcome[:1])+closed.Outcome[1:], g.Application, g.Version)
	}
	if g.Wave != "" {
		title += " (wave " + g.Wave + ")"
	}
	blocks = append(blocks, slack.NewHeaderBlock(plain(truncate(title, 150))))

	if g.Note != "" {
		blocks = append(blocks,
			slack.NewSectionBlock(mrkdwn(truncate(":warning: *Asking again*: "+g.Note, maxSectionText)), nil, nil, slack.SectionBlockOptionBlockID("keelson_note")),
			slack.NewDividerBlock())
	}

	if n := g.Destroys(); n > 0 {
		var b strings.Builder
		fmt.Fprintf(&b, ":rotating_light: *WARNING: this gate lets Terraform DESTROY %d resource%s* :rotating_light:\n", n, plural(n))
		for _, r := range g.Regions {
			if r.Terraform == nil || r.Terraform.Destroys == 0 {
				continue
			}
			fmt.Fprintf(&b, "*%s*: %s\n", r.Region, addressList(r.Terraform.Destroyed, r.Terraform.Destroys))
		}
		blocks = append(blocks,
			slack.NewSectionBlock(mrkdwn(truncate(b.String(), maxSectionText)), nil, nil, slack.SectionBlockOptionBlockID("keelson_destroys")),
			slack.NewDividerBlock())
	}

	regions := make([]string, 0, len(g.Regions))
	for _, r := range g.Regions {
		regions = append(regions, r.Region)
	}
	deadline := "none"
	if !g.Deadline.IsZero() {
		deadline = slackDate(g.Deadline)
		if g.Escalated {
			deadline += " (extended after escalation)"
		}
	}
	fields := []*slack.TextBlockObject{
		mrkdwn("*Application*\n" + g.Application),
		mrkdwn("*Version*\n" + g.Version),
		mrkdwn("*Gate*\n" + orDash(g.Gate)),
		mrkdwn("*Wave*\n" + orDash(g.Wave)),
		mrkdwn("*Regions*\n" + orDash(strings.Join(regions, ", "))),
		mrkdwn("*Approvers*\n" + a.approvers(ctx, g)),
	}
	if closed == nil {
		fields = append(fields, mrkdwn("*Times out*\n"+deadline))
	}
	blocks = append(blocks, slack.NewSectionBlock(nil, fields, nil, slack.SectionBlockOptionBlockID("keelson_gate_fields")))

	for i, r := range g.Regions {
		if i >= 40 { // stay under Slack's 50 blocks; the Web UI has the rest
			blocks = append(blocks, slack.NewContextBlock("", mrkdwn(fmt.Sprintf("and %d more regions, see the release", len(g.Regions)-i))))
			break
		}
		blocks = append(blocks, slack.NewSectionBlock(mrkdwn(truncate(regionLine(r), maxSectionText)), nil, nil))
	}

	var ctxElems []slack.MixedElement
	ctxElems = append(ctxElems, mrkdwn("Release `"+g.ReleaseID+"`"))
	if link := a.releaseURL(g.ReleaseID, g.URL); link != "" {
		ctxElems = append(ctxElems, mrkdwn("<"+link+"|Open in Temporal UI>"))
	}
	if g.Escalated && g.Escalation != "" {
		ctxElems = append(ctxElems, mrkdwn("Escalated to "+a.mention(ctx, g.Escalation, true)))
	}
	blocks = append(blocks, slack.NewContextBlock("keelson_gate_context", ctxElems...))

	if closed != nil {
		blocks = append(blocks, slack.NewSectionBlock(mrkdwn(closedLine(*closed)), nil, nil, slack.SectionBlockOptionBlockID("keelson_gate_outcome")))
		return blocks
	}
	value := GateAction{ReleaseID: g.ReleaseID, Gate: g.Gate}.Encode()
	approve := slack.NewButtonBlockElement(ActionApprove, value, plain("Approve")).WithStyle(slack.StylePrimary)
	reject := slack.NewButtonBlockElement(ActionReject, value, plain("Reject")).WithStyle(slack.StyleDanger)
	blocks = append(blocks, slack.NewActionBlock(BlockGateActions, approve, reject))
	return blocks
}

// gateText is the notification and fallback text of a gate message; it
// names destroys first too, since it is what a phone shows.
func gateText(g GateMessage, closed *CloseGateInput) string {
	var b strings.Builder
	if n := g.Destroys(); n > 0 && closed == nil {
		fmt.Fprintf(&b, "WARNING: DESTROYS %d resource%s. ", n, plural(n))
	}
	if closed != nil {
		fmt.Fprintf(&b, "Gate %s of %s %s %s", g.Gate, g.Application, g.Version, closed.Outcome)
		if closed.By != "" {
			b.WriteString(" by " + closed.By)
		}
		return b.String()
	}
	fmt.Fprintf(&b, "Approval needed: %s %s, wave %s", g.Application, g.Version, g.Wave)
	return b.String()
}

func regionLine(r RegionPlan) string {
	var b strings.Builder
	b.WriteString("*" + r.Region + "*")
	if t := r.Terraform; t != nil {
		fmt.Fprintf(&b, "\nTerraform: %d to add, %d to change, %d to destroy", t.Adds, t.Changes, t.Destroys)
		if t.Destroys > 0 {
			b.WriteString(" :warning:")
		}
		if len(t.Added) > 0 {
			b.WriteString("\n  add: " + addressList(t.Added, t.Adds))
		}
		if len(t.Changed) > 0 {
			b.WriteString("\n  change: " + addressList(t.Changed, t.Changes))
		}
		if len(t.Destroyed) > 0 {
			b.WriteString("\n  *destroy*: " + addressList(t.Destroyed, t.Destroys))
		}
	} else {
		b.WriteString("\nTerraform: no stack")
	}
	if r.ChartFrom != "" || r.ChartTo != "" {
		from := r.ChartFrom
		if from == "" {
			from = "not installed"
		}
		fmt.Fprintf(&b, "\nHelm chart: %s → %s", from, orDash(r.ChartTo))
	}
	return b.String()
}

func closedLine(c CloseGateInput) string {
	var b strings.Builder
	b.WriteString(outcomeEmoji(c.Outcome) + " *" + strings.ToUpper(c.Outcome[:1]) + c.Outcome[1:] + "*")
	switch {
	case c.ByID != "":
		b.WriteString(" by <@" + c.ByID + ">")
	case c.By != "":
		b.WriteString(" by " + userRef(c.By))
	}
	if c.Via != "" {
		b.WriteString(" via " + c.Via)
	}
	if !c.At.IsZero() {
		b.WriteString(" at " + slackDate(c.At))
	}
	if c.Reason != "" {
		b.WriteString("\n>" + truncate(strings.ReplaceAll(c.Reason, "\n", "\n>"), 1000))
	}
	return b.String()
}

// parentBlocks renders the release's parent message.
func (a *Activities) parentBlocks(releaseID, app, version, phase, text, override string) []slack.Block {
	line := fmt.Sprintf("%s *%s %s*: %s", phaseEmoji(phase), app, version, phase)
	if text != "" {
		line += "\n" + text
	}
	blocks := []slack.Block{slack.NewSectionBlock(mrkdwn(truncate(line, maxSectionText)), nil, nil, slack.SectionBlockOptionBlockID("keelson_release_status"))}
	elems := []slack.MixedElement{mrkdwn("Release `" + releaseID + "`")}
	if link := a.releaseURL(releaseID, override); link != "" {
		elems = append(elems, mrkdwn("<"+link+"|Open in Temporal UI>"))
	}
	return append(blocks, slack.NewContextBlock("keelson_release_context", elems...))
}

func (a *Activities) approvers(ctx context.Context, g GateMessage) string {
	var out []string
	for _, u := range g.Approvers {
		out = append(out, userRef(u))
	}
	mention := a.mentioner(ctx, true)
	for _, grp := range g.ApproverGroups {
		out = append(out, mention(grp))
	}
	if len(out) == 0 {
		return "anyone in the channel"
	}
	return truncate(strings.Join(out, ", "), 1900)
}

// mention formats a user id, user group id or @handle so that Slack
// notifies them. A handle is resolved to its group id through
// usergroups.list when resolve is set; when that fails (no usergroups:read
// scope) the handle is shown as text, which is still readable.
func (a *Activities) mention(ctx context.Context, s string, resolve bool) string {
	return a.mentioner(ctx, resolve)(s)
}

// mentioner formats mentions like mention, listing user groups at most once
// for all the names it is given.
func (a *Activities) mentioner(ctx context.Context, resolve bool) func(string) string {
	var groups []slack.UserGroup
	listed := false
	return func(s string) string {
		switch {
		case isUserID(s):
			return "<@" + s + ">"
		case isGroupID(s):
			return "<!subteam^" + s + ">"
		case s == "@here" || s == "@channel" || s == "@everyone":
			return "<!" + s[1:] + ">"
		}
		handle := strings.TrimPrefix(s, "@")
		if resolve && a.API != nil && !listed {
			listed = true
			var err error
			if groups, err = a.API.GetUserGroupsContext(ctx); err != nil {
				a.logger().Debug("cannot list user groups for mentions", "err", err)
			}
		}
		for _, g := range groups {
			if g.Handle == handle {
				return "<!subteam^" + g.ID + ">"
			}
		}
		return "@" + handle
	}
}

func userRef(u string) string {
	if isUserID(u) {
		return "<@" + u + ">"
	}
	return u
}

// isUserID recognises Slack user ids (U… or W… and upper-case letters and
// digits), which the release file may use in place of names.
func isUserID(s string) bool { return slackID(s, 'U') || slackID(s, 'W') }

func isGroupID(s string) bool { return slackID(s, 'S') }

func slackID(s string, prefix byte) bool {
	if len(s) < 7 || s[0] != prefix {
		return false
	}
	for _, c := range s[1:] {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// slackDate shows a time in each reader's own time zone, with UTC as the
// fallback for clients that cannot.
func slackDate(t time.Time) string {
	return fmt.Sprintf("<!date^%d^{date_short_pretty} {time}|%s>", t.Unix(), t.UTC().Format("2006-01-02 15:04 UTC"))
}

func addressList(addrs []string, total int) string {
	if len(addrs) == 0 {
		return fmt.Sprintf("%d resource%s", total, plural(total))
	}
	shown := addrs
	if len(shown) > maxAddresses {
		shown = shown[:maxAddresses]
	}
	s := "`" + strings.Join(shown, "`, `") + "`"
	if rest := max(total, len(addrs)) - len(shown); rest > 0 {
		s += fmt.Sprintf(" and %d more", rest)
	}
	return s
}

func outcomeEmoji(outcome string) string {
	switch outcome {
	case OutcomeApproved:
		return ":white_check_mark:"
	case OutcomeRejected:
		return ":no_entry:"
	case OutcomeTimedOut:
		return ":hourglass:"
	case OutcomeEscalated:
		return ":mega:"
	}
	return ":grey_question:"
}

func phaseEmoji(phase string) string {
	switch phase {
	case "succeeded":
		return ":white_check_mark:"
	case "failed":
		return ":x:"
	case "rolled-back", "rolling-back":
		return ":rewind:"
	case "rejected", "aborted":
		return ":no_entry:"
	case "awaiting-approval":
		return ":raised_hand:"
	case "paused":
		return ":double_vertical_bar:"
	case "deploying", "baking", "planning":
		return ":rocket:"
	}
	return ":hourglass_flowing_sand:"
}

func plain(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.PlainTextType, s, false, false)
}

func mrkdwn(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.MarkdownType, s, false, false)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	r := []rune(s[:n-1])
	return string(r[:len(r)-1]) + "…"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
