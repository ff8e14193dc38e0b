package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/keelson-dev/keelson/activities/coord"
	"github.com/keelson-dev/keelson/activities/helm"
	"github.com/keelson-dev/keelson/activities/terraform"
	"github.com/keelson-dev/keelson/release"
)

// Workflow changes are guarded with workflow.GetVersion (docs/versioning.md):
// a release already running when Keelson is upgraded replays the code path
// it started on. Each change has an ID here and is never renamed or removed
// while histories that lack it may still be running.
const (
	// changeOwnership: one release per application (the lane), the Helm
	// revisions recorded before anything changes and owned by the run, a
	// cancel handled as an abort without cutting a step in half, plans
	// checked against the approved ones after a gate, rollbacks retried
	// until a deadline.
	changeOwnership = "keelson-ownership"
	// changeRollbackOrder: a release's own rollback (on failure, abort, a
	// manual rollback or a failover) goes wave by wave, the last wave
	// first, instead of every region at once.
	changeRollbackOrder = "keelson-rollback-order"
	// changeFailover: regions that finished are watched by the file's
	// failover check while later waves run (workflows/failover.go).
	changeFailover = "keelson-failover"
	// changeStopTheLine: a release subscribes to the stop-the-line switch
	// (freeze.go) when it starts, waits while a freeze holds it, and
	// unsubscribes when it finishes.
	changeStopTheLine = "keelson-stop-the-line"
	// changeWindows: waves wait for their regions' deploy windows, and
	// regions hold between steps when their window closes (hold.go).
	// Asked only by releases whose file has windows or freezes.
	changeWindows = "keelson-windows"
	// changeOutcome: a release that did not ship closes as Failed, with its
	// result as the failure's details (outcome.go).
	changeOutcome = "keelson-outcome"
	// changeLeanProgress: a region tells its release only what it needs
	// (region.go, worthTelling), not every step.
	changeLeanProgress = "keelson-lean-progress"
	// changeLeanHistory: the release talks to its lane and the stop-the-line
	// switch through local activities (a marker each, no workflow task of
	// their own), records every region's Helm revision in one activity, and
	// does not hear again from a region the phase it set when starting it.
	changeLeanHistory = "keelson-lean-history"
	// changeIdentity: the release reads the worker's access policy into
	// its history when it starts (a local activity) and refuses a start
	// whose proof does not verify or whose signer is not a starter; its
	// validators then check every answer's and control's proof
	// (identity.go). Validators do not run on replay, so only the local
	// activity and the start's refusal need the guard.
	changeIdentity = "keelson-identity"
)

// LaneWorkflow is the lane's workflow type name, as registered.
const LaneWorkflow = "Lane"

// owner is the Helm revision owner of this run of the release.
func (r *releaseImpl) owner(ctx workflow.Context) helm.Owner {
	info := workflow.GetInfo(ctx)
	return helm.Owner{ReleaseID: info.WorkflowExecution.ID, RunID: info.WorkflowExecution.RunID}
}

// watchCancel turns a cancel request (Web UI, `temporal workflow cancel`)
// into an abort. The release runs on a disconnected context, so the cancel
// interrupts nothing: the step in progress finishes, then the release rolls
// back as an abort does, and the result names who cancelled.
func (r *releaseImpl) watchCancel(ctx workflow.Context) {
	workflow.Go(ctx, func(gctx workflow.Context) {
		_ = workflow.Await(gctx, func() bool { return false })
		if r.status.Phase.Done() {
			return
		}
		dctx, _ := workflow.NewDisconnectedContext(gctx)
		who := cancelRequester(dctx)
		if r.abort != nil || r.manual != nil {
			return
		}
		r.abort = &Control{User: who, Reason: "cancel requested through Temporal", Via: "cancel"}
		workflow.GetLogger(dctx).Info("Release cancelled: handled as an abort", "by", who)
		r.signalChildren(dctx, SignalRegionAbort, *r.abort)
		r.details(dctx)
	})
}

// cancelRequester reads who asked Temporal to cancel this run.
func cancelRequester(ctx workflow.Context) string {
	var a *coord.Activities
	info := workflow.GetInfo(ctx)
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		Summary:             "who cancelled this release?",
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3},
	})
	var out coord.CancelRequest
	ref := coord.RunRef{WorkflowID: info.WorkflowExecution.ID, RunID: info.WorkflowExecution.RunID}
	if err := workflow.ExecuteActivity(actx, a.CancelRequester, ref).Get(ctx, &out); err != nil {
		return "unknown (Temporal cancel request)"
	}
	return out.Identity
}

// acquireLane queues the release in its application's lane and waits for
// its turn. It returns false when the release was stopped while queued.
func (r *releaseImpl) acquireLane(ctx workflow.Context) bool {
	var a *coord.Activities
	info := workflow.GetInfo(ctx)
	app := r.in.Spec.Application
	req := LaneRequest{ReleaseID: r.id, RunID: info.WorkflowExecution.RunID, Version: r.in.Version, At: workflow.Now(ctx)}
	r.status.Queue = &QueueStatus{}
	r.setPhase(ctx, PhaseQueued, "waiting for the lane of "+app)
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		Summary:             "queue in the lane of " + app,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 10 * time.Second},
	})
	in := coord.SignalWithStartInput{
		WorkflowID:   LaneID(app),
		WorkflowType: LaneWorkflow,
		TaskQueue:    info.TaskQueueName,
		Signal:       SignalLaneAcquire,
		Arg:          req,
		StartArg:     &LaneInput{Application: app},
		Summary:      "one release of " + app + " at a time",
	}
	r.laneAsked = true
	if err := r.coordinate(ctx, actx, a.SignalWithStart, in).Get(ctx, nil); err != nil {
		// Retried without limit: only a bug gets here.
		r.reason = fmt.Sprintf("could not queue in the lane of %s: %v", app, rootCause(err))
		return false
	}
	_ = workflow.Await(ctx, func() bool { return r.laneGranted || r.abort != nil || r.manual != nil })
	r.status.Queue = nil
	return r.laneGranted && r.abort == nil && r.manual == nil
}

// releaseLane gives the lane back (or leaves the queue). Losing the signal
// is survivable: the lane checks that its holder still runs.
func (r *releaseImpl) releaseLane(ctx workflow.Context) {
	if !r.laneAsked {
		return
	}
	info := workflow.GetInfo(ctx)
	req := LaneRequest{ReleaseID: r.id, RunID: info.WorkflowExecution.RunID}
	if r.leanHistory {
		r.farewell = append(r.farewell, coord.SignalInput{WorkflowID: LaneID(r.in.Spec.Application), Signal: SignalLaneRelease, Arg: req})
		return
	}
	if err := workflow.SignalExternalWorkflow(ctx, LaneID(r.in.Spec.Application), "", SignalLaneRelease, req).Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Warn("Lane release not delivered", "error", err)
	}
}

// snapshot records every region's Helm revision before the release changes
// anything: the revision each upgrade expects to find, and the one a
// rollback returns to.
func (r *releaseImpl) snapshot(ctx workflow.Context) error {
	var h *helm.Activities
	names := r.regionNames()
	if r.leanHistory {
		return r.snapshotAll(ctx, names)
	}
	futures := make([]workflow.Future, len(names))
	for i, name := range names {
		reg := r.regionSpec(name)
		opts := workflow.ActivityOptions{
			StartToCloseTimeout:    time.Minute,
			ScheduleToCloseTimeout: 10 * time.Minute,
			Summary:                fmt.Sprintf("record the Helm revision of %s in %s", r.in.Spec.Chart.Release, name),
			RetryPolicy:            &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 15 * time.Second},
		}
		futures[i] = workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), h.Snapshot, r.target(reg))
	}
	var errs []error
	for i, name := range names {
		var rev helm.Revision
		if err := futures[i].Get(ctx, &rev); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, rootCause(err)))
			continue
		}
		r.baseline[name] = rev
		r.regions[name].PreviousRevision = rev.Revision
	}
	r.details(ctx)
	return errors.Join(errs...)
}

// snapshotAll is snapshot in one activity (changeLeanHistory).
func (r *releaseImpl) snapshotAll(ctx workflow.Context, names []string) error {
	var h *helm.Activities
	in := helm.SnapshotAllInput{}
	for _, name := range names {
		in.Targets = append(in.Targets, r.target(r.regionSpec(name)))
	}
	opts := workflow.ActivityOptions{
		StartToCloseTimeout:    2 * time.Minute,
		ScheduleToCloseTimeout: 10 * time.Minute,
		Summary:                fmt.Sprintf("record the Helm revision of %s in %s", r.in.Spec.Chart.Release, regionList(names)),
		RetryPolicy:            &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 15 * time.Second},
	}
	var revs []helm.Revision
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), h.SnapshotAll, in).Get(ctx, &revs); err != nil {
		return rootCause(err)
	}
	if len(revs) != len(names) {
		return fmt.Errorf("snapshot returned %d revisions for %d regions", len(revs), len(names))
	}
	for i, name := range names {
		r.baseline[name] = revs[i]
		r.regions[name].PreviousRevision = revs[i].Revision
	}
	r.details(ctx)
	return nil
}

// learnRevision finds out from the cluster what a region whose workflow
// died without a result (terminated, failed by a bug) did: under
// changeLeanHistory a region does not report its new revision on its own,
// so the latest revision is read, and counts as this run's change only if
// its owner labels name this run (a revision made by hand or by another
// release is not rolled back as ours). A failed read leaves the region
// unchanged, as before the change, and says so in the region's error.
func (r *releaseImpl) learnRevision(ctx workflow.Context, res *RegionResult) {
	var h *helm.Activities
	opts := workflow.ActivityOptions{
		StartToCloseTimeout:    time.Minute,
		ScheduleToCloseTimeout: 5 * time.Minute,
		Summary:                fmt.Sprintf("read what the stopped region %s left in Helm", res.Region),
		RetryPolicy:            &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 15 * time.Second},
	}
	var rev helm.Revision
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), h.Snapshot, r.target(r.regionSpec(res.Region))).Get(ctx, &rev); err != nil {
		res.Error += fmt.Sprintf("; its Helm revision could not be read: %v", rootCause(err))
		return
	}
	o := r.owner(ctx)
	base := r.baseline[res.Region]
	if rev.Revision > base.Revision && o.Made(rev) {
		res.PreviousRevision, res.Revision, res.Changed = base.Revision, rev.Revision, true
	}
}

// regionList names a few regions and counts the rest, for summaries.
func regionList(names []string) string {
	if len(names) <= 4 {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:3], ", "), len(names)-3)
}

// coordinate runs a short call to another workflow (signal-with-start of
// the lane or the switch) as a local activity under changeLeanHistory, as
// a regular one before it.
func (r *releaseImpl) coordinate(ctx, actx workflow.Context, fn any, in any) workflow.Future {
	if !r.leanHistory {
		return workflow.ExecuteActivity(actx, fn, in)
	}
	opts := workflow.GetActivityOptions(actx)
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: opts.StartToCloseTimeout,
		RetryPolicy:         opts.RetryPolicy,
		Summary:             opts.Summary,
	})
	return workflow.ExecuteLocalActivity(lctx, fn, in)
}

// sayFarewell delivers the signals that end the release's ties (the lane
// given back, the switch unsubscribed) in one local activity.
func (r *releaseImpl) sayFarewell(ctx workflow.Context) {
	if len(r.farewell) == 0 {
		return
	}
	var a *coord.Activities
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 10 * time.Second, MaximumAttempts: 10},
		Summary:             "give the lane back and leave the stop-the-line switch",
	})
	var res coord.SignalResult
	if err := workflow.ExecuteLocalActivity(lctx, a.Signals, r.farewell).Get(ctx, &res); err != nil {
		// Survivable: the lane checks that its holder still runs.
		workflow.GetLogger(ctx).Warn("Lane release or unsubscribe not delivered", "error", err)
	}
	for _, e := range res.Errors {
		workflow.GetLogger(ctx).Info("Nobody to tell", "detail", e)
	}
	r.farewell = nil
}

// waveRegions are the regions of the wave named name, nil when there is none.
func (r *releaseImpl) waveRegions(name string) []string {
	for _, w := range r.in.Spec.Waves {
		if w.Name == name {
			return w.Regions
		}
	}
	return nil
}

func (r *releaseImpl) waveNames() []string {
	var names []string
	for _, w := range r.in.Spec.Waves {
		names = append(names, w.Name)
	}
	return names
}

func (r *releaseImpl) regionNames() []string {
	var names []string
	for _, w := range r.in.Spec.Waves {
		names = append(names, w.Regions...)
	}
	return names
}

func (r *releaseImpl) target(reg release.Region) helm.Target {
	return helm.Target{Region: reg.Name, KubeContext: reg.KubeContext, Namespace: reg.Namespace, Release: r.in.Spec.Chart.Release}
}

// verifyPlans checks, after a gate was approved, that each region's saved
// plan still applies as approved. A stale plan that does no more than the
// approved one replaces it; one that does more is returned with why, for
// the gate to open again with it.
func (r *releaseImpl) verifyPlans(ctx workflow.Context, wi int, plans map[string]*terraform.PlanResult) ([]GatePlan, error) {
	if r.leanHistory {
		return r.verifyAll(ctx, wi, plans)
	}
	var tf *terraform.Activities
	wave := r.in.Spec.Waves[wi]
	futures := make([]workflow.Future, len(wave.Regions))
	for i, name := range wave.Regions {
		p := plans[name]
		if p == nil {
			continue
		}
		opts := longActivity(fmt.Sprintf("check that the approved plan of %s still applies", name), 15*time.Minute)
		futures[i] = workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), tf.Verify, terraform.VerifyInput{Stack: r.stack(name), PlanKey: p.PlanKey})
	}
	var grown []GatePlan
	var errs []error
	for i, name := range wave.Regions {
		if futures[i] == nil {
			continue
		}
		var out terraform.VerifyResult
		if err := futures[i].Get(ctx, &out); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, rootCause(err)))
			continue
		}
		if !out.Stale || out.Plan == nil {
			continue
		}
		plans[name] = out.Plan
		r.regions[name].Step = fmt.Sprintf("re-planned %s", summaryLine(out.Plan.Summary))
		if len(out.Exceeds) > 0 {
			grown = append(grown, GatePlan{Region: name, Summary: summaryLine(out.Plan.Summary), Destroyed: out.Plan.Summary.Destroyed, Exceeds: out.Exceeds})
		}
	}
	r.details(ctx)
	return grown, errors.Join(errs...)
}

// verifyAll is verifyPlans in one activity for the wave (changeLeanHistory).
func (r *releaseImpl) verifyAll(ctx workflow.Context, wi int, plans map[string]*terraform.PlanResult) ([]GatePlan, error) {
	var tf *terraform.Activities
	wave := r.in.Spec.Waves[wi]
	var names []string
	in := terraform.VerifyAllInput{}
	for _, name := range wave.Regions {
		if p := plans[name]; p != nil {
			names = append(names, name)
			in.Inputs = append(in.Inputs, terraform.VerifyInput{Stack: r.stack(name), PlanKey: p.PlanKey})
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	opts := longActivity(fmt.Sprintf("check that the approved plans of %s still apply", regionList(names)), 15*time.Minute)
	var outs []terraform.VerifyOutcome
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), tf.VerifyAll, in).Get(ctx, &outs); err != nil {
		return nil, rootCause(err)
	}
	var grown []GatePlan
	var errs []error
	for i, name := range names {
		o := terraform.VerifyOutcome{Error: "no outcome returned"}
		if i < len(outs) {
			o = outs[i]
		}
		if o.Result == nil {
			errs = append(errs, fmt.Errorf("%s: %s", name, o.Error))
			continue
		}
		out := o.Result
		if !out.Stale || out.Plan == nil {
			continue
		}
		plans[name] = out.Plan
		r.regions[name].Step = fmt.Sprintf("re-planned %s", summaryLine(out.Plan.Summary))
		if len(out.Exceeds) > 0 {
			grown = append(grown, GatePlan{Region: name, Summary: summaryLine(out.Plan.Summary), Destroyed: out.Plan.Summary.Destroyed, Exceeds: out.Exceeds})
		}
	}
	r.details(ctx)
	return grown, errors.Join(errs...)
}

// rollbackRegion returns one region to the revision recorded before the
// release, retrying until it succeeds, a non-retryable error (a revision
// someone else made) stops it, or the deadline passes. Each failed round
// shows "rollback retrying: ERROR" in the details and notifications.
func (r *releaseImpl) rollbackRegion(ctx workflow.Context, rr *RegionResult, deadline time.Time) bool {
	return r.rollbackTo(ctx, rr, deadline, r.baseline[rr.Region].Deployed, nil)
}

// rollbackTo rolls a region back to revision target (0: uninstall), the
// latest revision being this run's own, or expect's when set (an undo).
func (r *releaseImpl) rollbackTo(ctx workflow.Context, rr *RegionResult, deadline time.Time, target int, expect *helm.Owner) bool {
	var h *helm.Activities
	name := rr.Region
	rs := r.regions[name]
	reg := r.regionSpec(name)
	in := helm.RollbackInput{Target: r.target(reg), Revision: target, Owner: r.owner(ctx), Expect: expect}
	what := fmt.Sprintf("helm rollback %s in %s to revision %d", r.in.Spec.Chart.Release, name, target)
	if target == 0 {
		if r.in.Spec.Rollback.FailedInstall == release.FailedInstallKeep {
			rr.Error = strings.TrimSpace(rr.Error + "; first install kept (rollback.failedInstall: keep)")
			rs.Step = "failed install kept"
			return false
		}
		in.Uninstall = true
		what = fmt.Sprintf("helm uninstall %s in %s (its first install failed)", r.in.Spec.Chart.Release, name)
	}
	rs.Step, rs.Phase = StepRollback, PhaseRollingBack
	r.details(ctx)
	for round := 1; ; round++ {
		opts := longActivity(what, 10*time.Minute)
		opts.RetryPolicy.MaximumAttempts = 3
		var out helm.RollbackResult
		err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), h.Rollback, in).Get(ctx, &out)
		if err == nil {
			rr.RolledBackTo = out.Revision
			rr.Phase = PhaseRolledBack
			rs.Phase, rs.Revision = PhaseRolledBack, out.Revision
			rs.Step = fmt.Sprintf("rolled back to %d", target)
			if out.Uninstalled {
				rs.Step = "uninstalled"
			}
			return true
		}
		cause := rootCause(err).Error()
		var app *temporal.ApplicationError
		final := errors.As(err, &app) && app.NonRetryable()
		if final || !workflow.Now(ctx).Before(deadline) {
			rr.Error = strings.TrimSpace(rr.Error + "; rollback failed: " + cause)
			rs.Error, rs.Step = rr.Error, "rollback failed"
			return false
		}
		rs.Step = "rollback retrying: " + cause
		r.details(ctx)
		if round == 1 || round%10 == 0 {
			r.notify(ctx, notifyRollback, fmt.Sprintf("%s: rollback retrying: %s", name, cause))
		}
		wait := min(time.Duration(round)*5*time.Second, 30*time.Second, deadline.Sub(workflow.Now(ctx)))
		_ = workflow.NewTimerWithOptions(ctx, max(wait, time.Second), workflow.TimerOptions{
			Summary: fmt.Sprintf("retry the rollback of %s in %s", name, wait),
		}).Get(ctx, nil)
	}
}

// rollbackOwned rolls back, in parallel, the regions this run changed.
func (r *releaseImpl) rollbackOwned(ctx workflow.Context, policy release.RollbackPolicy, manual bool) int {
	if policy == release.RollbackNone {
		return 0
	}
	deadline := r.in.Spec.Rollback.Deadline.Duration
	if deadline <= 0 {
		deadline = release.DefaultRollbackDeadline
	}
	until := workflow.Now(ctx).Add(deadline)
	var todo []*RegionResult
	for _, name := range r.regionNames() {
		rr := r.results[name]
		if rr == nil || (!rr.Changed && !rr.SideLeft) {
			continue
		}
		if policy == release.RollbackFailed && rr.Phase != PhaseFailed {
			continue
		}
		if manual && len(r.manual.Regions) > 0 && !slices.Contains(r.manual.Regions, name) {
			continue
		}
		todo = append(todo, rr)
	}
	if len(todo) == 0 {
		return 0
	}
	r.setPhase(ctx, PhaseRollingBack, r.reason)
	r.notify(ctx, notifyRollback, r.reason)
	// Runs from before changeRollbackOrder rolled every region back at
	// once; since, the last wave goes first, as a release is undone.
	batches := [][]*RegionResult{todo}
	if workflow.GetVersion(ctx, changeRollbackOrder, workflow.DefaultVersion, 1) >= 1 {
		batches = nil
		for wi := len(r.in.Spec.Waves) - 1; wi >= 0; wi-- {
			var batch []*RegionResult
			for _, rr := range todo {
				if slices.Contains(r.in.Spec.Waves[wi].Regions, rr.Region) {
					batch = append(batch, rr)
				}
			}
			if len(batch) > 0 {
				batches = append(batches, batch)
			}
		}
	}
	done := 0
	for _, batch := range batches {
		finished := 0
		for _, rr := range batch {
			workflow.Go(ctx, func(ctx workflow.Context) {
				ok := true
				if rr.Changed {
					ok = r.rollbackRegion(ctx, rr, until)
				}
				if ok && rr.SideLeft {
					// Traffic goes back to the stable release only once it
					// runs the old version again.
					r.cleanSide(ctx, rr)
				}
				if ok && rr.Changed {
					done++
				}
				finished++
			})
		}
		_ = workflow.Await(ctx, func() bool { return finished == len(batch) })
	}
	r.details(ctx)
	return done
}

// runUndo returns the regions the undone release changed to the revisions
// it recorded before changing them, wave by wave in reverse order, each
// wave behind its gate when the file has one that always asks. It returns
// why the undo failed, or "".
func (r *releaseImpl) runUndo(ctx workflow.Context) string {
	u := r.in.Undo
	todo := map[string]RegionResult{}
	for _, rr := range u.Regions {
		if rr.Changed && rr.RolledBackTo == 0 && (len(u.Only) == 0 || slices.Contains(u.Only, rr.Region)) {
			todo[rr.Region] = rr
		}
	}
	deadline := r.in.Spec.Rollback.Deadline.Duration
	if deadline <= 0 {
		deadline = release.DefaultRollbackDeadline
	}
	until := workflow.Now(ctx).Add(deadline)
	expect := &helm.Owner{ReleaseID: u.ReleaseID, RunID: u.RunID}
	for wi := len(r.in.Spec.Waves) - 1; wi >= 0; wi-- {
		wave := r.in.Spec.Waves[wi]
		var regions []string
		for _, name := range wave.Regions {
			if _, ok := todo[name]; ok {
				regions = append(regions, name)
			} else {
				rs := r.regions[name]
				rs.Phase, rs.Step = PhaseSucceeded, "nothing to undo"
				r.results[name] = &RegionResult{Region: name, Wave: wave.Name, Phase: PhaseSucceeded}
			}
		}
		if len(regions) == 0 {
			r.setWavePhase(wi, PhaseSucceeded)
			continue
		}
		if r.stopping(ctx) {
			return ""
		}
		if err := r.awaitResumed(ctx); err != nil {
			return ""
		}
		if wave.Gate != nil && wave.Gate.When == release.GateAlways {
			ok, err := r.runGate(ctx, wi, nil, fmt.Sprintf("undo of %s: %s back to their revisions before it", u.ReleaseID, strings.Join(regions, ", ")))
			if err != nil || !ok {
				r.setWavePhase(wi, PhaseRejected)
				return ""
			}
		}
		r.setWavePhase(wi, PhaseRollingBack)
		r.setPhase(ctx, PhaseRollingBack, fmt.Sprintf("undo of %s: wave %s", u.ReleaseID, wave.Name))
		if u.ToVersion != "" {
			if bad := r.checkUndoTargets(ctx, regions, todo); bad != "" {
				r.setWavePhase(wi, PhaseFailed)
				return bad
			}
		}
		done, finished := 0, 0
		for _, name := range regions {
			rr := &RegionResult{Region: name, Wave: wave.Name, Phase: PhaseRollingBack, Started: workflow.Now(ctx), Changed: true}
			r.results[name] = rr
			target := todo[name].PreviousRevision
			workflow.Go(ctx, func(ctx workflow.Context) {
				if r.rollbackTo(ctx, rr, until, target, expect) {
					done++
				}
				rr.Duration = workflow.Now(ctx).Sub(rr.Started)
				finished++
			})
		}
		_ = workflow.Await(ctx, func() bool { return finished == len(regions) })
		r.details(ctx)
		if done < len(regions) {
			r.setWavePhase(wi, PhaseFailed)
			var bad []string
			for _, name := range regions {
				if rr := r.results[name]; rr.Phase != PhaseRolledBack {
					bad = append(bad, name+": "+rr.Error)
				}
			}
			return "undo stopped: " + strings.Join(bad, "; ")
		}
		r.setWavePhase(wi, PhaseSucceeded)
	}
	return ""
}

// checkUndoTargets makes sure each region's recorded revision holds the
// version the person asked to return to, before anything changes.
func (r *releaseImpl) checkUndoTargets(ctx workflow.Context, regions []string, todo map[string]RegionResult) string {
	var h *helm.Activities
	var bad []string
	for _, name := range regions {
		target := todo[name].PreviousRevision
		if target == 0 {
			bad = append(bad, fmt.Sprintf("%s: %s installed the release there first; there is no %s to return to", name, r.in.Undo.ReleaseID, r.in.Undo.ToVersion))
			continue
		}
		opts := workflow.ActivityOptions{
			StartToCloseTimeout: time.Minute, ScheduleToCloseTimeout: 10 * time.Minute,
			Summary:     fmt.Sprintf("which version is revision %d in %s?", target, name),
			RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 15 * time.Second},
		}
		var hist []helm.Revision
		if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), h.History, r.target(r.regionSpec(name))).Get(ctx, &hist); err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", name, rootCause(err)))
			continue
		}
		for _, rev := range hist {
			if rev.Revision == target && rev.Version != r.in.Undo.ToVersion {
				bad = append(bad, fmt.Sprintf("%s: revision %d holds version %s, not %s", name, target, rev.Version, r.in.Undo.ToVersion))
			}
		}
	}
	if len(bad) > 0 {
		return "undo refused before any change: " + strings.Join(bad, "; ")
	}
	return ""
}
