package workflows

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/keelson-dev/keelson/activities/slack"
	"github.com/keelson-dev/keelson/activities/terraform"
	"github.com/keelson-dev/keelson/release"
)

// ErrRefused is the prefix of every validator refusal, so callers can tell a
// refusal from a transport error in the text Temporal returns.
const ErrRefused = "refused"

func refuse(format string, args ...any) error {
	return fmt.Errorf(ErrRefused+": "+format, args...)
}

// runGate opens the wave's gate and waits for an answer, an abort or the
// timeout (escalating once if the file says so). It reports whether the
// release may go on.
//
// note, when set, says why the gate opens again (its plan changed after an
// approval); the gate then shows the new plans.
func (r *releaseImpl) runGate(ctx workflow.Context, wi int, plans map[string]*terraform.PlanResult, note string) (bool, error) {
	log := workflow.GetLogger(ctx)
	wave := r.in.Spec.Waves[wi]
	g := wave.Gate
	name := g.Name
	if name == "" {
		name = "before-" + wave.Name
	}
	timeout := g.Timeout.Duration
	if timeout <= 0 {
		timeout = 24 * time.Hour
	}
	r.gate = &openGate{spec: g, status: GateStatus{
		Name:      name,
		Wave:      wave.Name,
		Regions:   wave.Regions,
		Approvers: g.Approvers,
		Groups:    g.ApproverGroups,
		Deadline:  workflow.Now(ctx).Add(timeout),
		Note:      note,
		Opened:    workflow.Now(ctx),
		Needed:    max(1, g.Approvals),
	}}
	if r.owned {
		for _, region := range wave.Regions {
			if p := plans[region]; p != nil {
				r.gate.status.Plans = append(r.gate.status.Plans, GatePlan{Region: region, Summary: summaryLine(p.Summary), Destroyed: p.Summary.Destroyed})
			}
		}
	}
	defer func() { r.gate = nil; r.status.Gate = nil }()
	r.status.Gate = &r.gate.status
	r.setWavePhase(wi, PhaseAwaitGate)
	msgText := fmt.Sprintf("gate %s before wave %s", name, wave.Name)
	if note != "" {
		msgText += " (opened again: " + note + ")"
	}
	r.setPhase(ctx, PhaseAwaitGate, msgText)
	log.Info("Gate open", "gate", name, "wave", wave.Name, "deadline", r.gate.status.Deadline)

	msg := r.gateMessage(wi, plans)
	ref := r.postGate(ctx, msg)
	r.remind(ctx, g, ref)

	answered := func() bool { return r.gate.answer != nil || r.abort != nil || r.manual != nil }
	ok, err := workflow.AwaitWithOptions(ctx, workflow.AwaitOptions{
		Timeout:      timeout,
		TimerOptions: workflow.TimerOptions{Summary: fmt.Sprintf("gate %s: waiting for approval until %s", name, r.gate.status.Deadline.Format(time.RFC3339))},
	}, answered)
	if err != nil {
		return false, err
	}
	if !ok && g.OnTimeout == release.TimeoutEscalate && g.Escalation != nil {
		extend := g.Escalation.Extend.Duration
		r.gate.status.Escalated = true
		r.gate.status.Deadline = workflow.Now(ctx).Add(extend)
		log.Info("Gate escalated", "gate", name, "mention", g.Escalation.Mention, "until", r.gate.status.Deadline)
		r.details(ctx)
		r.escalate(ctx, g, ref, msg)
		ok, err = workflow.AwaitWithOptions(ctx, workflow.AwaitOptions{
			Timeout:      extend,
			TimerOptions: workflow.TimerOptions{Summary: fmt.Sprintf("gate %s escalated to %s until %s", name, g.Escalation.Mention, r.gate.status.Deadline.Format(time.RFC3339))},
		}, answered)
		if err != nil {
			return false, err
		}
	}
	if !ok {
		a := Approval{Gate: name, Approved: false, At: workflow.Now(ctx), TimedOut: true, Reason: fmt.Sprintf("gate %s timed out", name)}
		r.status.Approvals = append(r.status.Approvals, a)
		r.reason = a.Reason
		r.closeGate(ctx, ref, msg, a)
		r.setPhase(ctx, PhaseRejected, a.Reason)
		return false, nil
	}
	if r.abort != nil || r.manual != nil {
		r.closeGate(ctx, ref, msg, Approval{Gate: name, At: workflow.Now(ctx), Reason: "release stopped"})
		return false, nil
	}
	a := *r.gate.answer
	r.closeGate(ctx, ref, msg, a)
	if !a.Approved {
		r.reason = fmt.Sprintf("gate %s rejected by %s", name, a.User)
		if a.Reason != "" {
			r.reason += ": " + a.Reason
		}
		r.setPhase(ctx, PhaseRejected, r.reason)
		return false, nil
	}
	log.Info("Gate approved", "gate", name, "user", a.User, "via", a.Via)
	return true, nil
}

// validateAnswer is the approve and reject validator: it refuses answers to
// no gate, to another gate, and from people who are not approvers; where
// identities are verified, answers without a valid proof, from the
// release's starter, and a second approval by the same person.
func (r *releaseImpl) validateAnswer(ctx workflow.Context, approve bool, a GateAnswer) error {
	if r.status.Phase.Done() {
		return refuse("release %s has finished (%s)", r.id, r.status.Phase)
	}
	if r.gate == nil {
		return refuse("release %s has no gate waiting for an answer (phase %s)", r.id, r.status.Phase)
	}
	g := r.gate
	if a.Gate != "" && a.Gate != g.status.Name {
		return refuse("gate %s is not open; the open gate is %s", a.Gate, g.status.Name)
	}
	if g.answer != nil {
		return refuse("gate %s was already answered by %s", g.status.Name, g.answer.User)
	}
	if who, err := r.mayApprove(ctx, approve, a); err != nil || who != nil {
		return err
	}
	if a.User == "" && a.UserID == "" {
		return refuse("an answer needs a user")
	}
	if !authorised(g.spec, a) {
		who := a.User
		if who == "" {
			who = a.UserID
		}
		list := strings.Join(append(slices.Clone(g.spec.Approvers), prefixed("@", g.spec.ApproverGroups)...), ", ")
		return refuse("user %s is not an approver of gate %s (approvers: %s)", who, g.status.Name, list)
	}
	if approve && slices.Contains(g.status.Approved, nonEmpty(a.UserID, a.User)) {
		return refuse("%s already approved gate %s, which needs %d distinct approvers", nonEmpty(a.User, a.UserID), g.status.Name, g.status.Needed)
	}
	return nil
}

func authorised(g *release.Gate, a GateAnswer) bool {
	if len(g.Approvers) == 0 && len(g.ApproverGroups) == 0 {
		return true
	}
	for _, who := range g.Approvers {
		if who != "" && (who == a.User || who == a.UserID) {
			return true
		}
	}
	for _, grp := range a.Groups {
		if slices.Contains(g.ApproverGroups, grp) || slices.Contains(g.ApproverGroups, "@"+grp) {
			return true
		}
	}
	return false
}

func prefixed(p string, ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = p + strings.TrimPrefix(s, p)
	}
	return out
}

// answer records an answer the validator accepted. An approval opens the
// gate once it has as many distinct approvers as it needs.
func (r *releaseImpl) answer(ctx workflow.Context, approve bool, a GateAnswer) Approval {
	g := r.gate
	ap := Approval{
		Gate:     g.status.Name,
		Approved: approve,
		User:     a.User,
		UserID:   a.UserID,
		Via:      a.Via,
		Reason:   a.Reason,
		At:       workflow.Now(ctx),
	}
	// Verified again here because validators do not run on replay; the
	// validator accepted it in this same workflow task, so it verifies.
	if who, err := r.mayApprove(ctx, approve, a); err == nil && who != nil {
		ap.Identity, ap.Team, ap.Key = who.ID, who.SlackTeam, who.Key
		if a.Via != "slack" {
			ap.User = who.ID
		}
	}
	if g.status.Needed > 1 {
		ap.Needed = g.status.Needed
	}
	r.status.Approvals = append(r.status.Approvals, ap)
	if approve && g.status.Needed > 1 {
		g.status.Approved = append(g.status.Approved, nonEmpty(ap.Identity, nonEmpty(a.UserID, a.User)))
		if len(g.status.Approved) < g.status.Needed {
			workflow.GetLogger(ctx).Info("Gate approval counted", "gate", g.status.Name, "user", ap.User, "approvals", len(g.status.Approved), "needed", g.status.Needed)
			r.details(ctx)
			return ap
		}
	}
	g.answer = &ap
	return ap
}

// setHandlers registers the status query, the control Updates with their
// validators, and a signal of the same name for each Update.
func (r *releaseImpl) setHandlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (Status, error) { return r.status, nil }); err != nil {
		return fmt.Errorf("set status query: %w", err)
	}
	type control struct {
		name     string
		validate func(Control) error
		apply    func(workflow.Context, Control)
	}
	// Every control's validator also checks the proof (mayOperate); the
	// handler takes the verified identity as the control's user.
	validate := func(ctx workflow.Context, name string, c Control, check func(Control) error) error {
		if err := check(c); err != nil {
			return err
		}
		_, err := r.mayOperate(ctx, name, c)
		return err
	}
	verified := func(ctx workflow.Context, name string, c Control) Control {
		if who, err := r.mayOperate(ctx, name, c); err == nil && who != nil {
			c.User = who.ID
		}
		return c
	}
	notDone := func() error {
		if r.status.Phase.Done() {
			return refuse("release %s has finished (%s)", r.id, r.status.Phase)
		}
		if r.abort != nil || r.manual != nil {
			return refuse("release %s is already stopping", r.id)
		}
		return nil
	}
	controls := []control{
		{UpdatePause, func(Control) error {
			if err := notDone(); err != nil {
				return err
			}
			if r.status.Paused {
				return refuse("release %s is already paused", r.id)
			}
			return nil
		}, func(ctx workflow.Context, c Control) {
			r.status.Paused = true
			r.signalChildren(ctx, SignalRegionPause, c)
			r.details(ctx)
		}},
		{UpdateResume, func(Control) error {
			if err := notDone(); err != nil {
				return err
			}
			if !r.status.Paused && !r.regionPaused() {
				return refuse("release %s is not paused", r.id)
			}
			return nil
		}, func(ctx workflow.Context, c Control) {
			r.status.Paused = false
			r.signalChildren(ctx, SignalRegionResume, c)
			r.details(ctx)
		}},
		{UpdateAbort, func(Control) error { return notDone() }, func(ctx workflow.Context, c Control) {
			r.abort = &c
			r.signalChildren(ctx, SignalRegionAbort, c)
		}},
		{UpdatePromote, func(c Control) error {
			if err := notDone(); err != nil {
				return err
			}
			if len(r.running) == 0 {
				return refuse("release %s has no region deploying or baking to promote", r.id)
			}
			return nil
		}, func(ctx workflow.Context, c Control) {
			r.signalChildren(ctx, SignalRegionPromote, c)
		}},
		{UpdateRollback, func(c Control) error {
			if err := notDone(); err != nil {
				return err
			}
			for _, name := range c.Regions {
				if r.regions[name] == nil {
					return refuse("release %s has no region %s (regions: %s)", r.id, name, strings.Join(r.regionNames(), ", "))
				}
			}
			for _, name := range c.Waves {
				if r.waveRegions(name) == nil {
					return refuse("release %s has no wave %s (waves: %s)", r.id, name, strings.Join(r.waveNames(), ", "))
				}
			}
			return nil
		}, func(ctx workflow.Context, c Control) {
			for _, w := range c.Waves {
				for _, name := range r.waveRegions(w) {
					if !slices.Contains(c.Regions, name) {
						c.Regions = append(c.Regions, name)
					}
				}
			}
			r.manual = &c
			r.signalChildren(ctx, SignalRegionAbort, c)
		}},
	}
	for _, c := range controls {
		if err := workflow.SetUpdateHandlerWithOptions(ctx, c.name, func(ctx workflow.Context, arg Control) error {
			arg = verified(ctx, c.name, arg)
			c.apply(ctx, arg)
			workflow.GetLogger(ctx).Info("Control applied", "control", c.name, "user", arg.User, "reason", arg.Reason)
			return nil
		}, workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, arg Control) error { return validate(ctx, c.name, arg, c.validate) }}); err != nil {
			return fmt.Errorf("set %s update: %w", c.name, err)
		}
		r.listenSignal(ctx, c.name, func(ctx workflow.Context, payload workflow.ReceiveChannel) {
			var arg Control
			payload.Receive(ctx, &arg)
			if err := validate(ctx, c.name, arg, c.validate); err != nil {
				workflow.GetLogger(ctx).Warn("Control signal refused", "control", c.name, "user", arg.User, "error", err)
				return
			}
			c.apply(ctx, verified(ctx, c.name, arg))
		})
	}
	for _, approve := range []bool{true, false} {
		name := UpdateReject
		if approve {
			name = UpdateApprove
		}
		if err := workflow.SetUpdateHandlerWithOptions(ctx, name, func(ctx workflow.Context, a GateAnswer) (Approval, error) {
			return r.answer(ctx, approve, a), nil
		}, workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, a GateAnswer) error {
			if !approve && strings.TrimSpace(a.Reason) == "" {
				if err := r.validateAnswer(ctx, approve, a); err != nil {
					return err
				}
				return refuse("a rejection needs a reason")
			}
			return r.validateAnswer(ctx, approve, a)
		}}); err != nil {
			return fmt.Errorf("set %s update: %w", name, err)
		}
		r.listenSignal(ctx, name, func(ctx workflow.Context, payload workflow.ReceiveChannel) {
			var a GateAnswer
			payload.Receive(ctx, &a)
			if err := r.validateAnswer(ctx, approve, a); err != nil {
				workflow.GetLogger(ctx).Warn("Gate signal refused", "update", name, "user", a.User, "error", err)
				return
			}
			r.answer(ctx, approve, a)
		})
	}
	// The override of deploy windows: an approver's decision, recorded.
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateOverrideWindow, func(ctx workflow.Context, a GateAnswer) (Approval, error) {
		return r.override(ctx, a), nil
	}, workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, a GateAnswer) error { return r.validateOverride(ctx, a) }}); err != nil {
		return fmt.Errorf("set %s update: %w", UpdateOverrideWindow, err)
	}
	// The stop-the-line switch's answers (see freeze.go).
	r.listenSignal(ctx, SignalReleaseHold, func(ctx workflow.Context, payload workflow.ReceiveChannel) {
		var h Hold
		payload.Receive(ctx, &h)
		r.setHold(ctx, h)
	})
	// The lane's answers (see lane.go).
	r.listenSignal(ctx, SignalLaneGranted, func(ctx workflow.Context, payload workflow.ReceiveChannel) {
		var q LaneQueued
		payload.Receive(ctx, &q)
		r.laneGranted = true
		r.status.Queue = nil
		r.details(ctx)
	})
	r.listenSignal(ctx, SignalLaneQueued, func(ctx workflow.Context, payload workflow.ReceiveChannel) {
		var q LaneQueued
		payload.Receive(ctx, &q)
		if r.laneGranted || r.status.Queue == nil {
			return
		}
		r.status.Queue = &QueueStatus{Behind: q.Holder, Position: q.Position}
		r.setPhase(ctx, PhaseQueued, fmt.Sprintf("queued behind %s", q.Holder))
	})
	r.listenSignal(ctx, SignalRegionProgress, func(ctx workflow.Context, payload workflow.ReceiveChannel) {
		var s RegionStatus
		payload.Receive(ctx, &s)
		rs := r.regions[s.Region]
		if rs == nil || s.Seq < rs.Seq || rs.Phase.Done() {
			// An older report overtaken by a newer one, or one arriving
			// after the region's result was recorded.
			return
		}
		prev := *rs
		*rs = s
		if s.Strategy != "" {
			// Progressive regions tell the thread when users move and
			// what each analysis concluded.
			if w := Weights(s.Traffic); w != "" && w != Weights(prev.Traffic) {
				r.notify(ctx, notifyProgress, fmt.Sprintf("%s: traffic %s", s.Region, w))
			}
			if s.Analysis != "" && s.Analysis != prev.Analysis {
				r.notify(ctx, notifyProgress, fmt.Sprintf("%s: analysis %s", s.Region, s.Analysis))
			}
		}
		if s.Revision != 0 || s.Changed {
			rr := r.results[s.Region]
			if rr == nil {
				rr = &RegionResult{Region: s.Region, Phase: s.Phase, Started: s.Started}
				r.results[s.Region] = rr
			}
			rr.PreviousRevision, rr.Revision = s.PreviousRevision, s.Revision
			rr.Changed = s.Revision != s.PreviousRevision
			if r.owned {
				// Only a revision this run made counts as a change.
				rr.Changed = s.Changed
			}
		}
		r.details(ctx)
	})
	return nil
}

// listenSignal handles every signal of a name, one at a time, for the
// whole run of the workflow.
func (r *releaseImpl) listenSignal(ctx workflow.Context, name string, fn func(workflow.Context, workflow.ReceiveChannel)) {
	ch := workflow.GetSignalChannel(ctx, name)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			workflow.NewSelector(ctx).AddReceive(ch, func(c workflow.ReceiveChannel, more bool) { fn(ctx, c) }).Select(ctx)
			if ctx.Err() != nil {
				return
			}
		}
	})
}

func (r *releaseImpl) slackChannel() string {
	if n := r.in.Spec.Notify; n != nil && n.Slack != nil {
		return n.Slack.Channel
	}
	return ""
}

func (r *releaseImpl) gateMessage(wi int, plans map[string]*terraform.PlanResult) slack.GateMessage {
	wave := r.in.Spec.Waves[wi]
	msg := slack.GateMessage{
		Channel:        r.slackChannel(),
		ReleaseID:      r.id,
		Application:    r.in.Spec.Application,
		Version:        r.in.Version,
		Gate:           r.gate.status.Name,
		Wave:           wave.Name,
		Approvers:      wave.Gate.Approvers,
		ApproverGroups: wave.Gate.ApproverGroups,
		Deadline:       r.gate.status.Deadline,
		ThreadTS:       r.thread.TS,
		Note:           r.gate.status.Note,
	}
	for _, name := range wave.Regions {
		rp := slack.RegionPlan{Region: name, ChartTo: r.in.Version}
		if p := plans[name]; p != nil {
			rp.Terraform = &slack.TerraformSummary{
				Adds: p.Summary.Adds, Changes: p.Summary.Changes, Destroys: p.Summary.Destroys,
				Added: p.Summary.Added, Changed: p.Summary.Changed, Destroyed: p.Summary.Destroyed,
			}
		}
		msg.Regions = append(msg.Regions, rp)
	}
	if g := wave.Gate; g.Escalation != nil {
		msg.Escalation = g.Escalation.Mention
	}
	return msg
}
