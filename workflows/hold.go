package workflows

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/keelson-dev/keelson/activities/coord"
	"github.com/keelson-dev/keelson/release"
)

// What holds a release besides a person's pause: the stop-the-line switch
// (freeze.go), which the release subscribes to when it starts, and the
// file's deploy windows and freezes (release/window.go), evaluated in
// workflow code at each wave's start and, in the regions, at each step
// boundary. Both wait on durable timers or signals, never by polling.

// UpdateOverrideWindow lets a release go outside its deploy windows and
// the file's freezes (not the stop-the-line switch): an approver's call,
// recorded with the approvals.
const UpdateOverrideWindow = "override-window"

// Region signals of holds.
const (
	SignalRegionHold           = "region-hold"
	SignalRegionWindowOverride = "region-window-override"
)

// Hold kinds, in HoldStatus.
const (
	HoldFreeze = "freeze"
	HoldWindow = "window"
)

// PhaseHeld is a release or region waiting for a deploy window or for the
// stop-the-line switch.
const PhaseHeld Phase = "held"

// HoldStatus says why a release is held, since when, by whom, and until
// when if that is known.
type HoldStatus struct {
	Kind   string    `json:"kind"`
	Reason string    `json:"reason"`
	By     string    `json:"by,omitempty"`
	Since  time.Time `json:"since"`
	Until  time.Time `json:"until,omitempty"`
}

// freezeAnswerWait bounds the wait for the switch's first answer: without
// it (a worker that does not run the Freeze workflow), a release goes on
// rather than waiting for ever, and says so in its log.
const freezeAnswerWait = time.Minute

// subscribeFreeze asks the stop-the-line switch to tell this release about
// freezes, starting the switch if it does not run, and waits for its
// first answer.
func (r *releaseImpl) subscribeFreeze(ctx workflow.Context) {
	var a *coord.Activities
	info := workflow.GetInfo(ctx)
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		Summary:             "subscribe to the stop-the-line switch",
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 10 * time.Second, MaximumAttempts: 10},
	})
	in := coord.SignalWithStartInput{
		WorkflowID:   FreezeID,
		WorkflowType: FreezeWorkflow,
		TaskQueue:    info.TaskQueueName,
		Signal:       SignalFreezeSubscribe,
		Arg:          FreezeSubscriber{ReleaseID: r.id, RunID: info.WorkflowExecution.RunID, Application: r.in.Spec.Application},
		StartArg:     &FreezeState{},
		Summary:      "stop-the-line switch: freezes of every application or one",
	}
	if err := r.coordinate(ctx, actx, a.SignalWithStart, in).Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Error("Could not subscribe to the stop-the-line switch", "error", err)
		return
	}
	r.freezeSubscribed = true
	ok, _ := workflow.AwaitWithOptions(ctx, workflow.AwaitOptions{
		Timeout:      freezeAnswerWait,
		TimerOptions: workflow.TimerOptions{Summary: "wait for the stop-the-line switch's answer"},
	}, func() bool { return r.holdKnown })
	if !ok {
		workflow.GetLogger(ctx).Warn("The stop-the-line switch did not answer; going on")
	}
}

// unsubscribeFreeze tells the switch the release has finished.
func (r *releaseImpl) unsubscribeFreeze(ctx workflow.Context) {
	if !r.freezeSubscribed {
		return
	}
	info := workflow.GetInfo(ctx)
	s := FreezeSubscriber{ReleaseID: r.id, RunID: info.WorkflowExecution.RunID, Application: r.in.Spec.Application}
	if r.leanHistory {
		r.farewell = append(r.farewell, coord.SignalInput{WorkflowID: FreezeID, Signal: SignalFreezeUnsubscribe, Arg: s})
		return
	}
	if err := workflow.SignalExternalWorkflow(ctx, FreezeID, "", SignalFreezeUnsubscribe, s).Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Warn("Unsubscribe from the stop-the-line switch not delivered", "error", err)
	}
}

// setHold records the switch's answer and passes it to running regions.
func (r *releaseImpl) setHold(ctx workflow.Context, h Hold) {
	was := r.hold.Held
	r.hold, r.holdKnown = h, true
	if h.Held == was {
		return
	}
	for _, name := range r.runningRegions() {
		r.running[name].SignalChildWorkflow(ctx, SignalRegionHold, h)
	}
	if h.Held {
		r.notify(ctx, notifyProgress, ":double_vertical_bar: "+holdText(h)+": running regions stop at their next step")
	} else {
		r.notify(ctx, notifyProgress, ":arrow_forward: the freeze is lifted: the release goes on")
	}
	r.details(ctx)
}

func holdText(h Hold) string {
	scope := "every application"
	if h.Scope != "all" {
		scope = h.Scope
	}
	return fmt.Sprintf("%s frozen by %s since %s: %s", scope, h.User, h.Since.UTC().Format("2006-01-02 15:04Z"), h.Reason)
}

// awaitUnheld waits while the stop-the-line switch holds the release, or
// until it is stopped.
func (r *releaseImpl) awaitUnheld(ctx workflow.Context) error {
	if !r.hold.Held {
		return nil
	}
	prev, prevMsg := r.status.Phase, r.status.Message
	h := r.hold
	r.status.Hold = &HoldStatus{Kind: HoldFreeze, Reason: h.Reason, By: h.User, Since: h.Since}
	r.setPhase(ctx, PhaseHeld, "held: "+holdText(h))
	err := workflow.Await(ctx, func() bool { return !r.hold.Held || r.abort != nil || r.manual != nil })
	r.status.Hold = nil
	r.status.Message = prevMsg
	r.setPhase(ctx, prev, "")
	if err == nil && (r.abort != nil || r.manual != nil) {
		return fmt.Errorf("stopped while held")
	}
	return err
}

// awaitWindows holds wave wi at its start until every region in it may go
// at the same instant, or an approver overrides the windows. It returns an
// error when the release was stopped while it waited.
func (r *releaseImpl) awaitWindows(ctx workflow.Context, wi int) error {
	if !r.windows || r.windowOverride != nil {
		return nil
	}
	wave := r.in.Spec.Waves[wi]
	prev := r.status.Phase
	held := false
	defer func() {
		if held {
			r.status.Hold = nil
			r.setPhase(ctx, prev, fmt.Sprintf("wave %s: deploy windows open", wave.Name))
		}
	}()
	for {
		now := workflow.Now(ctx)
		var closed []string
		var until time.Time
		never := false
		for _, name := range wave.Regions {
			d := r.in.Spec.Policy(name).At(now)
			if d.Open {
				continue
			}
			closed = append(closed, fmt.Sprintf("%s %s", name, d.Why))
			if d.Until.IsZero() {
				never = true
			} else if d.Until.After(until) {
				until = d.Until
			}
		}
		if len(closed) == 0 {
			return nil
		}
		why := fmt.Sprintf("wave %s waits for its deploy windows: %s", wave.Name, strings.Join(closed, "; "))
		opts := workflow.AwaitOptions{}
		if never {
			why += "; no window opens within a year: `keelson release override-window` or abort"
		} else {
			why += fmt.Sprintf("; next try %s", until.UTC().Format(time.RFC3339))
			opts.Timeout = until.Sub(now)
			opts.TimerOptions = workflow.TimerOptions{Summary: fmt.Sprintf("wave %s: deploy windows, until %s", wave.Name, until.UTC().Format(time.RFC3339))}
		}
		if !held {
			held = true
			r.notify(ctx, notifyProgress, ":hourglass: "+why)
		}
		r.status.Hold = &HoldStatus{Kind: HoldWindow, Reason: why, Since: now, Until: until}
		r.setPhase(ctx, PhaseHeld, why)
		if _, err := workflow.AwaitWithOptions(ctx, opts, func() bool {
			return r.windowOverride != nil || r.abort != nil || r.manual != nil
		}); err != nil {
			return err
		}
		if r.abort != nil || r.manual != nil {
			return fmt.Errorf("stopped while waiting for deploy windows")
		}
		if r.windowOverride != nil {
			return nil
		}
	}
}

// validateOverride is the override-window validator: only the file's
// approvers (of any gate) may send a release outside its windows; where
// identities are verified, only the policy's operators.
func (r *releaseImpl) validateOverride(ctx workflow.Context, a GateAnswer) error {
	if r.status.Phase.Done() {
		return refuse("release %s has finished (%s)", r.id, r.status.Phase)
	}
	if !r.in.Spec.HasDeployPolicy() {
		return refuse("release %s has no deploy windows or freezes to override", r.id)
	}
	if r.windowOverride != nil {
		return refuse("the windows of release %s were already overridden by %s", r.id, r.windowOverride.User)
	}
	if a.User == "" && a.UserID == "" {
		return refuse("an override needs a user")
	}
	if a.Reason == "" {
		return refuse("an override needs a reason: it is recorded with the approvals")
	}
	if who, err := r.mayOverride(ctx, a); err != nil || who != nil {
		return err
	}
	all := &release.Gate{}
	for _, w := range r.in.Spec.Waves {
		if w.Gate != nil {
			all.Approvers = append(all.Approvers, w.Gate.Approvers...)
			all.ApproverGroups = append(all.ApproverGroups, w.Gate.ApproverGroups...)
		}
	}
	if len(all.Approvers)+len(all.ApproverGroups) == 0 {
		return refuse("release %s names no approvers, so nobody may override its deploy windows", r.id)
	}
	if !authorised(all, a) {
		return refuse("%s is not an approver of release %s (approvers: %s)", nonEmpty(a.User, a.UserID), r.id,
			strings.Join(append(slices.Clone(all.Approvers), prefixed("@", all.ApproverGroups)...), ", "))
	}
	return nil
}

// override records an approver's override and tells running regions.
func (r *releaseImpl) override(ctx workflow.Context, a GateAnswer) Approval {
	ap := Approval{Gate: UpdateOverrideWindow, Approved: true, User: a.User, UserID: a.UserID, Via: a.Via, Reason: a.Reason, At: workflow.Now(ctx)}
	if who, err := r.mayOverride(ctx, a); err == nil && who != nil {
		ap.Identity, ap.Team, ap.Key = who.ID, who.SlackTeam, who.Key
		if a.Via != "slack" {
			ap.User = who.ID
		}
	}
	r.windowOverride = &ap
	r.status.Approvals = append(r.status.Approvals, ap)
	for _, name := range r.runningRegions() {
		r.running[name].SignalChildWorkflow(ctx, SignalRegionWindowOverride, Control{User: a.User, Reason: a.Reason})
	}
	r.notify(ctx, notifyProgress, fmt.Sprintf(":unlock: deploy windows overridden by %s: %s", nonEmpty(a.User, a.UserID), a.Reason))
	r.details(ctx)
	return ap
}

// regionPolicy is what a region checks between its steps: its deploy
// policy, unless the file lets regions finish when a window closes.
func (r *releaseImpl) regionPolicy(name string) *release.DeployPolicy {
	if !r.windows || r.in.Spec.OnWindowClose == release.WindowCloseFinish {
		return nil
	}
	p := r.in.Spec.Policy(name)
	if p.Empty() {
		return nil
	}
	return &p
}

// awaitRegionHolds is where a region stops between two steps for the
// stop-the-line switch and for its deploy window: it finishes the step
// under way and holds before the next.
func (r *regionImpl) awaitRegionHolds(ctx workflow.Context, step string) error {
	if r.hold.Held {
		r.status.Phase = PhaseHeld
		r.status.Step = fmt.Sprintf("held before %s: %s", step, holdText(r.hold))
		r.report(ctx)
		if err := workflow.Await(ctx, func() bool { return !r.hold.Held || r.aborted }); err != nil {
			return err
		}
		r.status.Phase = PhaseDeploying
	}
	if r.in.Policy == nil || r.windowOverride || r.aborted {
		return nil
	}
	if !r.windowsAsked {
		r.windowsAsked = true
		workflow.GetVersion(ctx, changeWindows, workflow.DefaultVersion, 1)
	}
	for !r.windowOverride && !r.aborted {
		now := workflow.Now(ctx)
		d := r.in.Policy.At(now)
		if d.Open {
			break
		}
		r.status.Phase = PhaseHeld
		r.status.Step = fmt.Sprintf("held before %s: %s", step, d.Why)
		opts := workflow.AwaitOptions{}
		if !d.Until.IsZero() {
			r.status.Step += " until " + d.Until.UTC().Format(time.RFC3339)
			opts.Timeout = d.Until.Sub(now)
			opts.TimerOptions = workflow.TimerOptions{Summary: fmt.Sprintf("%s: deploy window closed, held before %s until %s", r.in.Region.Name, step, d.Until.UTC().Format(time.RFC3339))}
		}
		r.report(ctx)
		if _, err := workflow.AwaitWithOptions(ctx, opts, func() bool { return r.windowOverride || r.aborted }); err != nil {
			return err
		}
	}
	r.status.Phase = PhaseDeploying
	return nil
}
