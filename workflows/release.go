package workflows

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/keelson-dev/keelson/activities/coord"
	"github.com/keelson-dev/keelson/activities/helm"
	"github.com/keelson-dev/keelson/activities/terraform"
	"github.com/keelson-dev/keelson/identity"
	"github.com/keelson-dev/keelson/release"
)

// Release runs a release of one application version across its waves:
// per wave, Terraform plans, a gate where the file asks for one, then one
// RegionRollout child per region (in parallel up to the wave's limit).
// A failing region stops the line and the regions already changed are rolled
// back as the file's policy says.
func Release(ctx workflow.Context, in *ReleaseInput) (*ReleaseResult, error) {
	r, err := newRelease(ctx, in)
	if err != nil {
		return nil, err
	}
	return r.run(ctx)
}

type releaseImpl struct {
	in      *ReleaseInput
	id      string
	status  Status
	results map[string]*RegionResult
	// regions indexes status.Waves[w].Regions[i] by region name.
	regions map[string]*RegionStatus
	// running are the children in flight, by region, so controls reach them.
	running map[string]workflow.ChildWorkflowFuture

	gate   *openGate
	abort  *Control // set by the abort Update
	manual *Control // set by the rollback Update
	reason string

	// owned is true for runs that started on code with changeOwnership:
	// they hold their application's lane, record each region's revision
	// before changing anything, and treat a cancel as an abort.
	owned       bool
	laneAsked   bool
	laneGranted bool
	baseline    map[string]helm.Revision

	failover failoverState

	// The stop-the-line switch's answer (hold), whether it came, and
	// whether the release subscribed; windows is set for runs that wait
	// for deploy windows, and windowOverride once an approver overrode them.
	hold             Hold
	holdKnown        bool
	freezeSubscribed bool
	// leanHistory is set for runs with changeLeanHistory; farewell holds
	// the signals its end sends in one local activity (sayFarewell).
	leanHistory    bool
	farewell       []coord.SignalInput
	windows        bool
	windowOverride *Approval

	// access is the application's part of the worker's access policy, nil
	// for runs that started before changeIdentity; accessPending while it
	// is being read; starter is who started the release, verified.
	access        *identity.Access
	accessPending bool
	starter       *identity.Identity

	notifier
}

// openGate is the gate waiting for an answer.
type openGate struct {
	spec   *release.Gate
	status GateStatus
	answer *Approval
}

func newRelease(ctx workflow.Context, in *ReleaseInput) (*releaseImpl, error) {
	if in == nil || in.Spec.Application == "" || in.Version == "" || len(in.Spec.Waves) == 0 {
		return nil, temporal.NewNonRetryableApplicationError("release input needs a spec with waves and a version", "BadInput", nil)
	}
	info := workflow.GetInfo(ctx)
	r := &releaseImpl{
		in:       in,
		id:       info.WorkflowExecution.ID,
		results:  map[string]*RegionResult{},
		regions:  map[string]*RegionStatus{},
		running:  map[string]workflow.ChildWorkflowFuture{},
		baseline: map[string]helm.Revision{},
	}
	r.status = Status{
		Application: in.Spec.Application,
		Version:     in.Version,
		Phase:       PhasePending,
		Started:     workflow.Now(ctx),
	}
	for _, w := range in.Spec.Waves {
		ws := WaveStatus{Name: w.Name, Phase: PhasePending}
		for _, name := range w.Regions {
			ws.Regions = append(ws.Regions, RegionStatus{Region: name, Phase: PhasePending, Step: StepPending})
		}
		r.status.Waves = append(r.status.Waves, ws)
	}
	for wi := range r.status.Waves {
		for ri := range r.status.Waves[wi].Regions {
			rs := &r.status.Waves[wi].Regions[ri]
			r.regions[rs.Region] = rs
		}
	}
	if err := r.setHandlers(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *releaseImpl) run(ctx workflow.Context) (*ReleaseResult, error) {
	log := workflow.GetLogger(ctx)
	log.Info("Release started", "application", r.in.Spec.Application, "version", r.in.Version, "startedBy", r.in.StartedBy)

	// A cancel from the UI or CLI is handled like an abort: the release
	// still rolls back and records its result, on a context that the
	// cancellation does not reach.
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	r.owned = workflow.GetVersion(ctx, changeOwnership, workflow.DefaultVersion, 1) >= 1
	if r.owned {
		// Everything runs on the disconnected context: a cancel reaches
		// the release only as an abort, between steps.
		r.watchCancel(ctx)
		ctx = dctx
	}

	// Application and version are set by the CLI at start; upserting them
	// again keeps releases started by other tools searchable too.
	_ = workflow.UpsertTypedSearchAttributes(ctx,
		temporal.NewSearchAttributeKeyKeyword(SearchAttrApplication).ValueSet(r.in.Spec.Application),
		temporal.NewSearchAttributeKeyKeyword(SearchAttrVersion).ValueSet(r.in.Version))
	if r.owned && workflow.GetVersion(ctx, changeIdentity, workflow.DefaultVersion, 1) >= 1 {
		// Before the lane, the switch or a word to Slack: a start that
		// nobody may make touches nothing.
		if refused := r.loadAccess(ctx); refused != "" {
			r.reason = refused
			r.setPhase(ctx, PhaseRejected, refused)
			return r.finish(dctx, "")
		}
	}
	r.notify(ctx, notifyStarted, "")
	failed := ""
	if r.owned {
		r.leanHistory = workflow.GetVersion(ctx, changeLeanHistory, workflow.DefaultVersion, 1) >= 1
		if workflow.GetVersion(ctx, changeStopTheLine, workflow.DefaultVersion, 1) >= 1 {
			r.subscribeFreeze(ctx)
		}
		if r.in.Spec.HasDeployPolicy() && r.in.Undo == nil {
			r.windows = workflow.GetVersion(ctx, changeWindows, workflow.DefaultVersion, 1) >= 1
		}
		if !r.acquireLane(ctx) {
			if r.abort == nil && r.manual == nil {
				failed = r.reason
			}
			return r.finish(dctx, failed)
		}
		if err := r.snapshot(ctx); err != nil {
			failed = fmt.Sprintf("could not record the Helm revisions before changing anything: %v", err)
			return r.finish(dctx, failed)
		}
		if r.in.Undo != nil {
			return r.finish(dctx, r.runUndo(ctx))
		}
	}
	for wi := range r.in.Spec.Waves {
		wave := &r.in.Spec.Waves[wi]
		if r.stopping(ctx) {
			break
		}
		if err := r.awaitResumed(ctx); err != nil {
			break
		}
		if err := r.awaitUnheld(ctx); err != nil {
			break
		}
		if err := r.awaitWindows(ctx, wi); err != nil {
			break
		}
		r.setWavePhase(wi, PhasePlanning)
		r.setPhase(ctx, PhasePlanning, fmt.Sprintf("planning wave %s", wave.Name))
		plans, err := r.plan(ctx, wi)
		if err != nil {
			failed = fmt.Sprintf("plan of wave %s failed: %v", wave.Name, rootCause(err))
			r.setWavePhase(wi, PhaseFailed)
			break
		}
		if wave.Gate != nil && gateNeeded(wave.Gate, plans) {
			ok, bad := r.gateAndVerify(ctx, wi, plans)
			if bad != "" {
				failed = bad
				r.setWavePhase(wi, PhaseFailed)
				break
			}
			if !ok {
				r.setWavePhase(wi, PhaseRejected)
				break
			}
		}
		if r.stopping(ctx) {
			break
		}
		if err := r.awaitResumed(ctx); err != nil {
			break
		}
		if err := r.awaitUnheld(ctx); err != nil {
			break
		}
		if err := r.awaitWindows(ctx, wi); err != nil {
			break
		}
		r.setWavePhase(wi, PhaseDeploying)
		r.setPhase(ctx, PhaseDeploying, fmt.Sprintf("wave %s", wave.Name))
		r.notify(ctx, notifyWave, wave.Name)
		if bad := r.runWave(ctx, wi, plans); bad != "" {
			failed = bad
			r.setWavePhase(wi, PhaseFailed)
			break
		}
		r.setWavePhase(wi, PhaseSucceeded)
	}
	if !r.owned && ctx.Err() != nil && r.abort == nil && r.manual == nil {
		r.abort = &Control{User: "temporal", Reason: "the release's workflow was cancelled"}
	}
	r.stopWatching(ctx)
	return r.finish(dctx, failed)
}

// gateAndVerify runs the wave's gate and, for owned runs, checks that the
// approved plans still apply; a plan that grew since opens the gate again
// with the new plan. It returns whether the wave may go, or why it failed.
func (r *releaseImpl) gateAndVerify(ctx workflow.Context, wi int, plans map[string]*terraform.PlanResult) (bool, string) {
	note := ""
	for {
		ok, err := r.runGate(ctx, wi, plans, note)
		if err != nil || !ok {
			return false, ""
		}
		if !r.owned || r.in.Spec.Terraform == nil || r.stopping(ctx) {
			return true, ""
		}
		grown, err := r.verifyPlans(ctx, wi, plans)
		if err != nil {
			return false, fmt.Sprintf("check of the approved plans of wave %s failed: %v", r.in.Spec.Waves[wi].Name, err)
		}
		if len(grown) == 0 {
			return true, ""
		}
		var why []string
		for _, g := range grown {
			why = append(why, g.Region+": "+strings.Join(g.Exceeds, "; "))
		}
		note = "the plan changed after approval and does more than what was approved: " + strings.Join(why, " | ")
		workflow.GetLogger(ctx).Warn("Plan grew after approval: gate opens again", "wave", r.in.Spec.Waves[wi].Name, "why", note)
	}
}

// stopping reports whether the release must not start anything new.
func (r *releaseImpl) stopping(ctx workflow.Context) bool {
	return r.abort != nil || r.manual != nil || (!r.owned && ctx.Err() != nil) || r.status.Phase == PhaseRejected
}

func (r *releaseImpl) awaitResumed(ctx workflow.Context) error {
	if !r.status.Paused {
		return nil
	}
	prev := r.status.Phase
	r.setPhase(ctx, PhasePaused, "paused")
	err := workflow.Await(ctx, func() bool { return !r.status.Paused || r.abort != nil || r.manual != nil })
	r.setPhase(ctx, prev, "")
	if err == nil && (r.abort != nil || r.manual != nil) {
		return errors.New("stopped while paused")
	}
	return err
}

// plan runs Terraform plan for every region of the wave, in parallel.
func (r *releaseImpl) plan(ctx workflow.Context, wi int) (map[string]*terraform.PlanResult, error) {
	plans := map[string]*terraform.PlanResult{}
	if r.in.Spec.Terraform == nil {
		return plans, nil
	}
	if r.leanHistory {
		return r.planAll(ctx, wi)
	}
	var tf *terraform.Activities
	wave := r.in.Spec.Waves[wi]
	futures := make([]workflow.Future, len(wave.Regions))
	for i, name := range wave.Regions {
		r.regions[name].Step = StepPlan
		opts := longActivity(fmt.Sprintf("terraform plan %s (%s)", name, r.in.Version), 15*time.Minute)
		futures[i] = workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), tf.Plan, r.planInput(wi, name))
	}
	r.details(ctx)
	var errs []error
	for i, name := range wave.Regions {
		var out terraform.PlanResult
		if err := futures[i].Get(ctx, &out); err != nil {
			r.regions[name].Phase = PhaseFailed
			r.regions[name].Error = rootCause(err).Error()
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		plans[name] = &out
		r.regions[name].Step = plannedStep(&out)
	}
	r.details(ctx)
	return plans, errors.Join(errs...)
}

// planAll is plan in one activity for the wave (changeLeanHistory).
func (r *releaseImpl) planAll(ctx workflow.Context, wi int) (map[string]*terraform.PlanResult, error) {
	var tf *terraform.Activities
	wave := r.in.Spec.Waves[wi]
	in := terraform.PlanAllInput{}
	for _, name := range wave.Regions {
		r.regions[name].Step = StepPlan
		in.Inputs = append(in.Inputs, r.planInput(wi, name))
	}
	r.details(ctx)
	opts := longActivity(fmt.Sprintf("terraform plan %s (%s)", regionList(wave.Regions), r.in.Version), 15*time.Minute)
	var outs []terraform.PlanOutcome
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), tf.PlanAll, in).Get(ctx, &outs); err != nil {
		for _, name := range wave.Regions {
			r.regions[name].Phase = PhaseFailed
			r.regions[name].Error = rootCause(err).Error()
		}
		r.details(ctx)
		return nil, err
	}
	plans := map[string]*terraform.PlanResult{}
	var errs []error
	for i, name := range wave.Regions {
		o := terraform.PlanOutcome{Error: "no outcome returned"}
		if i < len(outs) {
			o = outs[i]
		}
		if o.Result == nil {
			r.regions[name].Phase = PhaseFailed
			r.regions[name].Error = o.Error
			errs = append(errs, fmt.Errorf("%s: %s", name, o.Error))
			continue
		}
		plans[name] = o.Result
		r.regions[name].Step = plannedStep(o.Result)
	}
	r.details(ctx)
	return plans, errors.Join(errs...)
}

// planInput asks for a region's plan. Only a wave with a gate shows its
// plans before they apply: the plans of a wave without one are shown by
// their apply, beside it (PlanInput.Ungated), and apply a show sooner.
//
// No change ID: only the activity's input changes, which replay does not
// compare, and a release started before keeps working either way (Apply
// shows a plan that was not shown; docs/versioning.md).
func (r *releaseImpl) planInput(wi int, region string) terraform.PlanInput {
	return terraform.PlanInput{Stack: r.stack(region), Ungated: r.in.Spec.Waves[wi].Gate == nil}
}

// plannedStep is a planned region's step: with the plan's summary when it
// was shown.
func plannedStep(p *terraform.PlanResult) string {
	if !p.Shown() {
		return "planned"
	}
	return fmt.Sprintf("planned %s", summaryLine(p.Summary))
}

func (r *releaseImpl) stack(region string) terraform.Stack {
	spec := r.in.Spec
	reg := r.regionSpec(region)
	vars := map[string]string{}
	mergeSorted(vars, spec.Terraform.Vars)
	mergeSorted(vars, reg.TerraformVars)
	return terraform.Stack{
		Application: spec.Application,
		Version:     r.in.Version,
		Region:      region,
		Dir:         spec.Terraform.Path,
		Bundle:      r.in.Bundle,
		Vars:        vars,
	}
}

// mergeSorted copies src into dst in key order, so the workflow does not
// depend on Go's random map order (the result is the same either way, but
// workflow code keeps to one rule).
func mergeSorted(dst, src map[string]string) {
	keys := make([]string, 0, len(src))
	// Sorted right after: keys are sorted before use.
	//workflowcheck:ignore
	for k := range src {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		dst[k] = src[k]
	}
}

func (r *releaseImpl) regionSpec(name string) release.Region {
	for _, reg := range r.in.Spec.Regions {
		if reg.Name == name {
			return reg
		}
	}
	return release.Region{Name: name}
}

// gateNeeded decides from the plans whether the gate asks anything.
func gateNeeded(g *release.Gate, plans map[string]*terraform.PlanResult) bool {
	switch g.When {
	case release.GateChanges, release.GateDestroys:
		names := make([]string, 0, len(plans))
		// Sorted right after: names are sorted before use.
		//workflowcheck:ignore
		for name := range plans {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			s := plans[name].Summary
			if g.When == release.GateChanges && s.HasChanges() || g.When == release.GateDestroys && s.Destroys > 0 {
				return true
			}
		}
		return false
	}
	return true
}

// runWave starts the wave's regions as children, at most Parallelism at a
// time, and stops starting new ones as soon as one fails or the release is
// stopped. It returns why the wave failed, or "".
func (r *releaseImpl) runWave(ctx workflow.Context, wi int, plans map[string]*terraform.PlanResult) string {
	wave := r.in.Spec.Waves[wi]
	limit := wave.Parallelism
	if limit <= 0 {
		limit = len(wave.Regions)
	}
	sel := workflow.NewSelector(ctx)
	pending := slices.Clone(wave.Regions)
	inFlight := 0
	failed := ""
	for len(pending) > 0 || inFlight > 0 {
		for inFlight < limit && len(pending) > 0 && failed == "" && !r.stopping(ctx) && !r.status.Paused && !r.hold.Held {
			name := pending[0]
			pending = pending[1:]
			f := r.startRegion(ctx, wi, name, plans[name])
			inFlight++
			sel.AddFuture(f, func(f workflow.Future) {
				inFlight--
				delete(r.running, name)
				var res RegionResult
				err := f.Get(ctx, &res)
				if err != nil {
					res = RegionResult{Region: name, Wave: wave.Name, Phase: PhaseFailed, Error: rootCause(err).Error()}
				}
				if prev := r.results[name]; prev != nil && res.Revision == 0 {
					// Keep revisions reported by progress when the child died.
					res.PreviousRevision, res.Revision, res.Changed = prev.PreviousRevision, prev.Revision, prev.Changed
				}
				if err != nil && res.Revision == 0 && r.leanHistory {
					r.learnRevision(ctx, &res)
				}
				r.results[name] = &res
				rs := r.regions[name]
				rs.Phase, rs.Error, rs.Duration = res.Phase, res.Error, res.Duration
				if res.Phase == PhaseSucceeded {
					rs.Step = StepDone
				}
				if ar := res.AutoRollback; ar != nil && !ar.HelmAt.IsZero() {
					// The region reverted by itself: its last progress
					// report was sent before the side was removed.
					rs.Phase, rs.Step = PhaseRolledBack, "reverted: traffic on stable, side removed"
					rs.Traffic = res.Traffic
				}
				rs.PreviousRevision, rs.Revision = res.PreviousRevision, res.Revision
				if r.owned && res.Phase == PhaseAborted && r.abort == nil && r.manual == nil && failed == "" {
					// The region's own workflow was cancelled (from the Web
					// UI): the whole release stops as an abort.
					r.abort = &Control{User: "temporal", Reason: fmt.Sprintf("region %s was cancelled: %s", name, res.Error), Via: "cancel"}
					r.signalChildren(ctx, SignalRegionAbort, *r.abort)
				}
				if res.Phase == PhaseFailed && failed == "" {
					failed = fmt.Sprintf("region %s failed: %s", name, res.Error)
					r.notify(ctx, notifyRegionFailed, failed)
					// Stop the line: siblings still running stop at their next step.
					r.signalChildren(ctx, SignalRegionAbort, Control{Reason: failed})
				} else if res.Phase == PhaseSucceeded {
					r.notify(ctx, notifyRegionDone, name)
					if r.owned {
						r.watchFinished(ctx, name)
					}
				}
				r.details(ctx)
			})
		}
		if inFlight == 0 {
			if len(pending) == 0 || failed != "" || r.stopping(ctx) {
				break
			}
			// Paused or held between two regions of the wave.
			if err := r.awaitResumed(ctx); err != nil {
				break
			}
			if err := r.awaitUnheld(ctx); err != nil {
				break
			}
			continue
		}
		sel.Select(ctx)
	}
	if failed == "" && r.abort != nil {
		return ""
	}
	return failed
}

func (r *releaseImpl) startRegion(ctx workflow.Context, wi int, name string, plan *terraform.PlanResult) workflow.ChildWorkflowFuture {
	spec := r.in.Spec
	wave := spec.Waves[wi]
	in := &RegionInput{
		ReleaseID:   r.id,
		Application: spec.Application,
		Version:     r.in.Version,
		Wave:        wave.Name,
		Region:      r.regionSpec(name),
		Chart:       spec.Chart,
		Bundle:      r.in.Bundle,
		Values:      spec.Values,
		ValuesFrom:  spec.ValuesFrom,
		Health:      spec.Health,
		Readiness:   spec.Readiness.Timeout.Duration,
		Bake:        wave.Bake.Duration,
	}
	if spec.Terraform != nil {
		st := r.stack(name)
		in.Stack = &st
		in.OutputsValue = spec.Terraform.OutputsValue
		if plan != nil {
			in.PlanKey, in.Plan = plan.PlanKey, plan
		}
	}
	if r.owned {
		o := r.owner(ctx)
		in.Owner = &o
		base := r.baseline[name]
		in.ExpectRevision, in.RollbackTo = base.Revision, base.Deployed
		in.StableVersion = base.Version
	}
	r.progressive(in)
	in.Policy = r.regionPolicy(name)
	in.WindowOverride = r.windowOverride != nil
	if r.leanHistory {
		in.ReleaseShows = PhaseDeploying
	}
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:        RegionID(r.id, name),
		StaticSummary:     fmt.Sprintf("%s %s in %s (wave %s)", spec.Application, r.in.Version, name, wave.Name),
		ParentClosePolicy: enumspb.PARENT_CLOSE_POLICY_TERMINATE,
		// Children that crash or hit a bug are retried by Temporal as
		// activities are; the child itself never fails for business reasons.
		WaitForCancellation: true,
	})
	rs := r.regions[name]
	rs.Phase, rs.Step, rs.Started = PhaseDeploying, StepPending, workflow.Now(ctx)
	f := workflow.ExecuteChildWorkflow(cctx, RegionRollout, in)
	r.running[name] = f
	// A pause or abort that arrived before the child started must reach it.
	if r.status.Paused {
		f.SignalChildWorkflow(ctx, SignalRegionPause, Control{})
	}
	if r.hold.Held {
		f.SignalChildWorkflow(ctx, SignalRegionHold, r.hold)
	}
	r.details(ctx)
	return f
}

// signalChildren sends a control to every running region, in region order.
func (r *releaseImpl) signalChildren(ctx workflow.Context, name string, c Control) {
	for _, region := range r.runningRegions() {
		if len(c.Regions) > 0 && !slices.Contains(c.Regions, region) {
			continue
		}
		r.running[region].SignalChildWorkflow(ctx, name, c)
	}
}

func (r *releaseImpl) runningRegions() []string {
	names := make([]string, 0, len(r.running))
	// Sorted right after: names are sorted before use.
	//workflowcheck:ignore
	for name := range r.running {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// finish rolls back what the policy says, records the result and the
// final phase. It runs on a disconnected context so that a cancelled
// release still cleans up after itself.
func (r *releaseImpl) finish(ctx workflow.Context, failed string) (*ReleaseResult, error) {
	phase := PhaseSucceeded
	policy := r.in.Spec.Rollback.Policy
	if policy == "" {
		policy = release.RollbackAuto
	}
	if r.in.Undo != nil {
		// An undo that fails part-way stops; it never undoes itself.
		policy = release.RollbackNone
	}
	switch {
	case r.manual != nil:
		phase, r.reason = PhaseRolledBack, fmt.Sprintf("rollback requested by %s: %s", r.manual.User, r.manual.Reason)
		policy = release.RollbackAuto
	case r.failover.stop != "":
		phase, r.reason = PhaseFailed, r.failover.stop
	case r.abort != nil:
		phase, r.reason = PhaseAborted, fmt.Sprintf("aborted by %s: %s", r.abort.User, r.abort.Reason)
	case r.status.Phase == PhaseRejected:
		phase = PhaseRejected
	case failed != "":
		phase, r.reason = PhaseFailed, failed
	}
	if phase == PhaseFailed || phase == PhaseAborted || phase == PhaseRolledBack {
		rollback := r.rollback
		if r.owned {
			rollback = r.rollbackOwned
		}
		if n := rollback(ctx, policy, phase == PhaseRolledBack); n > 0 && phase == PhaseFailed {
			phase = PhaseRolledBack
		}
		if phase == PhaseFailed && r.reverted() {
			// A canary or preview that reverted by itself (traffic on
			// stable, side removed) is rolled back too.
			phase = PhaseRolledBack
		}
	}
	if r.owned {
		r.releaseLane(ctx)
		r.unsubscribeFreeze(ctx)
		r.sayFarewell(ctx)
	}
	r.status.Gate = nil
	r.setPhase(ctx, phase, r.reason)
	r.notify(ctx, notifyFinished, r.reason)
	r.drain(ctx)

	res := &ReleaseResult{
		ReleaseID:   r.id,
		Application: r.in.Spec.Application,
		Version:     r.in.Version,
		Phase:       phase,
		Reason:      r.reason,
		Started:     r.status.Started,
		Finished:    workflow.Now(ctx),
		Approvals:   r.status.Approvals,
		Failovers:   r.failover.events,
	}
	for _, w := range r.in.Spec.Waves {
		for _, name := range w.Regions {
			if rr := r.results[name]; rr != nil {
				res.Regions = append(res.Regions, *rr)
				continue
			}
			res.Regions = append(res.Regions, RegionResult{Region: name, Wave: w.Name, Phase: PhasePending, Error: "not started"})
		}
	}
	workflow.GetLogger(ctx).Info("Release finished", "phase", phase, "reason", r.reason)
	return closeWith(ctx, res)
}

// rollback returns changed regions to the revision recorded before the
// upgrade, in parallel, and reports how many it rolled back. Terraform is
// never rolled back here: the file has no way yet to say how, and
// infrastructure is not rolled back silently.
func (r *releaseImpl) rollback(ctx workflow.Context, policy release.RollbackPolicy, manual bool) int {
	if policy == release.RollbackNone {
		return 0
	}
	var h *helm.Activities
	type job struct {
		rr *RegionResult
		f  workflow.Future
	}
	var jobs []job
	for _, w := range r.in.Spec.Waves {
		for _, name := range w.Regions {
			rr := r.results[name]
			if rr == nil || !rr.Changed || rr.PreviousRevision == 0 {
				continue
			}
			if policy == release.RollbackFailed && rr.Phase != PhaseFailed {
				continue
			}
			if manual && len(r.manual.Regions) > 0 && !slices.Contains(r.manual.Regions, name) {
				continue
			}
			reg := r.regionSpec(name)
			r.regions[name].Step = StepRollback
			r.regions[name].Phase = PhaseRollingBack
			opts := longActivity(fmt.Sprintf("helm rollback %s in %s to revision %d", r.in.Spec.Chart.Release, name, rr.PreviousRevision), 10*time.Minute)
			f := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), h.Rollback, helm.RollbackInput{
				Target:   helm.Target{Region: name, KubeContext: reg.KubeContext, Namespace: reg.Namespace, Release: r.in.Spec.Chart.Release},
				Revision: rr.PreviousRevision,
			})
			jobs = append(jobs, job{rr, f})
		}
	}
	if len(jobs) == 0 {
		return 0
	}
	r.setPhase(ctx, PhaseRollingBack, r.reason)
	r.notify(ctx, notifyRollback, r.reason)
	done := 0
	for _, j := range jobs {
		var out helm.RollbackResult
		rs := r.regions[j.rr.Region]
		if err := j.f.Get(ctx, &out); err != nil {
			j.rr.Error = strings.TrimSpace(j.rr.Error + "; rollback failed: " + rootCause(err).Error())
			rs.Error = j.rr.Error
			rs.Step = "rollback failed"
			continue
		}
		j.rr.RolledBackTo = out.Revision
		j.rr.Phase = PhaseRolledBack
		rs.Phase, rs.Step, rs.Revision = PhaseRolledBack, fmt.Sprintf("rolled back to %d", j.rr.PreviousRevision), out.Revision
		done++
	}
	r.details(ctx)
	return done
}

func (r *releaseImpl) setWavePhase(wi int, p Phase) {
	r.status.Waves[wi].Phase = p
}

// setPhase records the release's phase in status, search attributes and the
// details shown by the Web UI.
func (r *releaseImpl) setPhase(ctx workflow.Context, p Phase, msg string) {
	changed := r.status.Phase != p
	r.status.Phase = p
	if msg != "" || p.Done() {
		r.status.Message = msg
	}
	if changed {
		_ = workflow.UpsertTypedSearchAttributes(ctx, temporal.NewSearchAttributeKeyKeyword(SearchAttrPhase).ValueSet(string(p)))
	}
	r.details(ctx)
}

func (r *releaseImpl) details(ctx workflow.Context) {
	workflow.SetCurrentDetails(ctx, releaseDetails(&r.status))
}
