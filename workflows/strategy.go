package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/keelson-dev/keelson/activities/analysis"
	"github.com/keelson-dev/keelson/activities/helm"
	"github.com/keelson-dev/keelson/activities/traffic"
	"github.com/keelson-dev/keelson/release"
)

// changeStrategies marks the runs of regions that follow a progressive
// strategy (canary, blue-green, rolling). Only inputs that carry a
// strategy reach it, and those exist only on code that has it; the marker
// records, in the history, that this code made the steps that follow.
const changeStrategies = "keelson-strategies"

// SideSuffix names the Helm release of a region's second side: the canary
// (or blue-green's preview) runs as Chart.Release+SideSuffix beside the
// stable release, for the length of the rollout. The stable release's
// history keeps one revision per version; the side's shows each rollout's
// install and uninstall.
const SideSuffix = "-canary"

// Traffic sides, the keys of the weights of a region's traffic target.
const (
	SideStable = "stable"
	SideCanary = "canary"
)

// DefaultScaleDownDelay is how long blue-green keeps the old version after
// the switch when the file does not say.
const DefaultScaleDownDelay = 30 * time.Second

// regionStep is one step of a region's rollout.
type regionStep struct {
	name string
	fn   func(workflow.Context) error
}

// sideState is what the region knows of its second side.
type sideState struct {
	// installed is set before the side's install starts: a failed install
	// may have made a revision, and the revert checks ownership anyway.
	installed bool
	revision  int
	// promoting is set once the stable release is being upgraded: from
	// then on the stable side is no longer the old version, and a failure
	// is rolled back by the release (Helm first, then traffic, then side).
	promoting bool
	removed   bool
}

// strategySteps are the steps of a region with a progressive strategy.
func (r *regionImpl) strategySteps() []regionStep {
	s := r.in.Strategy
	steps := []regionStep{{StepApply, r.apply}}
	switch s.Kind() {
	case release.StrategyCanary:
		c := s.Canary
		steps = append(steps,
			regionStep{"canary: install", func(ctx workflow.Context) error { return r.installSide(ctx, c.Values) }},
			regionStep{"canary: readiness", r.sideReady},
		)
		last := 0
		for i, cs := range c.Steps {
			label := fmt.Sprintf("canary %d/%d: %s", i+1, len(c.Steps), describeCanaryStep(cs))
			steps = append(steps, regionStep{label, func(ctx workflow.Context) error { return r.canaryStep(ctx, cs, label) }})
			if cs.SetWeight != nil {
				last = *cs.SetWeight
			}
		}
		if last != 100 {
			steps = append(steps, regionStep{"canary: set weight 100", func(ctx workflow.Context) error {
				return r.setWeights(ctx, 0, 100)
			}})
		}
		steps = append(steps, r.promoteSteps()...)
	case release.StrategyBlueGreen:
		bg := s.BlueGreen
		steps = append(steps,
			regionStep{"preview: install", func(ctx workflow.Context) error { return r.installSide(ctx, bg.Values) }},
			regionStep{"preview: readiness", r.sideReady},
		)
		if bg.PrePromotion != nil {
			steps = append(steps, regionStep{"preview: analysis", func(ctx workflow.Context) error {
				return r.analyze(ctx, bg.PrePromotion, "preview: analysis", 0)
			}})
		}
		if bg.ManualPromotion {
			steps = append(steps, regionStep{"preview: waiting for promote", func(ctx workflow.Context) error {
				return r.pause(ctx, 0, "preview: waiting for promote")
			}})
		}
		steps = append(steps,
			regionStep{"switch all traffic to preview", func(ctx workflow.Context) error { return r.setWeights(ctx, 0, 100) }},
			regionStep{"scale-down delay", func(ctx workflow.Context) error { return r.scaleDownDelay(ctx, bg) }},
		)
		steps = append(steps, r.promoteSteps()...)
	case release.StrategyRolling:
		steps = append(steps, regionStep{StepUpgrade, r.upgrade}, regionStep{StepReadiness, r.readiness})
		if a := s.Rolling.Analysis; a != nil {
			steps = append(steps, regionStep{"analysis", func(ctx workflow.Context) error {
				return r.analyze(ctx, a, "rolling: analysis", 0)
			}})
		}
	}
	return append(steps, regionStep{StepHealth, r.health}, regionStep{StepBake, r.bake})
}

// promoteSteps make the new version the stable one: the stable Helm
// release is upgraded while all traffic is on the side (already the new
// version), traffic returns to the stable side, and the side is removed.
func (r *regionImpl) promoteSteps() []regionStep {
	return []regionStep{
		{"promote: helm upgrade", func(ctx workflow.Context) error {
			r.stepping = false
			r.side.promoting = true
			return r.upgrade(ctx)
		}},
		{"promote: readiness", r.readiness},
		{"promote: traffic to stable", func(ctx workflow.Context) error { return r.setWeights(ctx, 100, 0) }},
		{"promote: remove side", func(ctx workflow.Context) error {
			if err := r.removeSide(ctx); err != nil {
				// The new version is stable and serves all traffic: a side
				// that could not be removed has no traffic, and is left for
				// a person rather than failing a good release.
				workflow.GetLogger(ctx).Warn("Could not remove the side release", "region", r.in.Region.Name, "error", err)
				r.result.SideLeft = true
			}
			return nil
		}},
	}
}

func describeCanaryStep(s release.CanaryStep) string {
	switch {
	case s.SetWeight != nil:
		return fmt.Sprintf("set weight %d", *s.SetWeight)
	case s.Pause != nil && s.Pause.Duration.Duration > 0:
		return fmt.Sprintf("pause %s", s.Pause.Duration.Duration)
	case s.Pause != nil:
		return "pause until promoted"
	case s.Analysis != nil:
		return "analysis"
	}
	return "step"
}

func (r *regionImpl) canaryStep(ctx workflow.Context, s release.CanaryStep, label string) error {
	switch {
	case s.SetWeight != nil:
		return r.setWeights(ctx, 100-*s.SetWeight, *s.SetWeight)
	case s.Pause != nil:
		return r.pause(ctx, s.Pause.Duration.Duration, label)
	case s.Analysis != nil:
		return r.analyze(ctx, s.Analysis, label, 0)
	}
	return nil
}

func (r *regionImpl) sideTarget() helm.Target {
	t := r.target()
	t.Release += SideSuffix
	return t
}

// installSide installs the new version as the region's second Helm
// release. A release of that name that Keelson did not make is left alone.
func (r *regionImpl) installSide(ctx workflow.Context, sideValues release.Values) error {
	var h *helm.Activities
	side := r.sideTarget()
	var rev helm.Revision
	opts := workflow.ActivityOptions{
		StartToCloseTimeout:    time.Minute,
		ScheduleToCloseTimeout: 10 * time.Minute,
		Summary:                fmt.Sprintf("record the Helm revision of %s in %s", side.Release, side.Region),
		RetryPolicy:            &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 15 * time.Second},
	}
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), h.Snapshot, side).Get(ctx, &rev); err != nil {
		return err
	}
	if rev.Revision > 0 && rev.ReleaseID == "" {
		return fmt.Errorf("Helm release %s in %s exists and Keelson did not make it (revision %d, %s): remove it, or rename the chart's release",
			side.Release, side.Region, rev.Revision, rev.Status)
	}
	in := helm.UpgradeInput{
		Target:       side,
		ChartPath:    r.in.Chart.Path,
		Bundle:       r.in.Bundle,
		Version:      r.in.Version,
		VersionValue: r.in.Chart.VersionValue,
		BaseValues:   r.in.Values,
		RegionValues: r.in.Region.Values,
		SideValues:   sideValues,
		ValuesFrom:   release.MergeValuesFrom(r.in.ValuesFrom, r.in.Region.ValuesFrom),
		Outputs:      r.outputs,
		OutputsValue: r.in.OutputsValue,
	}
	if r.in.Owner != nil {
		in.Owner, in.ExpectRevision = *r.in.Owner, rev.Revision
	}
	uopts := longActivity(fmt.Sprintf("helm install %s in %s at %s", side.Release, side.Region, r.in.Version), 10*time.Minute)
	uopts.ScheduleToCloseTimeout = 20 * time.Minute
	uopts.RetryPolicy.MaximumAttempts = 0
	uopts.RetryPolicy.MaximumInterval = 15 * time.Second
	r.side.installed = true
	var out helm.UpgradeResult
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, uopts), h.Upgrade, in).Get(ctx, &out); err != nil {
		return err
	}
	r.side.revision = out.Revision
	r.stepping = true
	return nil
}

func (r *regionImpl) sideReady(ctx workflow.Context) error {
	var h *helm.Activities
	timeout := r.in.Readiness
	if timeout <= 0 {
		timeout = release.DefaultReadiness
	}
	side := r.sideTarget()
	opts := longActivity(fmt.Sprintf("wait for %s in %s to be ready (%s)", side.Release, side.Region, timeout), timeout+time.Minute)
	return r.cancellable(ctx, opts, h.WaitReady, helm.WaitInput{Target: side, Revision: r.side.revision, Timeout: timeout}, nil)
}

// setWeights sends stable and canary their shares of the region's traffic
// and records what the provider read back.
func (r *regionImpl) setWeights(ctx workflow.Context, stable, canary int) error {
	w := traffic.Weights{SideStable: stable, SideCanary: canary}
	if r.in.Traffic == nil {
		r.status.Traffic = w
		r.report(ctx)
		return nil
	}
	var t *traffic.Activities
	var out traffic.SetResult
	opts := trafficOptions(fmt.Sprintf("traffic in %s: stable %d%%, canary %d%%", r.in.Region.Name, stable, canary))
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), t.SetWeights, traffic.SetInput{Target: *r.in.Traffic, Weights: w}).Get(ctx, &out); err != nil {
		return err
	}
	r.status.Traffic = out.After
	r.result.Traffic = out.After
	r.report(ctx)
	return nil
}

// trafficOptions retry a weight change quickly: it is what takes users off
// a bad version.
func trafficOptions(summary string) workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: 10 * time.Minute,
		Summary:                summary,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    500 * time.Millisecond,
			BackoffCoefficient: 2,
			MaximumInterval:    10 * time.Second,
		},
	}
}

// pause waits for d, or until promoted when d is zero. A promote ends it
// early; an abort stops the region.
func (r *regionImpl) pause(ctx workflow.Context, d time.Duration, label string) error {
	if r.advance {
		// A promote that came while no pause was running skips this one.
		r.advance = false
		return nil
	}
	if d <= 0 {
		r.status.Step = label + " (keelson promote to go on)"
		r.awaitsPerson = true
		r.report(ctx)
		err := workflow.Await(ctx, func() bool { return r.advance || r.aborted })
		r.awaitsPerson = false
		r.advance = false
		if err == nil && r.aborted {
			return errAborted
		}
		return err
	}
	wctx, cancel := workflow.WithCancel(ctx)
	r.strategyWait = cancel
	r.cancelWait = cancel
	defer func() { r.strategyWait, r.cancelWait = nil, nil }()
	err := workflow.NewTimerWithOptions(wctx, d, workflow.TimerOptions{
		Summary: fmt.Sprintf("%s in %s (%s)", label, r.in.Region.Name, r.in.Version),
	}).Get(ctx, nil)
	r.advance = false
	if r.aborted {
		return errAborted
	}
	if temporal.IsCanceledError(err) {
		return nil // promoted
	}
	return err
}

// scaleDownDelay keeps the old version after a blue-green switch, with the
// post-promotion analysis running; a rollback until it ends is a switch
// back.
func (r *regionImpl) scaleDownDelay(ctx workflow.Context, bg *release.BlueGreen) error {
	delay := bg.ScaleDownDelay.Duration
	if delay <= 0 {
		delay = DefaultScaleDownDelay
	}
	start := workflow.Now(ctx)
	if bg.PostPromotion != nil {
		if err := r.analyze(ctx, bg.PostPromotion, "post-promotion analysis", delay); err != nil {
			return err
		}
	}
	if rest := delay - workflow.Now(ctx).Sub(start); rest > 0 {
		return r.pause(ctx, rest, "scale-down delay (old version kept)")
	}
	return nil
}

// errAnalysis is an analysis that failed: the region reverts at once.
var errAnalysis = errors.New("analysis failed")

// analyze runs an analysis step's checks. A failure fails the region (it
// reverts traffic first); an inconclusive result waits for a person:
// resume accepts the new version, abort rolls it back.
func (r *regionImpl) analyze(ctx workflow.Context, step *release.AnalysisStep, label string, atLeast time.Duration) error {
	var a *analysis.Activities
	checks := make([]release.AnalysisCheck, 0, len(step.Checks))
	for _, name := range step.Checks {
		for _, c := range r.in.Analysis {
			if c.Name == name {
				checks = append(checks, c)
			}
		}
	}
	d := max(step.Duration.Duration, atLeast)
	in := analysis.RunInput{
		ReleaseID:     r.in.ReleaseID,
		Application:   r.in.Application,
		Region:        r.in.Region.Name,
		AWSRegion:     r.in.Region.AWSRegion,
		Step:          label,
		CanaryVersion: r.in.Version,
		StableVersion: r.in.StableVersion,
		Side:          SideCanary,
		Checks:        checks,
		Duration:      d,
		SamplesKey:    fmt.Sprintf("analysis/%s/%s/%s.jsonl", sanitize(r.in.ReleaseID), sanitize(r.in.Region.Name), sanitize(fmt.Sprintf("%02d-%s", len(r.result.Analysis)+1, label))),
	}
	if r.in.Strategy.Kind() == release.StrategyRolling {
		in.Side = SideStable
		in.StableVersion = r.in.Version
	}
	opts := longActivity(fmt.Sprintf("analysis of %s in %s: %s", r.in.Version, r.in.Region.Name, label), d+30*time.Minute)
	var out analysis.RunResult
	if err := r.cancellable(ctx, opts, a.Run, in, &out); err != nil {
		return err
	}
	rec := AnalysisRecord{
		Step:       label,
		Verdict:    string(out.Verdict),
		Reason:     out.Reason,
		Samples:    out.Samples,
		SamplesKey: out.SamplesKey,
		DecidedAt:  out.DecidedAt,
	}
	for _, c := range out.Checks {
		if c.Verdict != analysis.Passed {
			rec.Deciding = append(rec.Deciding, c.Deciding...)
		}
	}
	r.result.Analysis = append(r.result.Analysis, rec)
	r.status.Analysis = fmt.Sprintf("%s: %s", label, out.Verdict)
	if out.Reason != "" {
		r.status.Analysis += " (" + out.Reason + ")"
	}
	switch out.Verdict {
	case analysis.Failed:
		r.decidedAt = out.DecidedAt
		return fmt.Errorf("%w: %s", errAnalysis, out.Reason)
	case analysis.Inconclusive:
		r.paused = true
		r.status.Phase = PhasePaused
		r.status.Step = fmt.Sprintf("%s inconclusive: %s (keelson resume accepts, keelson abort rolls back)", label, out.Reason)
		r.report(ctx)
		if err := workflow.Await(ctx, func() bool { return !r.paused || r.aborted || r.advance }); err != nil {
			return err
		}
		r.paused, r.advance = false, false
		r.status.Phase = PhaseDeploying
		if r.aborted {
			return errAborted
		}
		r.result.Analysis[len(r.result.Analysis)-1].Accepted = true
		r.status.Analysis += ", accepted by a person"
	}
	r.report(ctx)
	return nil
}

// removeSide uninstalls the side release (its history is kept).
func (r *regionImpl) removeSide(ctx workflow.Context) error {
	if !r.side.installed || r.side.removed {
		return nil
	}
	var h *helm.Activities
	side := r.sideTarget()
	in := helm.RollbackInput{Target: side, Uninstall: true}
	if r.in.Owner != nil {
		in.Owner = *r.in.Owner
	}
	opts := longActivity(fmt.Sprintf("helm uninstall %s in %s", side.Release, side.Region), 5*time.Minute)
	opts.RetryPolicy.InitialInterval = 500 * time.Millisecond
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), h.Rollback, in).Get(ctx, nil); err != nil {
		return err
	}
	r.side.removed = true
	return nil
}

// revertSide takes a region that failed before its promotion back to the
// stable version: traffic first (users leave the new version in seconds),
// then the side release is removed. The stable release was never changed,
// so it is still at the revision recorded before the release.
func (r *regionImpl) revertSide(ctx workflow.Context, why string) {
	if !r.side.installed || r.side.promoting {
		return
	}
	log := workflow.GetLogger(ctx)
	ar := &AutoRollback{Reason: why, DecidedAt: r.decidedAt, Started: workflow.Now(ctx)}
	r.result.AutoRollback = ar
	r.status.Step = "reverting: traffic to stable"
	r.status.Phase = PhaseRollingBack
	r.report(ctx)
	if r.in.Traffic != nil || r.status.Traffic != nil {
		if err := r.setWeights(ctx, 100, 0); err != nil {
			log.Error("Could not send traffic back to stable", "region", r.in.Region.Name, "error", err)
			ar.Error = "traffic: " + rootCause(err).Error()
		} else {
			ar.TrafficAt = workflow.Now(ctx)
		}
	}
	r.status.Step = "reverting: remove side"
	r.report(ctx)
	if err := r.removeSide(ctx); err != nil {
		log.Error("Could not remove the side release", "region", r.in.Region.Name, "error", err)
		ar.Error = joinErr(ar.Error, "side: "+rootCause(err).Error())
		r.result.SideLeft = true
		return
	}
	ar.HelmAt = workflow.Now(ctx)
	ar.StableRevision = r.in.ExpectRevision
	r.status.Step = "reverted: traffic on stable, side removed"
}

func joinErr(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// rolling is the Helm rolling update of a region with the rolling strategy.
func (r *regionImpl) rolling() *helm.RollingUpdate {
	if r.in.Strategy.Kind() != release.StrategyRolling {
		return nil
	}
	ro := r.in.Strategy.Rolling
	u := &helm.RollingUpdate{MaxSurge: ro.MaxSurge, MaxUnavailable: ro.MaxUnavailable, MinReadySeconds: int(ro.BatchPause.Seconds())}
	if u.MaxSurge == 0 && u.MaxUnavailable == 0 {
		u.MaxSurge = max(ro.BatchSize, 1)
	}
	return u
}

// progressive completes a region's input with its strategy, traffic and
// analysis checks: the region's own strategy and traffic replace the
// application's.
func (r *releaseImpl) progressive(in *RegionInput) {
	spec := r.in.Spec
	strategy, tr := spec.Strategy, spec.Traffic
	if in.Region.Strategy != nil {
		strategy = in.Region.Strategy
	}
	if in.Region.Traffic != nil {
		tr = in.Region.Traffic
	}
	if strategy.Kind() == release.StrategyAllAtOnce {
		return
	}
	in.Strategy = strategy
	in.Analysis = spec.Analysis
	if tr != nil {
		t := traffic.SidesTarget(in.Region.AWSRegion, *tr)
		in.Traffic = &t
	}
}

// regionPaused reports whether a running region waits for a person after
// an inconclusive analysis (resume goes on).
func (r *releaseImpl) regionPaused() bool {
	for _, name := range r.runningRegions() {
		if r.regions[name].Phase == PhasePaused {
			return true
		}
	}
	return false
}

// cleanSide finishes the rollback of a region whose stable release was
// being upgraded when it failed: once the stable release is back at its
// old revision, traffic returns to it and the side release is removed.
func (r *releaseImpl) cleanSide(ctx workflow.Context, rr *RegionResult) {
	reg := r.regionSpec(rr.Region)
	in := &RegionInput{Region: reg}
	r.progressive(in)
	log := workflow.GetLogger(ctx)
	if in.Traffic != nil {
		var t *traffic.Activities
		var out traffic.SetResult
		opts := trafficOptions(fmt.Sprintf("traffic in %s: back to stable after the rollback", rr.Region))
		if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), t.SetWeights,
			traffic.SetInput{Target: *in.Traffic, Weights: traffic.Weights{SideStable: 100, SideCanary: 0}}).Get(ctx, &out); err != nil {
			log.Error("Could not send traffic back to stable", "region", rr.Region, "error", err)
			rr.Error = joinErr(rr.Error, "traffic back to stable failed: "+rootCause(err).Error())
			return
		}
		rr.Traffic = out.After
		r.regions[rr.Region].Traffic = out.After
	}
	var h *helm.Activities
	side := r.target(reg)
	side.Release += SideSuffix
	opts := longActivity(fmt.Sprintf("helm uninstall %s in %s", side.Release, side.Region), 5*time.Minute)
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), h.Rollback,
		helm.RollbackInput{Target: side, Uninstall: true, Owner: r.owner(ctx)}).Get(ctx, nil); err != nil {
		log.Error("Could not remove the side release", "region", rr.Region, "error", err)
		rr.Error = joinErr(rr.Error, "side release not removed: "+rootCause(err).Error())
		return
	}
	rr.SideLeft = false
}

// reverted reports whether a region reverted its canary or preview fully.
func (r *releaseImpl) reverted() bool {
	for _, name := range r.regionNames() {
		if rr := r.results[name]; rr != nil && rr.AutoRollback != nil && !rr.AutoRollback.HelmAt.IsZero() {
			return true
		}
	}
	return false
}
