package workflows

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/keelson-dev/keelson/activities/health"
	"github.com/keelson-dev/keelson/activities/helm"
	"github.com/keelson-dev/keelson/activities/terraform"
	"github.com/keelson-dev/keelson/activities/traffic"
	"github.com/keelson-dev/keelson/release"
)

// Signals the Release workflow sends to its RegionRollout children, and the
// one a child sends back to report progress. Children take controls as
// signals because the parent has already validated them as Updates.
const (
	SignalRegionPause    = "region-pause"
	SignalRegionResume   = "region-resume"
	SignalRegionPromote  = "region-promote"
	SignalRegionAbort    = "region-abort"
	SignalRegionProgress = "region-progress"
)

// Region steps, as shown in status and the details table.
const (
	StepPending   = "pending"
	StepPlan      = "terraform plan"
	StepApply     = "terraform apply"
	StepUpgrade   = "helm upgrade"
	StepReadiness = "readiness"
	StepHealth    = "health checks"
	StepBake      = "bake"
	StepDone      = "done"
	StepRollback  = "rollback"
)

// RegionInput is everything one region's rollout needs; the parent builds it
// from the release file so the child never reads files.
type RegionInput struct {
	ReleaseID   string         `json:"releaseId"`
	Application string         `json:"application"`
	Version     string         `json:"version"`
	Wave        string         `json:"wave"`
	Region      release.Region `json:"region"`
	Chart       release.Chart  `json:"chart"`
	// Bundle is the release's bundle digest (ReleaseInput.Bundle).
	Bundle string         `json:"bundle,omitempty"`
	Values release.Values `json:"values,omitempty"`
	// ValuesFrom is the application's list (Region has the region's): the
	// names of values the worker reads, never the values.
	ValuesFrom []release.ValueFrom `json:"valuesFrom,omitempty"`
	// Stack and PlanKey are set when the release has a Terraform stack:
	// the child applies the plan the parent made (and showed at the gate).
	Stack   *terraform.Stack `json:"stack,omitempty"`
	PlanKey string           `json:"planKey,omitempty"`
	// Plan is that plan as it was approved, for Apply to check the saved
	// file against (its digest) and to take its summary from; nil from a
	// release that started before it was passed (no command changes: the
	// Apply it goes to is the same).
	Plan         *terraform.PlanResult `json:"plan,omitempty"`
	OutputsValue string                `json:"outputsValue,omitempty"`
	Health       []release.HealthCheck `json:"health,omitempty"`
	Readiness    time.Duration         `json:"readiness"`
	Bake         time.Duration         `json:"bake"`
	// Owner is the run of the release that makes this region's revisions;
	// set by releases that started on code with changeOwnership. Then
	// ExpectRevision is the latest revision recorded before the release
	// changed anything (the upgrade refuses to go over any other), and
	// RollbackTo the revision that was deployed then.
	Owner          *helm.Owner `json:"owner,omitempty"`
	ExpectRevision int         `json:"expectRevision,omitempty"`
	RollbackTo     int         `json:"rollbackTo,omitempty"`

	// Strategy, when set, is the region's progressive strategy (canary,
	// blue-green, rolling); Traffic its stable and canary sides; Analysis
	// the file's checks, which strategy steps name; StableVersion the
	// version running before the release, for analysis queries.
	Strategy      *release.Strategy       `json:"strategy,omitempty"`
	Traffic       *traffic.Target         `json:"traffic,omitempty"`
	Analysis      []release.AnalysisCheck `json:"analysis,omitempty"`
	StableVersion string                  `json:"stableVersion,omitempty"`

	// Policy, when set, is the region's deploy windows and freezes: the
	// region holds between steps while they are closed, unless
	// WindowOverride (an approver overrode them before it started).
	Policy         *release.DeployPolicy `json:"policy,omitempty"`
	WindowOverride bool                  `json:"windowOverride,omitempty"`
	// ReleaseShows is the phase the release set for the region when it
	// started it (changeLeanHistory): the region does not tell it again.
	// Empty from releases before that change.
	ReleaseShows Phase `json:"releaseShows,omitempty"`
}

// RegionRollout changes one region: Terraform apply, Helm upgrade with the
// Terraform outputs as values, readiness, health checks, bake. It does not
// roll back: the Release workflow decides that for all regions at once, from
// the revisions this workflow reports.
func RegionRollout(ctx workflow.Context, in *RegionInput) (*RegionResult, error) {
	r := &regionImpl{in: in}
	if err := r.setup(ctx); err != nil {
		return nil, err
	}
	return r.run(ctx)
}

type regionImpl struct {
	in      *RegionInput
	owned   bool
	status  RegionStatus
	result  RegionResult
	outputs map[string]any

	paused   bool
	aborted  bool
	promoted bool
	// cancelWait cancels the activity or timer the region is waiting on
	// (readiness, health, bake) when the release is aborted or promoted.
	cancelWait workflow.CancelFunc

	// Progressive strategies (strategy.go): the second side, whether the
	// region is in the steps a promote advances (stepping), a promote not
	// yet consumed (advance), the cancel of the pause running, and the time
	// of the analysis sample that failed the region.
	side         sideState
	stepping     bool
	advance      bool
	strategyWait workflow.CancelFunc
	decidedAt    time.Time

	// Holds (hold.go): the stop-the-line switch's answer as the release
	// passes it on, and the deploy windows' override.
	hold           Hold
	windowOverride bool
	windowsAsked   bool

	// lean is set for runs with changeLeanProgress: the release is told
	// only what it needs (worthTelling); told is what it was told last.
	lean bool
	told RegionStatus
	// awaitsPerson is set while the region waits for a person's promote;
	// toldAwaits when the release was last told of such a wait.
	awaitsPerson bool
	toldAwaits   bool
}

func (r *regionImpl) setup(ctx workflow.Context) error {
	r.status = RegionStatus{Region: r.in.Region.Name, Phase: PhasePending, Step: StepPending}
	r.result = RegionResult{Region: r.in.Region.Name, Wave: r.in.Wave, Phase: PhasePending}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (RegionStatus, error) {
		return r.status, nil
	}); err != nil {
		return fmt.Errorf("set status query: %w", err)
	}
	listen := func(name string, fn func()) {
		ch := workflow.GetSignalChannel(ctx, name)
		workflow.Go(ctx, func(ctx workflow.Context) {
			for {
				var c Control
				if !ch.Receive(ctx, &c) {
					return
				}
				fn()
			}
		})
	}
	listen(SignalRegionPause, func() { r.paused = true })
	listen(SignalRegionResume, func() { r.paused = false })
	listen(SignalRegionPromote, func() {
		if r.stepping {
			// In a canary's or blue-green's steps a promote ends the
			// pause under way (or skips the next one); it does not cut
			// the bake that follows the promotion.
			r.advance = true
			if r.strategyWait != nil {
				r.strategyWait()
			}
			return
		}
		r.promoted = true
		if r.status.Step == StepBake && r.cancelWait != nil {
			r.cancelWait()
		}
	})
	r.windowOverride = r.in.WindowOverride
	listen(SignalRegionWindowOverride, func() { r.windowOverride = true })
	holds := workflow.GetSignalChannel(ctx, SignalRegionHold)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var h Hold
			if !holds.Receive(ctx, &h) {
				return
			}
			r.hold = h
		}
	})
	listen(SignalRegionAbort, func() {
		r.aborted = true
		if r.cancelWait != nil {
			r.cancelWait()
		}
	})
	return nil
}

func (r *regionImpl) run(ctx workflow.Context) (*RegionResult, error) {
	log := workflow.GetLogger(ctx)
	r.owned = workflow.GetVersion(ctx, changeOwnership, workflow.DefaultVersion, 1) >= 1 && r.in.Owner != nil
	if r.owned {
		// A cancel of this region's workflow (from the Web UI) is an abort:
		// the step in progress finishes, waits are cut short, and the
		// release rolls back what it changed.
		dctx, _ := workflow.NewDisconnectedContext(ctx)
		workflow.Go(ctx, func(gctx workflow.Context) {
			_ = workflow.Await(gctx, func() bool { return false })
			if r.aborted {
				return
			}
			r.aborted = true
			if r.cancelWait != nil {
				r.cancelWait()
			}
		})
		ctx = dctx
	}
	if r.owned {
		r.lean = workflow.GetVersion(ctx, changeLeanProgress, workflow.DefaultVersion, 1) >= 1
	}
	if r.lean && r.in.ReleaseShows != "" {
		// Decided by the input, which never changes for a run: no
		// version marker needed.
		r.told.Phase = r.in.ReleaseShows
	}
	r.result.Started = workflow.Now(ctx)
	r.status.Started = r.result.Started
	r.status.Phase = PhaseDeploying

	steps := []regionStep{
		{StepApply, r.apply},
		{StepUpgrade, r.upgrade},
		{StepReadiness, r.readiness},
		{StepHealth, r.health},
		{StepBake, r.bake},
	}
	if r.in.Strategy.Kind() != release.StrategyAllAtOnce {
		workflow.GetVersion(ctx, changeStrategies, workflow.DefaultVersion, 1)
		r.result.Strategy = string(r.in.Strategy.Kind())
		if r.owned && r.in.RollbackTo == 0 && r.in.Strategy.Kind() != release.StrategyRolling {
			// Nothing runs yet: there is no stable side to compare with or
			// to send users back to, so a first install goes all at once.
			r.result.Strategy += " (first install: all at once)"
		} else {
			steps = r.strategySteps()
		}
		r.status.Strategy = r.result.Strategy
	}
	for _, s := range steps {
		if err := r.checkpoint(ctx, s.name); err != nil {
			r.revertSide(ctx, "aborted")
			return r.finish(ctx, PhaseAborted, err), nil
		}
		if err := s.fn(ctx); err != nil {
			if r.aborted {
				r.revertSide(ctx, "aborted")
				return r.finish(ctx, PhaseAborted, errAborted), nil
			}
			log.Error("Region step failed", "region", r.in.Region.Name, "step", s.name, "error", err)
			err = fmt.Errorf("%s: %w", s.name, rootCause(err))
			r.revertSide(ctx, err.Error())
			if r.side.installed && r.side.promoting && !r.side.removed {
				// The stable release is being upgraded: the release rolls
				// it back, then sends traffic to it and removes the side.
				r.result.SideLeft = true
			}
			return r.finish(ctx, PhaseFailed, err), nil
		}
	}
	r.status.Step = StepDone
	return r.finish(ctx, PhaseSucceeded, nil), nil
}

var errAborted = errors.New("aborted")

// checkpoint is where a region stops between steps: it waits while the
// release is paused and stops when it was aborted. Steps already started
// are never interrupted half-way (a Terraform apply or Helm upgrade killed
// in the middle is worse than one that finishes).
func (r *regionImpl) checkpoint(ctx workflow.Context, step string) error {
	if r.paused {
		r.status.Phase = PhasePaused
		r.report(ctx)
		if err := workflow.Await(ctx, func() bool { return !r.paused || r.aborted }); err != nil {
			return err
		}
		r.status.Phase = PhaseDeploying
	}
	if err := r.awaitRegionHolds(ctx, step); err != nil {
		return err
	}
	if r.aborted {
		return errAborted
	}
	r.status.Step = step
	if step == StepBake {
		r.status.Phase = PhaseBaking
	}
	r.report(ctx)
	return nil
}

func (r *regionImpl) finish(ctx workflow.Context, phase Phase, err error) *RegionResult {
	now := workflow.Now(ctx)
	r.result.Phase = phase
	r.result.Duration = now.Sub(r.result.Started)
	r.status.Phase = phase
	r.status.Duration = r.result.Duration
	if err != nil {
		r.result.Error = err.Error()
		r.status.Error = err.Error()
	}
	r.report(ctx)
	res := r.result
	return &res
}

// report publishes the region's status to its own details and to the parent
// release, which keeps the table of all regions. Losing a report is harmless
// (the next one carries the full state), so the signal is not awaited.
func (r *regionImpl) report(ctx workflow.Context) {
	r.status.PreviousRevision = r.result.PreviousRevision
	r.status.Revision = r.result.Revision
	r.status.Changed = r.result.Changed
	r.status.Seq++
	workflow.SetCurrentDetails(ctx, regionDetails(r.in, r.status))
	parent := workflow.GetInfo(ctx).ParentWorkflowExecution
	if parent == nil {
		return
	}
	if r.lean && !r.worthTelling() {
		return
	}
	r.told = r.status
	workflow.SignalExternalWorkflow(ctx, parent.ID, "", SignalRegionProgress, r.status)
}

// worthTelling reports whether the region's status changed in a way the
// release needs (changeLeanProgress): a revision made (rollback depends on
// it), the phase (paused, held, baking, rolling back), users moved, an
// analysis concluded, an error. A step that merely follows another is not
// sent: the region's own details show it, and `keelson release status`
// reads it from the region (control.Client.Status). Each signal costs the
// release a history event and a workflow task.
func (r *regionImpl) worthTelling() bool {
	t, s := r.told, r.status
	// A step a person must act on (a pause until promoted), and the step
	// after it, are told: the release's status is where people look.
	person := r.awaitsPerson || r.toldAwaits || s.Phase == PhasePaused || s.Phase == PhaseHeld || s.Phase == PhaseRollingBack
	r.toldAwaits = r.awaitsPerson
	revision := s.Revision != t.Revision || s.PreviousRevision != t.PreviousRevision || s.Changed != t.Changed
	if revision && r.in.ReleaseShows != "" && r.in.Strategy == nil {
		// changeLeanHistory, one release of the whole region: the new
		// revision goes with the next phase (baking, failed) or the
		// result. A region that dies before either is looked up in its
		// cluster by the release (learnRevision), from the revision's
		// owner labels, so its rollback does not depend on this signal.
		revision = false
	}
	return s.Phase != t.Phase || revision || Weights(s.Traffic) != Weights(t.Traffic) || s.Analysis != t.Analysis ||
		s.Error != t.Error || s.Strategy != t.Strategy || (s.Step != t.Step && person)
}

func (r *regionImpl) target() helm.Target {
	return helm.Target{
		Region:      r.in.Region.Name,
		KubeContext: r.in.Region.KubeContext,
		Namespace:   r.in.Region.Namespace,
		Release:     r.in.Chart.Release,
	}
}

func (r *regionImpl) apply(ctx workflow.Context) error {
	if r.in.Stack == nil {
		return nil
	}
	var tf *terraform.Activities
	var out terraform.ApplyResult
	actx := workflow.WithActivityOptions(ctx, longActivity(fmt.Sprintf("terraform apply %s (%s)", r.in.Region.Name, r.in.Version), 30*time.Minute))
	if err := workflow.ExecuteActivity(actx, tf.Apply, terraform.ApplyInput{Stack: *r.in.Stack, PlanKey: r.in.PlanKey, Approved: r.in.Plan}).Get(ctx, &out); err != nil {
		return err
	}
	r.outputs = out.Outputs
	r.result.Terraform = summaryLine(out.Summary)
	if !out.Applied {
		r.result.Terraform += " (nothing left to apply)"
	}
	return nil
}

func (r *regionImpl) upgrade(ctx workflow.Context) error {
	var h *helm.Activities
	var out helm.UpgradeResult
	opts := longActivity(fmt.Sprintf("helm upgrade %s in %s to %s", r.in.Chart.Release, r.in.Region.Name, r.in.Version), 10*time.Minute)
	if r.owned {
		// An upgrade rides out an API server outage: it retries (every 15 s
		// at most) for as long as the schedule-to-close timeout allows.
		opts.ScheduleToCloseTimeout = 20 * time.Minute
		opts.RetryPolicy.MaximumAttempts = 0
		opts.RetryPolicy.MaximumInterval = 15 * time.Second
	}
	actx := workflow.WithActivityOptions(ctx, opts)
	in := helm.UpgradeInput{
		Target:       r.target(),
		ChartPath:    r.in.Chart.Path,
		Bundle:       r.in.Bundle,
		Version:      r.in.Version,
		VersionValue: r.in.Chart.VersionValue,
		BaseValues:   r.in.Values,
		RegionValues: r.in.Region.Values,
		ValuesFrom:   release.MergeValuesFrom(r.in.ValuesFrom, r.in.Region.ValuesFrom),
		Outputs:      r.outputs,
		OutputsValue: r.in.OutputsValue,
		Rolling:      r.rolling(),
	}
	if r.owned {
		in.Owner, in.ExpectRevision = *r.in.Owner, r.in.ExpectRevision
	}
	if err := workflow.ExecuteActivity(actx, h.Upgrade, in).Get(ctx, &out); err != nil {
		if r.owned {
			r.afterFailedUpgrade(ctx)
		}
		return err
	}
	r.result.PreviousRevision = out.PreviousRevision
	r.result.Revision = out.Revision
	// A region counts as changed when this release made its revision, and
	// also when an earlier attempt of this release did (Unchanged but
	// newer than the previous revision): both need rolling back on failure.
	r.result.Changed = out.Revision != out.PreviousRevision
	if r.owned {
		// Only a revision this run made is a change of this run: a re-run
		// that finds its version deployed changed nothing.
		r.result.Changed, r.result.PreviousRevision = out.Changed, r.in.RollbackTo
	}
	r.report(ctx)
	return nil
}

// afterFailedUpgrade learns whether the failed upgrade made a revision
// (Helm fails after it began applying objects: a hook, an object the API
// server refused). If the latest revision is this run's, the region counts
// as changed and is rolled back like any other.
func (r *regionImpl) afterFailedUpgrade(ctx workflow.Context) {
	var h *helm.Activities
	var rev helm.Revision
	opts := workflow.ActivityOptions{
		StartToCloseTimeout:    time.Minute,
		ScheduleToCloseTimeout: 10 * time.Minute,
		Summary:                fmt.Sprintf("did the failed upgrade change %s in %s?", r.in.Chart.Release, r.in.Region.Name),
		RetryPolicy:            &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 15 * time.Second},
	}
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), h.Snapshot, r.target()).Get(ctx, &rev); err != nil {
		// Not knowing: count it as changed, the rollback checks ownership.
		r.result.Changed = true
		r.result.PreviousRevision = r.in.RollbackTo
		r.report(ctx)
		return
	}
	if rev.RunID == r.in.Owner.RunID {
		r.result.Changed = true
		r.result.Revision = rev.Revision
		r.result.PreviousRevision = r.in.RollbackTo
		r.report(ctx)
	}
}

func (r *regionImpl) readiness(ctx workflow.Context) error {
	var h *helm.Activities
	timeout := r.in.Readiness
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	opts := longActivity(fmt.Sprintf("wait for %s in %s to be ready (%s)", r.in.Chart.Release, r.in.Region.Name, timeout), timeout+time.Minute)
	return r.cancellable(ctx, opts, h.WaitReady, helm.WaitInput{Target: r.target(), Revision: r.result.Revision, Timeout: timeout}, nil)
}

func (r *regionImpl) health(ctx workflow.Context) error {
	if len(r.in.Health) == 0 {
		return nil
	}
	var a *health.Activities
	var out health.CheckResult
	opts := longActivity(fmt.Sprintf("health checks of %s in %s", r.in.Application, r.in.Region.Name), 15*time.Minute)
	if err := r.cancellable(ctx, opts, a.Check, r.checkInput(0), &out); err != nil {
		return err
	}
	r.status.Health = "passing"
	r.report(ctx)
	return nil
}

// bake keeps the region running for the wave's bake time, with the health
// checks probing all along. The workflow's timer decides when the bake
// ends, so the bake time holds whatever the activity does; a failing check
// ends it early and fails the region, and a promote cuts it short.
func (r *regionImpl) bake(ctx workflow.Context) error {
	if r.in.Bake <= 0 || r.promoted {
		return nil
	}
	wctx, cancelCtx := workflow.WithCancel(ctx)
	// Once the bake is over (or promoted, or aborted), the probes are asked
	// to stop; whatever they end with after that, a timeout of an activity
	// whose worker died meanwhile included, is not a health failure.
	stopping := false
	cancel := func() { stopping = true; cancelCtx() }
	r.cancelWait = cancel
	defer func() { r.cancelWait = nil }()
	defer cancel()

	timer := workflow.NewTimerWithOptions(wctx, r.in.Bake, workflow.TimerOptions{
		Summary: fmt.Sprintf("bake %s in %s for %s", r.in.Version, r.in.Region.Name, r.in.Bake),
	})
	var probe workflow.Future
	if len(r.in.Health) > 0 {
		var a *health.Activities
		opts := longActivity(fmt.Sprintf("health checks of %s in %s while baking", r.in.Version, r.in.Region.Name), r.in.Bake+5*time.Minute)
		opts.WaitForCancellation = true
		probe = workflow.ExecuteActivity(workflow.WithActivityOptions(wctx, opts), a.Check, r.checkInput(r.in.Bake))
	}
	var bakeErr error
	timerDone, probeDone := false, probe == nil
	sel := workflow.NewSelector(ctx)
	sel.AddFuture(timer, func(f workflow.Future) {
		timerDone = true
		bakeErr = f.Get(ctx, nil)
	})
	if probe != nil {
		sel.AddFuture(probe, func(f workflow.Future) {
			probeDone = true
			var out health.CheckResult
			if err := f.Get(ctx, &out); err != nil {
				if !stopping && !timerDone && !temporal.IsCanceledError(err) {
					bakeErr = err
				}
				return
			}
			r.status.Health = fmt.Sprintf("passing (%d probes)", out.Probes)
		})
	}
	// If the checks run their course before the timer, the timer still
	// decides when the bake ends.
	for !timerDone && bakeErr == nil {
		sel.Select(ctx)
	}
	// Stop the checks and wait for them to acknowledge, so no probe of
	// this release outlives its bake.
	cancel()
	if !probeDone {
		sel.Select(ctx)
	}
	if temporal.IsCanceledError(bakeErr) {
		bakeErr = nil
		if !r.promoted || r.aborted {
			bakeErr = errAborted
		} else if r.status.Health == "" || len(r.in.Health) == 0 {
			r.status.Health = "promoted"
		}
	}
	if bakeErr == nil && len(r.in.Health) > 0 && !strings.HasPrefix(r.status.Health, "passing") {
		r.status.Health = "passing"
	}
	return bakeErr
}

// cancellable runs an activity that an abort (or, while baking, a promote)
// may cancel, and waits for it to acknowledge the cancellation.
func (r *regionImpl) cancellable(ctx workflow.Context, opts workflow.ActivityOptions, fn, arg, out any) error {
	wctx, cancel := workflow.WithCancel(ctx)
	r.cancelWait = cancel
	defer func() { r.cancelWait = nil }()
	opts.WaitForCancellation = true
	return workflow.ExecuteActivity(workflow.WithActivityOptions(wctx, opts), fn, arg).Get(wctx, out)
}

func (r *regionImpl) checkInput(d time.Duration) health.CheckInput {
	return health.CheckInput{
		Region:  r.in.Region.Name,
		Version: r.in.Version,
		Outputs: r.outputs,
		Checks:  r.in.Health,
		For:     d,
	}
}

// longActivity is the options of an activity that heartbeats: a short
// heartbeat timeout so work lost with a crashed worker is retried within
// seconds, and retries with backoff for what is worth retrying.
func longActivity(summary string, startToClose time.Duration) workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: startToClose,
		HeartbeatTimeout:    10 * time.Second,
		Summary:             summary,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    30 * time.Second,
			MaximumAttempts:    6,
		},
	}
}

func summaryLine(s terraform.Summary) string {
	return fmt.Sprintf("+%d ~%d -%d", s.Adds, s.Changes, s.Destroys)
}

// rootCause strips Temporal's wrapping ("activity error (type: …)") so that
// results and the details table show what actually went wrong.
func rootCause(err error) error {
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		return errors.New(app.Message())
	}
	var to *temporal.TimeoutError
	if errors.As(err, &to) {
		return fmt.Errorf("timed out (%s)", to.TimeoutType())
	}
	var ce *temporal.CanceledError
	if errors.As(err, &ce) {
		return errors.New("cancelled")
	}
	return err
}
