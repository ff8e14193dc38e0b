package workflows

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/keelson-dev/keelson/activities/analysis"
	"github.com/keelson-dev/keelson/activities/traffic"
	"github.com/keelson-dev/keelson/release"
)

// Regional failover (the file's `failover`): while later waves roll out, a
// region that finished is judged by the failover check, on its stable
// side, round after round. When the check fails, the region's weighted
// record in the failover name goes to 0, so Route 53 sends its share to
// the regions that still have theirs, and the line stops: the release
// fails and rolls back as its policy says. The share comes back only when
// a person says so (`keelson traffic restore`, the TrafficRestore
// workflow); nothing in the release gives it back.

// changeFailover (safety.go) marks runs that watch finished regions.
// GetVersion is called only for files with a failover section, when their
// first region finishes: earlier code ignored that section, and its
// histories have no marker, so they replay without watching.

// failoverRound is the length of one failover analysis: long enough that
// a day-long bake adds a few hundred events, short enough that each
// round's samples make a file of readable size.
const failoverRound = 5 * time.Minute

// minRound is the shortest time between the starts of two rounds.
const minRound = time.Minute

// ViaFailover is the Via of the stop a failover makes.
const ViaFailover = "failover"

// Failover records a region losing its share of the failover name.
type Failover struct {
	Region string `json:"region"`
	Check  string `json:"check"`
	Reason string `json:"reason"`
	// DecidedAt is the deciding sample's time; TrafficAt when the weights
	// were read back with the region at 0.
	DecidedAt time.Time         `json:"decidedAt,omitempty"`
	TrafficAt time.Time         `json:"trafficAt,omitempty"`
	Before    map[string]int    `json:"before,omitempty"`
	After     map[string]int    `json:"after,omitempty"`
	Deciding  []analysis.Sample `json:"deciding,omitempty"`
	// SamplesKey is the artifact key of the round's samples.
	SamplesKey string `json:"samplesKey,omitempty"`
	// Error says why the share could not be moved (no healthy region to
	// take it, or the provider failed): the line stops anyway.
	Error string `json:"error,omitempty"`
}

// failoverState is the release's side of failover.
type failoverState struct {
	version  workflow.Version
	asked    bool
	watching int  // monitors running
	busy     bool // a failover is moving weights: one at a time
	cancel   workflow.CancelFunc
	ctx      workflow.Context
	events   []Failover
	stop     string // why the line stopped, "" when it did not
}

// watchFinished starts the failover monitor of a region that just
// finished, when the file has failover and lists the region.
func (r *releaseImpl) watchFinished(ctx workflow.Context, name string) {
	f := r.in.Spec.Failover
	if f == nil || !slices.ContainsFunc(f.Regions, func(fr release.FailoverRecord) bool { return fr.Region == name }) {
		return
	}
	fs := &r.failover
	if !fs.asked {
		fs.asked = true
		fs.version = workflow.GetVersion(ctx, changeFailover, workflow.DefaultVersion, 1)
		fs.ctx, fs.cancel = workflow.WithCancel(ctx)
	}
	if fs.version < 1 || fs.stop != "" || r.stopping(ctx) {
		return
	}
	var check release.AnalysisCheck
	for _, c := range r.in.Spec.Analysis {
		if c.Name == f.Check {
			check = c
		}
	}
	fs.watching++
	workflow.Go(fs.ctx, func(ctx workflow.Context) {
		defer func() { fs.watching-- }()
		r.watch(ctx, name, check)
	})
}

// watch judges a finished region round after round until the release
// moves on (its context is cancelled) or the check fails.
func (r *releaseImpl) watch(ctx workflow.Context, name string, check release.AnalysisCheck) {
	var a *analysis.Activities
	reg := r.regionSpec(name)
	rs := r.regions[name]
	rs.Health = fmt.Sprintf("failover check %s: watching", check.Name)
	r.details(ctx)
	for round := 1; ctx.Err() == nil; round++ {
		started := workflow.Now(ctx)
		in := analysis.RunInput{
			ReleaseID:     r.id,
			Application:   r.in.Spec.Application,
			Region:        name,
			AWSRegion:     reg.AWSRegion,
			Step:          fmt.Sprintf("failover %d", round),
			CanaryVersion: r.in.Version,
			StableVersion: r.in.Version,
			Side:          SideStable,
			Checks:        []release.AnalysisCheck{check},
			Duration:      failoverRound,
			SamplesKey:    fmt.Sprintf("analysis/%s/%s/failover-%03d.jsonl", sanitize(r.id), sanitize(name), round),
		}
		opts := longActivity(fmt.Sprintf("failover check %s of %s (round %d)", check.Name, name, round), failoverRound+10*time.Minute)
		var out analysis.RunResult
		err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), a.Run, in).Get(ctx, &out)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			// A check that cannot run at all (a template that does not
			// render) is the file's mistake: the region is no longer
			// watched, and the status says so.
			rs.Health = fmt.Sprintf("failover check %s not running: %v", check.Name, rootCause(err))
			workflow.GetLogger(ctx).Error("Failover check stopped", "region", name, "error", err)
			r.details(ctx)
			return
		}
		rs.Health = fmt.Sprintf("failover check %s round %d: %s", check.Name, round, out.Verdict)
		if out.Reason != "" {
			rs.Health += " (" + out.Reason + ")"
		}
		r.details(ctx)
		if out.Verdict == analysis.Failed {
			r.failOver(ctx, name, check.Name, out)
			return
		}
		// A round that ends early without failing (a check with no
		// duration of its own) must not turn into a busy loop of
		// activities: the next round starts no sooner than minRound after
		// this one did.
		if wait := minRound - workflow.Now(ctx).Sub(started); wait > 0 {
			if err := workflow.NewTimerWithOptions(ctx, wait, workflow.TimerOptions{Summary: "failover: next round of " + name}).Get(ctx, nil); err != nil {
				return
			}
		}
	}
}

// failOver moves a failing region's share to the others, records it and
// stops the line. The last region with a share keeps it: sending nobody
// anywhere is worse than a failing region.
func (r *releaseImpl) failOver(ctx workflow.Context, name, check string, out analysis.RunResult) {
	fs := &r.failover
	// Once decided, the share moves and the line stops even if the
	// release is finishing: this runs on a context its end does not cancel.
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	_ = workflow.Await(dctx, func() bool { return !fs.busy })
	fs.busy = true
	defer func() { fs.busy = false }()
	log := workflow.GetLogger(dctx)
	ev := Failover{Region: name, Check: check, Reason: out.Reason, DecidedAt: out.DecidedAt, SamplesKey: out.SamplesKey}
	for _, c := range out.Checks {
		if c.Verdict != analysis.Passed {
			ev.Deciding = append(ev.Deciding, c.Deciding...)
		}
	}
	var t *traffic.Activities
	target := traffic.RegionsTarget("", *r.in.Spec.Failover)
	var before traffic.Weights
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(dctx, trafficOptions("failover: read the regions' weights")), t.GetWeights, target).Get(dctx, &before)
	if err == nil {
		ev.Before = before
		others := 0
		// Counting does not depend on the order.
		//workflowcheck:ignore
		for region, w := range before {
			if region != name && w > 0 {
				others++
			}
		}
		if others == 0 {
			ev.Error = "no other region has a share to take it: the weights are kept"
		} else {
			var set traffic.SetResult
			opts := trafficOptions(fmt.Sprintf("failover: %s's share to the healthy regions", name))
			err = workflow.ExecuteActivity(workflow.WithActivityOptions(dctx, opts), t.SetWeights,
				traffic.SetInput{Target: target, Weights: traffic.Weights{name: 0}}).Get(dctx, &set)
			if err == nil {
				ev.After, ev.TrafficAt = set.After, workflow.Now(dctx)
			}
		}
	}
	if err != nil {
		ev.Error = "weights not moved: " + rootCause(err).Error()
		log.Error("Failover could not move the region's share", "region", name, "error", err)
	}
	fs.events = append(fs.events, ev)
	r.status.Failovers = fs.events

	why := fmt.Sprintf("failover: region %s failed check %s after it finished (%s)", name, check, ev.Reason)
	if ev.Error != "" {
		why += "; " + ev.Error
	} else {
		why += fmt.Sprintf("; its share moved to %s until `keelson traffic restore %s`", strings.Join(sharers(ev.After, name), ", "), name)
	}
	rs := r.regions[name]
	rs.Phase, rs.Error, rs.Step = PhaseFailed, why, "failed over"
	if rr := r.results[name]; rr != nil {
		rr.Phase, rr.Error = PhaseFailed, why
	}
	log.Warn("Failover", "region", name, "check", check, "before", ev.Before, "after", ev.After, "error", ev.Error)
	for wi, w := range r.in.Spec.Waves {
		if slices.Contains(w.Regions, name) {
			r.setWavePhase(wi, PhaseFailed)
		}
	}
	r.notify(dctx, notifyRegionFailed, why)
	r.stopLine(dctx, why)
}

// stopLine stops the release after a failover: nothing new starts, gates
// close, running regions stop at their next step, and the release fails.
// A person's abort or rollback that came first keeps its meaning.
func (r *releaseImpl) stopLine(ctx workflow.Context, why string) {
	if r.failover.stop != "" || r.abort != nil || r.manual != nil {
		return
	}
	r.failover.stop = why
	r.abort = &Control{User: "keelson", Reason: why, Via: ViaFailover}
	r.signalChildren(ctx, SignalRegionAbort, *r.abort)
	r.details(ctx)
}

// stopWatching ends the monitors when the release moves to its end: the
// regions are no longer watched once the release finishes.
func (r *releaseImpl) stopWatching(ctx workflow.Context) {
	fs := &r.failover
	if fs.cancel == nil {
		return
	}
	fs.cancel()
	_ = workflow.Await(ctx, func() bool { return fs.watching == 0 && !fs.busy })
}

// sharers are the regions with a share in w, other than name, sorted.
func sharers(w map[string]int, name string) []string {
	var out []string
	// Sorted right after.
	//workflowcheck:ignore
	for region, weight := range w {
		if region != name && weight > 0 {
			out = append(out, region)
		}
	}
	slices.Sort(out)
	return out
}
