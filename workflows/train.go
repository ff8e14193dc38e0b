package workflows

import (
	"errors"
	"fmt"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/keelson-dev/keelson/activities/train"
	"github.com/keelson-dev/keelson/identity"
	"github.com/keelson-dev/keelson/release"
)

// A train is what a schedule starts (docs/schedules.md): it resolves the
// version to release, does nothing if that version is already the
// application's last successful release, and otherwise starts the Release
// as its child and waits for it. The schedule sees the train, not the
// release, so the train lasting as long as its release is what makes the
// schedule's skip-overlap mean "no train while the last one's release runs".

// TrainWorkflow is the train's workflow type name, as registered.
const TrainWorkflow = "Train"

// QueryTrain answers the train's TrainStatus.
const QueryTrain = "train"

// Memo keys the train upserts as it learns them, so that `keelson schedule
// describe` finds a train's version and release from the service alone,
// without a worker to answer a query.
const (
	MemoTrainVersion    = "KeelsonTrainVersion"
	MemoTrainRelease    = "KeelsonTrainRelease"
	MemoTrainReleaseRun = "KeelsonTrainReleaseRun"
)

// ErrTrainVersion is the type of a train's failure to resolve its version.
const ErrTrainVersion = "TrainVersionUnresolved"

// TrainID is the workflow ID a schedule gives its trains; Temporal appends
// the scheduled time to it, so every train has its own.
func TrainID(schedule string) string { return "train-" + sanitize(schedule) }

// TrainInput is the schedule's action: everything a train needs, so that the
// schedule is self-contained and runs the same file whatever happens to the
// machine that created it.
type TrainInput struct {
	Schedule    string              `json:"schedule"`
	Spec        release.Spec        `json:"spec"`
	VersionFrom train.VersionSource `json:"versionFrom"`
	// StartedBy is who created the schedule; the release records it.
	StartedBy string `json:"startedBy,omitempty"`
	// ScheduleProof is the creator's signature over the schedule
	// (ScheduleIntent); its releases carry it as their start proof.
	ScheduleProof *identity.Proof `json:"scheduleProof,omitempty"`
	// FileDigest is the SHA-256 of the release file Spec was loaded from
	// ("sha256:…"), as in the schedule's memo.
	FileDigest string `json:"fileDigest,omitempty"`
	// Bundle is the digest of the bundle packed when the schedule was
	// made (ReleaseInput.Bundle): every train releases the same chart and
	// stack, whatever happens to the files on disk since.
	Bundle string `json:"bundle,omitempty"`
}

// TrainOutcome is what a train did.
type TrainOutcome string

const (
	// TrainReleased: the train started the release and waited for it;
	// TrainResult.Phase is how the release ended.
	TrainReleased TrainOutcome = "released"
	// TrainUpToDate: the version is already the application's last
	// successful release, so nothing was started.
	TrainUpToDate TrainOutcome = "up-to-date"
	// TrainAlreadyReleased: this version's release succeeded before but
	// something else was released since (a newer version, or an undo). A
	// train never goes back by itself; `keelson release start --rerun` does.
	TrainAlreadyReleased TrainOutcome = "already-released"
	// TrainAlreadyRunning: the release of this version was already running
	// (started from CI or by hand); the train did not start a second one.
	TrainAlreadyRunning TrainOutcome = "already-running"
)

// TrainStatus answers QueryTrain, and is the train's details.
type TrainStatus struct {
	Schedule    string `json:"schedule"`
	Application string `json:"application"`
	// Step is resolving, checking, releasing or done.
	Step         string            `json:"step"`
	Version      string            `json:"version,omitempty"`
	From         string            `json:"from"`
	Last         *train.ReleaseRef `json:"last,omitempty"`
	ReleaseID    string            `json:"releaseId,omitempty"`
	ReleaseRunID string            `json:"releaseRunId,omitempty"`
	Outcome      TrainOutcome      `json:"outcome,omitempty"`
	Phase        Phase             `json:"phase,omitempty"`
	Message      string            `json:"message,omitempty"`
	Started      time.Time         `json:"started"`
}

// Steps of a train.
const (
	TrainStepResolving = "resolving"
	TrainStepChecking  = "checking"
	TrainStepReleasing = "releasing"
	TrainStepDone      = "done"
)

// TrainResult is what a finished train returns.
type TrainResult struct {
	Schedule    string       `json:"schedule"`
	Application string       `json:"application"`
	Version     string       `json:"version"`
	Outcome     TrainOutcome `json:"outcome"`
	// Message says in one line what the train did, for people.
	Message      string `json:"message"`
	ReleaseID    string `json:"releaseId,omitempty"`
	ReleaseRunID string `json:"releaseRunId,omitempty"`
	// Phase and Reason are the release's, when the train started one.
	Phase    Phase             `json:"phase,omitempty"`
	Reason   string            `json:"reason,omitempty"`
	Last     *train.ReleaseRef `json:"last,omitempty"`
	Started  time.Time         `json:"started"`
	Finished time.Time         `json:"finished"`
}

// Train runs one train of a schedule.
func Train(ctx workflow.Context, in *TrainInput) (*TrainResult, error) {
	if in == nil || in.Schedule == "" || in.Spec.Application == "" || len(in.Spec.Waves) == 0 {
		return nil, temporal.NewNonRetryableApplicationError("train input needs a schedule name and a spec with waves", "BadInput", nil)
	}
	if err := in.VersionFrom.Validate(); err != nil {
		return nil, temporal.NewNonRetryableApplicationError("train of schedule "+in.Schedule+": "+err.Error(), "BadInput", nil)
	}
	t := &trainImpl{in: in, status: TrainStatus{
		Schedule:    in.Schedule,
		Application: in.Spec.Application,
		Step:        TrainStepResolving,
		From:        in.VersionFrom.String(),
		Started:     workflow.Now(ctx),
	}}
	if err := workflow.SetQueryHandler(ctx, QueryTrain, func() (TrainStatus, error) { return t.status, nil }); err != nil {
		return nil, fmt.Errorf("set train query: %w", err)
	}
	return t.run(ctx)
}

type trainImpl struct {
	in     *TrainInput
	status TrainStatus
}

func (t *trainImpl) run(ctx workflow.Context) (*TrainResult, error) {
	log := workflow.GetLogger(ctx)
	app := t.in.Spec.Application
	log.Info("Train started", "schedule", t.in.Schedule, "application", app, "from", t.status.From)
	t.details(ctx)

	resolved, err := t.resolve(ctx)
	if err != nil {
		t.status.Step, t.status.Message = TrainStepDone, cause(err)
		t.details(ctx)
		log.Error("Train could not resolve its version", "schedule", t.in.Schedule, "application", app, "error", err)
		return nil, err
	}
	version := resolved.Version
	t.status.Version, t.status.Step = version, TrainStepChecking
	_ = workflow.UpsertMemo(ctx, map[string]any{MemoTrainVersion: version})
	t.details(ctx)

	releaseID := ReleaseID(app, version)
	last, err := t.lastRelease(ctx, releaseID)
	if err != nil {
		t.status.Step, t.status.Message = TrainStepDone, cause(err)
		t.details(ctx)
		return nil, err
	}
	t.status.Last = last.Last
	res := &TrainResult{Schedule: t.in.Schedule, Application: app, Version: version, Last: last.Last, Started: t.status.Started}
	switch {
	case last.Last != nil && last.Last.Version == version:
		res.Outcome = TrainUpToDate
		res.Message = fmt.Sprintf("nothing to release: %s %s is already the last successful release (%s, finished %s)",
			app, version, last.Last.ReleaseID, last.Last.Finished.UTC().Format(time.RFC3339))
		return t.finish(ctx, res), nil
	case last.Same != nil:
		res.Outcome = TrainAlreadyReleased
		res.Message = fmt.Sprintf("nothing started: %s succeeded before (finished %s) and %s was released since; "+
			"a train does not go back by itself (keelson release start --rerun does)",
			releaseID, last.Same.Finished.UTC().Format(time.RFC3339), lastName(last.Last))
		return t.finish(ctx, res), nil
	}

	t.status.Step, t.status.ReleaseID = TrainStepReleasing, releaseID
	t.details(ctx)
	return t.release(ctx, res, resolved)
}

// resolve asks the version source, with retries for a source that cannot
// be reached, and turns a failure into one clear line.
func (t *trainImpl) resolve(ctx workflow.Context) (*train.ResolvedVersion, error) {
	var a *train.Activities
	src := t.in.VersionFrom
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		// The activity bounds the command itself; this covers the rest.
		StartToCloseTimeout: src.CommandTimeout() + 30*time.Second,
		Summary:             "resolve the version to release from " + src.String(),
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: 5 * time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute,
			// A source that does not answer three times is broken, not slow:
			// failing the train says so, and the schedule's next train asks again.
			MaximumAttempts: 3,
		},
	})
	var res train.ResolvedVersion
	err := workflow.ExecuteActivity(actx, a.ResolveVersion, train.ResolveVersionInput{
		Schedule: t.in.Schedule, Application: t.in.Spec.Application, Source: src,
	}).Get(ctx, &res)
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("train of schedule %s: cannot resolve the version of %s from %s: %s", t.in.Schedule, t.in.Spec.Application, src, cause(err)),
			ErrTrainVersion, err)
	}
	return &res, nil
}

func (t *trainImpl) lastRelease(ctx workflow.Context, releaseID string) (*train.LastReleaseResult, error) {
	var a *train.Activities
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		Summary:             "find the last successful release of " + t.in.Spec.Application,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: 10},
	})
	var res train.LastReleaseResult
	if err := workflow.ExecuteActivity(actx, a.LastRelease, train.LastReleaseInput{
		Application: t.in.Spec.Application, ReleaseID: releaseID,
	}).Get(ctx, &res); err != nil {
		return nil, fmt.Errorf("train of schedule %s: find the last successful release of %s: %s", t.in.Schedule, t.in.Spec.Application, cause(err))
	}
	return &res, nil
}

// release starts the release as a child and waits for it. The child runs on
// a disconnected context with ParentClosePolicy ABANDON: a train that is
// cancelled (a schedule's cancel-other overlap, a person in the Web UI) or
// terminated ends alone, because the release treats a cancel as an abort
// and rolls back; only `keelson abort` should do that.
func (t *trainImpl) release(ctx workflow.Context, res *TrainResult, resolved *train.ResolvedVersion) (*TrainResult, error) {
	log := workflow.GetLogger(ctx)
	app, version := t.in.Spec.Application, resolved.Version
	releaseID := ReleaseID(app, version)
	startedBy := t.in.StartedBy
	if startedBy == "" {
		startedBy = "schedule " + t.in.Schedule
	}
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	cctx := workflow.WithChildOptions(dctx, workflow.ChildWorkflowOptions{
		WorkflowID:        releaseID,
		ParentClosePolicy: enumspb.PARENT_CLOSE_POLICY_ABANDON,
		// A release of this version that failed, was rolled back or aborted
		// may run again; one that succeeded was caught by lastRelease.
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		// As `keelson release start` sets them: a release is searchable by
		// application, version and phase from its first moment.
		TypedSearchAttributes: temporal.NewSearchAttributes(
			temporal.NewSearchAttributeKeyKeyword(SearchAttrApplication).ValueSet(app),
			temporal.NewSearchAttributeKeyKeyword(SearchAttrVersion).ValueSet(version),
			temporal.NewSearchAttributeKeyKeyword(SearchAttrPhase).ValueSet(string(PhasePending)),
		),
		StaticSummary: fmt.Sprintf("%s %s: %s in %s (train of schedule %s)", app, version,
			countOf(len(t.in.Spec.Regions), "region"), countOf(len(t.in.Spec.Waves), "wave"), t.in.Schedule),
	})
	child := workflow.ExecuteChildWorkflow(cctx, Release, &ReleaseInput{
		Spec:       t.in.Spec,
		Bundle:     t.in.Bundle,
		Version:    version,
		StartedBy:  startedBy,
		CommitTime: resolved.CommitTime,
		Schedule:   t.in.Schedule,
		StartProof: t.in.ScheduleProof,
	})
	var started workflow.Execution
	if err := child.GetChildWorkflowExecution().Get(ctx, &started); err != nil {
		if temporal.IsWorkflowExecutionAlreadyStartedError(err) {
			res.Outcome, res.ReleaseID = TrainAlreadyRunning, releaseID
			res.Message = fmt.Sprintf("nothing started: %s is already running (started from elsewhere); keelson release watch %s", releaseID, releaseID)
			return t.finish(ctx, res), nil
		}
		err = fmt.Errorf("train of schedule %s: start %s: %s", t.in.Schedule, releaseID, cause(err))
		t.status.Step, t.status.Message = TrainStepDone, cause(err)
		t.details(ctx)
		return nil, err
	}
	res.ReleaseID, res.ReleaseRunID = releaseID, started.RunID
	t.status.ReleaseRunID = started.RunID
	_ = workflow.UpsertMemo(ctx, map[string]any{MemoTrainRelease: releaseID, MemoTrainReleaseRun: started.RunID})
	t.status.Message = "waiting for " + releaseID + ": the schedule starts no other train meanwhile (overlap skip)"
	t.details(ctx)
	log.Info("Train started its release", "schedule", t.in.Schedule, "release", releaseID, "run", started.RunID, "version", version)

	var (
		rr        ReleaseResult
		childErr  error
		cancelled bool
	)
	sel := workflow.NewSelector(ctx)
	sel.AddFuture(child, func(f workflow.Future) { childErr = f.Get(ctx, &rr) })
	sel.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) { cancelled = true })
	sel.Select(ctx)
	if cancelled {
		t.status.Step, t.status.Message = TrainStepDone, "train cancelled; "+releaseID+" goes on by itself"
		t.details(ctx)
		log.Info("Train cancelled while its release runs; the release goes on", "release", releaseID)
		return nil, temporal.NewCanceledError(t.status.Message)
	}
	if shipped, ok := ResultFromError(childErr); ok {
		// The release did not ship: it closed as Failed with its result.
		rr, childErr = *shipped, nil
	}
	if childErr != nil {
		err := fmt.Errorf("train of schedule %s: %s ended without a result: %s", t.in.Schedule, releaseID, cause(childErr))
		t.status.Step, t.status.Message = TrainStepDone, cause(err)
		t.details(ctx)
		return nil, err
	}
	res.Outcome, res.Phase, res.Reason = TrainReleased, rr.Phase, rr.Reason
	res.Message = fmt.Sprintf("released %s %s: %s", app, version, rr.Phase)
	if rr.Reason != "" {
		res.Message += " (" + rr.Reason + ")"
	}
	return t.finish(ctx, res), nil
}

// finish records the outcome in the status, the details and the log.
func (t *trainImpl) finish(ctx workflow.Context, res *TrainResult) *TrainResult {
	res.Finished = workflow.Now(ctx)
	t.status.Step, t.status.Outcome, t.status.Phase, t.status.Message = TrainStepDone, res.Outcome, res.Phase, res.Message
	t.status.ReleaseID, t.status.ReleaseRunID = res.ReleaseID, res.ReleaseRunID
	t.details(ctx)
	workflow.GetLogger(ctx).Info("Train finished", "schedule", res.Schedule, "application", res.Application,
		"version", res.Version, "outcome", res.Outcome, "release", res.ReleaseID, "phase", res.Phase, "message", res.Message)
	return res
}

// details renders the train for the Web UI.
func (t *trainImpl) details(ctx workflow.Context) {
	s := t.status
	var b strings.Builder
	b.WriteString(fmt.Sprintf("**train of schedule %s** for %s: %s", s.Schedule, s.Application, s.Step))
	if s.Outcome != "" {
		b.WriteString(" — " + string(s.Outcome))
	}
	b.WriteString("\n\n")
	version := s.Version
	if version == "" {
		version = "(not resolved yet)"
	}
	b.WriteString(fmt.Sprintf("- version: %s, from %s\n", version, s.From))
	if t.in.FileDigest != "" {
		b.WriteString(fmt.Sprintf("- release file: %s\n", t.in.FileDigest))
	}
	if s.Last != nil {
		b.WriteString(fmt.Sprintf("- last successful release: %s (%s, finished %s)\n", s.Last.ReleaseID, s.Last.Version, s.Last.Finished.UTC().Format(time.RFC3339)))
	} else if s.Step != TrainStepResolving && s.Step != TrainStepChecking {
		b.WriteString("- last successful release: none found\n")
	}
	if s.ReleaseID != "" {
		b.WriteString(fmt.Sprintf("- release: %s", s.ReleaseID))
		if s.Phase != "" {
			b.WriteString(" → " + string(s.Phase))
		}
		b.WriteString("\n")
	}
	if s.Message != "" {
		b.WriteString("\n" + s.Message + "\n")
	}
	workflow.SetCurrentDetails(ctx, b.String())
}

// cause is the message of the application error at the root of an activity
// or child failure, without the SDK's wrapping ("activity error (type: …)").
func cause(err error) string {
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		return app.Message()
	}
	var te *temporal.TimeoutError
	if errors.As(err, &te) {
		return "timed out (" + te.TimeoutType().String() + ")"
	}
	var term *temporal.TerminatedError
	if errors.As(err, &term) {
		return "terminated"
	}
	if u := errors.Unwrap(err); u != nil {
		return u.Error()
	}
	return err.Error()
}

func lastName(r *train.ReleaseRef) string {
	if r == nil {
		return "another release"
	}
	return fmt.Sprintf("%s (%s)", r.ReleaseID, r.Version)
}

func countOf(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
