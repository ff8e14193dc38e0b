package workflows

import (
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/keelson-dev/keelson/activities/slack"
	"github.com/keelson-dev/keelson/release"
)

// Kinds of progress notifications.
type noteKind int

const (
	notifyStarted noteKind = iota
	notifyWave
	notifyRegionDone
	notifyRegionFailed
	notifyProgress
	notifyRollback
	notifyFinished
)

// notifier posts a release's Slack messages in order, off the release's
// path: the release only appends to a queue, and a goroutine of the workflow
// works through it with its own retries. A Slack outage therefore delays
// messages, never the release, and never fails it.
type notifier struct {
	queue   []func(workflow.Context)
	started bool
	thread  slack.MessageRef
	gate    slack.MessageRef
}

// notifyTimeout bounds how long one message is retried during an outage,
// and drainTimeout how long a finished release waits for its last messages.
const (
	notifyTimeout = 30 * time.Minute
	drainTimeout  = 30 * time.Second
)

func (r *releaseImpl) enqueue(ctx workflow.Context, fn func(workflow.Context)) {
	if r.slackChannel() == "" {
		return
	}
	r.queue = append(r.queue, fn)
	if r.started {
		return
	}
	r.started = true
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			if err := workflow.Await(ctx, func() bool { return len(r.queue) > 0 }); err != nil {
				return
			}
			next := r.queue[0]
			next(ctx)
			r.queue = r.queue[1:]
		}
	})
}

// drain gives queued messages a short while to go out before the workflow
// completes (and its goroutines with it).
func (r *releaseImpl) drain(ctx workflow.Context) {
	if len(r.queue) == 0 {
		return
	}
	_, _ = workflow.AwaitWithOptions(ctx, workflow.AwaitOptions{
		Timeout:      drainTimeout,
		TimerOptions: workflow.TimerOptions{Summary: "send the last Slack notifications"},
	}, func() bool { return len(r.queue) == 0 })
}

func slackOptions(ctx workflow.Context, summary string) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: notifyTimeout,
		Summary:                summary,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        2 * time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        time.Minute,
			NonRetryableErrorTypes: []string{slack.ErrInvalidAuth, slack.ErrChannelNotFound, slack.ErrBadInput},
		},
	})
}

// notify queues one line of the release's thread; the first call posts the
// thread's parent message.
func (r *releaseImpl) notify(ctx workflow.Context, kind noteKind, detail string) {
	channel := r.slackChannel()
	spec := r.in.Spec
	var text string
	broadcast := false
	switch kind {
	case notifyStarted:
		text = fmt.Sprintf("Release of %s %s started by %s", spec.Application, r.in.Version, nonEmpty(r.in.StartedBy, "someone"))
	case notifyWave:
		text = fmt.Sprintf("Wave %s started", detail)
	case notifyRegionDone:
		text = fmt.Sprintf("Region %s done", detail)
	case notifyRegionFailed:
		text, broadcast = fmt.Sprintf(":x: %s", detail), true
	case notifyProgress:
		text = detail
		broadcast = strings.Contains(detail, "inconclusive") || strings.Contains(detail, "failed")
	case notifyRollback:
		text, broadcast = fmt.Sprintf(":rewind: rolling back: %s", detail), true
	case notifyFinished:
		text = fmt.Sprintf("Release finished: %s", r.status.Phase)
		if detail != "" {
			text += " (" + detail + ")"
		}
		broadcast = r.status.Phase != PhaseSucceeded
	}
	phase := string(r.status.Phase)
	var a *slack.Activities
	r.enqueue(ctx, func(ctx workflow.Context) {
		if r.thread.TS == "" {
			var ref slack.MessageRef
			in := slack.NotifyInput{Channel: channel, ReleaseID: r.id, Application: spec.Application, Version: r.in.Version, Text: text}
			if err := workflow.ExecuteActivity(slackOptions(ctx, "post the release's Slack thread"), a.Notify, in).Get(ctx, &ref); err != nil {
				workflow.GetLogger(ctx).Warn("Slack notification dropped", "error", err)
				return
			}
			r.thread = ref
			if kind == notifyStarted {
				return
			}
		}
		// Threads are keyed by channel id: replies go to the channel the
		// parent landed in, not to the name the file gives.
		in := slack.NotifyInput{Channel: r.thread.Channel, ParentTS: r.thread.TS, ReleaseID: r.id, Text: text, AlsoToChannel: broadcast}
		if err := workflow.ExecuteActivity(slackOptions(ctx, "Slack: "+text), a.Notify, in).Get(ctx, nil); err != nil {
			workflow.GetLogger(ctx).Warn("Slack notification dropped", "error", err)
		}
		up := slack.UpdateParentInput{Ref: r.thread, ReleaseID: r.id, Application: spec.Application, Version: r.in.Version, Phase: phase, Text: text}
		if err := workflow.ExecuteActivity(slackOptions(ctx, "Slack: update the release's status"), a.UpdateParent, up).Get(ctx, nil); err != nil {
			workflow.GetLogger(ctx).Warn("Slack status update dropped", "error", err)
		}
	})
}

// postGate queues the gate's message; the ref it returns is filled in once
// the message is posted.
func (r *releaseImpl) postGate(ctx workflow.Context, msg slack.GateMessage) *slack.MessageRef {
	ref := &slack.MessageRef{}
	var a *slack.Activities
	r.enqueue(ctx, func(ctx workflow.Context) {
		msg.ThreadTS = r.thread.TS
		if err := workflow.ExecuteActivity(slackOptions(ctx, "Slack: gate "+msg.Gate), a.PostGate, msg).Get(ctx, ref); err != nil {
			workflow.GetLogger(ctx).Warn("Slack gate message dropped", "gate", msg.Gate, "error", err)
		}
	})
	return ref
}

func (r *releaseImpl) closeGate(ctx workflow.Context, ref *slack.MessageRef, msg slack.GateMessage, a Approval) {
	outcome := slack.OutcomeRejected
	switch {
	case a.TimedOut:
		outcome = slack.OutcomeTimedOut
	case a.Approved:
		outcome = slack.OutcomeApproved
	}
	var act *slack.Activities
	r.enqueue(ctx, func(ctx workflow.Context) {
		if ref.Empty() {
			return
		}
		in := slack.CloseGateInput{Ref: *ref, Message: msg, Outcome: outcome, By: a.User, ByID: a.UserID, Via: a.Via, At: a.At, Reason: a.Reason}
		if err := workflow.ExecuteActivity(slackOptions(ctx, "Slack: close gate "+msg.Gate), act.CloseGate, in).Get(ctx, nil); err != nil {
			workflow.GetLogger(ctx).Warn("Slack gate update dropped", "gate", msg.Gate, "error", err)
		}
	})
}

// remind schedules the file's reminders before the gate's deadline; each
// fires only while the gate is still open.
func (r *releaseImpl) remind(ctx workflow.Context, g *release.Gate, ref *slack.MessageRef) {
	if r.slackChannel() == "" {
		return
	}
	gate := r.gate
	timeout := gate.status.Deadline.Sub(workflow.Now(ctx))
	for _, before := range g.Reminders {
		wait := timeout - before.Duration
		if wait <= 0 {
			continue
		}
		left := before.Duration
		workflow.Go(ctx, func(ctx workflow.Context) {
			_ = workflow.NewTimerWithOptions(ctx, wait, workflow.TimerOptions{Summary: fmt.Sprintf("remind approvers of gate %s, %s before its timeout", gate.status.Name, left)}).Get(ctx, nil)
			if r.gate != gate || gate.answer != nil {
				return
			}
			var a *slack.Activities
			r.enqueue(ctx, func(ctx workflow.Context) {
				if ref.Empty() {
					return
				}
				in := slack.RemindInput{Gate: *ref, Mention: append(append([]string{}, g.Approvers...), g.ApproverGroups...),
					Text: fmt.Sprintf("Gate %s times out in %s", gate.status.Name, left), Deadline: gate.status.Deadline}
				_ = workflow.ExecuteActivity(slackOptions(ctx, "Slack: reminder for gate "+gate.status.Name), a.Remind, in).Get(ctx, nil)
			})
		})
	}
}

func (r *releaseImpl) escalate(ctx workflow.Context, g *release.Gate, ref *slack.MessageRef, msg slack.GateMessage) {
	deadline := r.gate.status.Deadline
	var a *slack.Activities
	r.enqueue(ctx, func(ctx workflow.Context) {
		if ref.Empty() {
			return
		}
		in := slack.RemindInput{Gate: *ref, Mention: []string{g.Escalation.Mention},
			Text: fmt.Sprintf("Gate %s was not answered in time: escalated until %s", msg.Gate, deadline.Format(time.RFC3339)), Deadline: deadline}
		_ = workflow.ExecuteActivity(slackOptions(ctx, "Slack: escalate gate "+msg.Gate), a.Remind, in).Get(ctx, nil)
		up := msg
		up.Ref, up.Escalated, up.Deadline = ref, true, deadline
		_ = workflow.ExecuteActivity(slackOptions(ctx, "Slack: gate "+msg.Gate+" escalated"), a.PostGate, up).Get(ctx, nil)
	})
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
