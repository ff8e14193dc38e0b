package workflows

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/keelson-dev/keelson/activities/coord"
)

// An application's lane lets one release of the application change regions
// at a time; the others wait in it, first in first out. It is a workflow of
// its own (ID LaneID(app)) so the queue is durable: a worker crash or a
// server restart keeps it, and it needs no lock service.
//
//   - A release asks for the lane through an activity that signals the lane
//     with start (SignalLaneAcquire), then waits for SignalLaneGranted.
//     While it waits its phase is "queued", and SignalLaneQueued tells it
//     whom it waits behind.
//   - A release gives the lane back when it finishes, whatever the outcome,
//     with SignalLaneRelease; a queued release that is aborted leaves the
//     queue the same way.
//   - A holder that ends without giving the lane back (terminated, or its
//     history lost) is found by the lane's periodic check of the holder's
//     run, and the lane moves on.
//   - The lane continues as new when Temporal suggests it, carrying the
//     queue, so its history stays bounded; it completes when idle.
const (
	SignalLaneAcquire = "lane-acquire"
	SignalLaneRelease = "lane-release"
	SignalLaneGranted = "lane-granted"
	SignalLaneQueued  = "lane-queued"
	QueryLane         = "lane"
)

// LaneID is the workflow ID of an application's lane.
func LaneID(application string) string { return "lane-" + sanitize(application) }

// LaneRequest is a release asking for, or giving back, its application's lane.
type LaneRequest struct {
	ReleaseID string    `json:"releaseId"`
	RunID     string    `json:"runId"`
	Version   string    `json:"version,omitempty"`
	At        time.Time `json:"at,omitempty"`
}

func (q LaneRequest) same(o LaneRequest) bool {
	return q.ReleaseID == o.ReleaseID && q.RunID == o.RunID
}

// LaneInput is the lane's state, carried across continue-as-new.
type LaneInput struct {
	Application string        `json:"application"`
	Holder      *LaneRequest  `json:"holder,omitempty"`
	Queue       []LaneRequest `json:"queue,omitempty"`
}

// LaneState answers QueryLane.
type LaneState struct {
	Application string        `json:"application"`
	Holder      *LaneRequest  `json:"holder,omitempty"`
	Queue       []LaneRequest `json:"queue,omitempty"`
}

// LaneQueued tells a waiting release where it stands.
type LaneQueued struct {
	Holder   string `json:"holder"`
	Position int    `json:"position"`
}

// laneHolderCheck is how often the lane checks that its holder still runs.
// A holder normally gives the lane back itself; this only bounds how long a
// terminated one blocks the application.
const laneHolderCheck = 2 * time.Minute

// laneIdle is how long an empty lane waits for a request before completing.
const laneIdle = 10 * time.Minute

// Lane runs one application's queue of releases.
func Lane(ctx workflow.Context, in *LaneInput) error {
	if in == nil || in.Application == "" {
		return temporal.NewNonRetryableApplicationError("lane needs an application", "BadInput", nil)
	}
	l := &laneImpl{state: LaneState{Application: in.Application, Holder: in.Holder, Queue: in.Queue}}
	return l.run(ctx)
}

type laneImpl struct {
	state LaneState
}

func (l *laneImpl) run(ctx workflow.Context) error {
	log := workflow.GetLogger(ctx)
	if err := workflow.SetQueryHandler(ctx, QueryLane, func() (LaneState, error) { return l.state, nil }); err != nil {
		return fmt.Errorf("set lane query: %w", err)
	}
	acquire := workflow.GetSignalChannel(ctx, SignalLaneAcquire)
	release := workflow.GetSignalChannel(ctx, SignalLaneRelease)
	for {
		l.grant(ctx)
		l.details(ctx)
		if workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			l.drain(ctx, acquire, release)
			log.Info("Lane continues as new", "holder", l.state.Holder, "queued", len(l.state.Queue))
			return workflow.NewContinueAsNewError(ctx, Lane, &LaneInput{Application: l.state.Application, Holder: l.state.Holder, Queue: l.state.Queue})
		}
		// Wake up for a signal, or to check the holder, or to end when idle.
		wait := laneIdle
		summary := "lane idle: completes unless a release asks for it"
		if l.state.Holder != nil {
			wait = laneHolderCheck
			summary = "check that " + l.state.Holder.ReleaseID + " still runs"
		}
		tctx, cancel := workflow.WithCancel(ctx)
		fired := false
		timer := workflow.NewTimerWithOptions(tctx, wait, workflow.TimerOptions{Summary: summary})
		tsel := workflow.NewSelector(ctx)
		tsel.AddFuture(timer, func(f workflow.Future) { fired = f.Get(ctx, nil) == nil })
		tsel.AddReceive(acquire, func(c workflow.ReceiveChannel, _ bool) {
			var q LaneRequest
			c.Receive(ctx, &q)
			l.enqueue(ctx, q)
		})
		tsel.AddReceive(release, func(c workflow.ReceiveChannel, _ bool) {
			var q LaneRequest
			c.Receive(ctx, &q)
			l.leave(ctx, q)
		})
		tsel.Select(ctx)
		cancel()
		if !fired {
			continue
		}
		if l.state.Holder == nil && len(l.state.Queue) == 0 {
			l.drain(ctx, acquire, release)
			if l.state.Holder == nil && len(l.state.Queue) == 0 {
				log.Info("Lane idle: completing")
				return nil
			}
			continue
		}
		if h := l.state.Holder; h != nil && !l.holderRuns(ctx, *h) {
			log.Warn("Lane holder ended without giving the lane back", "release", h.ReleaseID, "run", h.RunID)
			l.state.Holder = nil
		}
	}
}

// drain takes every signal already delivered, so that none is lost when the
// run completes or continues as new.
func (l *laneImpl) drain(ctx workflow.Context, acquire, release workflow.ReceiveChannel) {
	for {
		var q LaneRequest
		if acquire.ReceiveAsync(&q) {
			l.enqueue(ctx, q)
			continue
		}
		if release.ReceiveAsync(&q) {
			l.leave(ctx, q)
			continue
		}
		return
	}
}

func (l *laneImpl) enqueue(ctx workflow.Context, q LaneRequest) {
	if h := l.state.Holder; h != nil && h.same(q) {
		// A retried request of the holder: grant again, it may have missed it.
		l.signal(ctx, q, SignalLaneGranted, LaneQueued{Holder: q.ReleaseID})
		return
	}
	if slices.ContainsFunc(l.state.Queue, q.same) {
		return
	}
	if q.At.IsZero() {
		q.At = workflow.Now(ctx)
	}
	l.state.Queue = append(l.state.Queue, q)
	if l.state.Holder != nil {
		l.signal(ctx, q, SignalLaneQueued, LaneQueued{Holder: l.state.Holder.ReleaseID, Position: len(l.state.Queue)})
	}
}

func (l *laneImpl) leave(ctx workflow.Context, q LaneRequest) {
	if h := l.state.Holder; h != nil && h.same(q) {
		l.state.Holder = nil
		return
	}
	i := slices.IndexFunc(l.state.Queue, q.same)
	if i < 0 {
		return
	}
	l.state.Queue = slices.Delete(l.state.Queue, i, i+1)
	l.tellPositions(ctx, i)
}

// grant hands the lane to the first release in the queue when it is free.
func (l *laneImpl) grant(ctx workflow.Context) {
	for l.state.Holder == nil && len(l.state.Queue) > 0 {
		next := l.state.Queue[0]
		l.state.Queue = l.state.Queue[1:]
		if err := l.signal(ctx, next, SignalLaneGranted, LaneQueued{Holder: next.ReleaseID}).Get(ctx, nil); err != nil {
			// The release is gone (terminated while it waited): next one.
			workflow.GetLogger(ctx).Warn("Lane grant not delivered", "release", next.ReleaseID, "error", err)
			continue
		}
		l.state.Holder = &next
		l.tellPositions(ctx, 0)
	}
}

// tellPositions tells the releases queued from index from onwards where they
// now stand.
func (l *laneImpl) tellPositions(ctx workflow.Context, from int) {
	if l.state.Holder == nil {
		return
	}
	for i := from; i < len(l.state.Queue); i++ {
		l.signal(ctx, l.state.Queue[i], SignalLaneQueued, LaneQueued{Holder: l.state.Holder.ReleaseID, Position: i + 1})
	}
}

func (l *laneImpl) signal(ctx workflow.Context, q LaneRequest, name string, arg any) workflow.Future {
	return workflow.SignalExternalWorkflow(ctx, q.ReleaseID, q.RunID, name, arg)
}

func (l *laneImpl) holderRuns(ctx workflow.Context, h LaneRequest) bool {
	var a *coord.Activities
	var st coord.RunState
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		Summary:             "is " + h.ReleaseID + " still running?",
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: 5},
	})
	if err := workflow.ExecuteActivity(actx, a.Describe, coord.RunRef{WorkflowID: h.ReleaseID, RunID: h.RunID}).Get(ctx, &st); err != nil {
		// Not knowing is not proof that it ended: keep the holder.
		return true
	}
	return st.Open
}

func (l *laneImpl) details(ctx workflow.Context) {
	var b strings.Builder
	b.WriteString(fmt.Sprintf("**lane of %s**: ", l.state.Application))
	if l.state.Holder == nil {
		b.WriteString("free")
	} else {
		b.WriteString(fmt.Sprintf("held by %s", l.state.Holder.ReleaseID))
	}
	for i, q := range l.state.Queue {
		b.WriteString(fmt.Sprintf("\n%d. %s (queued %s)", i+1, q.ReleaseID, q.At.UTC().Format(time.RFC3339)))
	}
	workflow.SetCurrentDetails(ctx, b.String())
}
