// Package control is how people's tools talk to releases: the keelson CLI
// and the worker's Slack handler start releases, answer gates, pause, abort,
// promote and roll back through it, and read status. It hides Temporal's
// option structs and turns service errors into one line a person reads.
package control

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/keelson-dev/keelson/identity"
	"github.com/keelson-dev/keelson/release"
	"github.com/keelson-dev/keelson/workflows"
)

// Client acts on releases. T is a connected Temporal client (see Dial).
type Client struct {
	T         client.Client
	Namespace string
	TaskQueue string
	// UIBaseURL is the Temporal Web UI, for links: http://localhost:8233.
	UIBaseURL string
	// Address is the Temporal frontend, only for messages.
	Address string
	// DataConverter is the one T was dialled with (control.DialOptions),
	// for the payloads read from histories and memos; the SDK's default
	// when nil. With encrypted payloads (package codec) it must be set.
	DataConverter converter.DataConverter
	// Signer, when set, signs every start, answer, control and override
	// (package identity): workers with an access policy refuse them
	// unsigned.
	Signer *identity.Signer
}

// converter is c's data converter.
func (c *Client) converter() converter.DataConverter {
	if c.DataConverter != nil {
		return c.DataConverter
	}
	return converter.GetDefaultDataConverter()
}

// StartResult tells which release run a start returned.
type StartResult struct {
	ReleaseID string
	RunID     string
	// Existing is true when the release was already running and this call
	// returned it instead of starting another.
	Existing bool
	URL      string
}

// StartOptions are the choices of `keelson release start`.
type StartOptions struct {
	StartedBy string
	// CommitTime is when the released change was committed (DORA's lead time).
	CommitTime time.Time
	// Schedule names the schedule that started the release, if any.
	Schedule string
	// Rerun allows starting again a release that already succeeded.
	Rerun bool
	// Supersede aborts the application's running release (and those
	// queued before this one) so that this one goes next.
	Supersede bool
	// Bundle is the digest of the bundle spec's paths are in (uploaded to
	// the workers' artifact store: see bundle.ForSpec).
	Bundle string
}

// Start starts the release of spec at version, or returns the run already
// going for the same application and version: a CI job that retries must not
// deploy twice. A release that already succeeded is refused unless
// opts.Rerun; one that failed, was rolled back, rejected or aborted may be
// started again.
func (c *Client) Start(ctx context.Context, spec *release.Spec, version string, opts StartOptions) (StartResult, error) {
	if spec == nil {
		return StartResult{}, errors.New("start: no release spec")
	}
	id := workflows.ReleaseID(spec.Application, version)
	o := op{name: "start", releaseID: id}

	// Ask first which run, if any, is going: used only when the connection
	// was not made by Dial and so cannot report whether Start started.
	runningBefore := ""
	if d, err := c.T.DescribeWorkflowExecution(ctx, id, ""); err == nil {
		info := d.GetWorkflowExecutionInfo()
		switch info.GetStatus() {
		case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
			runningBefore = info.GetExecution().GetRunId()
		case enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
			if !opts.Rerun {
				if res, err := c.Result(ctx, id); err == nil && res.Phase == workflows.PhaseSucceeded {
					return StartResult{}, &Error{Kind: ErrRefused, Message: fmt.Sprintf(
						"start %s: this release already succeeded (finished %s, run %s); pass --rerun to release %s %s again",
						id, res.Finished.UTC().Format("2006-01-02 15:04:05Z"), info.GetExecution().GetRunId(), spec.Application, version)}
				}
			}
		}
	} else if !isNotFound(err) {
		return StartResult{}, c.translate(o, err)
	}
	if opts.Supersede && runningBefore == "" {
		if err := c.supersede(ctx, spec.Application, id, opts.StartedBy); err != nil {
			return StartResult{}, err
		}
	}
	sopts := c.startOptions(id, spec.Application, version, Summary(spec, version))
	in := &workflows.ReleaseInput{Spec: *spec, Version: version, Bundle: opts.Bundle, StartedBy: opts.StartedBy, CommitTime: opts.CommitTime, Schedule: opts.Schedule}
	if err := c.signStart(id, in); err != nil {
		return StartResult{}, err
	}

	probe := &startProbe{}
	run, err := c.T.ExecuteWorkflow(withStartProbe(ctx, probe), sopts, workflows.Release, in)
	if err != nil {
		return StartResult{}, c.translate(o, err)
	}
	res := StartResult{ReleaseID: id, RunID: run.GetRunID(), URL: c.URL(id)}
	if probe.seen {
		res.Existing = !probe.started
	} else {
		res.Existing = runningBefore != "" && runningBefore == res.RunID
	}
	return res, nil
}

// startOptions start a release workflow, or find the run already going:
// a second start of the same ID returns it (a CI retry), and an ID whose
// run finished may start again (Start decides whether it may).
func (c *Client) startOptions(id, application, version, summary string) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID:                       id,
		TaskQueue:                c.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			temporal.NewSearchAttributeKeyKeyword(workflows.SearchAttrApplication).ValueSet(application),
			temporal.NewSearchAttributeKeyKeyword(workflows.SearchAttrVersion).ValueSet(version),
			temporal.NewSearchAttributeKeyKeyword(workflows.SearchAttrPhase).ValueSet(string(workflows.PhasePending)),
		),
		StaticSummary: summary,
	}
}

// supersede aborts the release holding the application's lane and those
// queued in it, so that the release started next goes first. Each abort
// rolls back as the file's policy says; the new release then waits in the
// lane until they have finished.
func (c *Client) supersede(ctx context.Context, application, by, user string) error {
	lane, err := c.Lane(ctx, application)
	if err != nil {
		return err
	}
	if lane == nil {
		return nil
	}
	var ids []string
	if lane.Holder != nil {
		ids = append(ids, lane.Holder.ReleaseID)
	}
	for _, q := range lane.Queue {
		ids = append(ids, q.ReleaseID)
	}
	for _, rid := range ids {
		if rid == by {
			continue
		}
		ctl := workflows.Control{User: user, Reason: "superseded by " + by, Via: "cli"}
		if err := c.Control(ctx, rid, workflows.UpdateAbort, ctl); err != nil {
			var e *Error
			if errors.As(err, &e) && e.Kind == ErrRefused {
				continue // finished or already stopping meanwhile
			}
			return fmt.Errorf("supersede %s: %w", rid, err)
		}
	}
	return nil
}

// Lane returns the application's lane: which release holds it and which
// wait. Nil when the application has no lane open (nothing running).
func (c *Client) Lane(ctx context.Context, application string) (*workflows.LaneState, error) {
	id := workflows.LaneID(application)
	v, err := c.T.QueryWorkflow(ctx, id, "", workflows.QueryLane)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		var qf *serviceerror.QueryFailed
		if errors.As(err, &qf) && strings.Contains(qf.Error(), "closed") {
			return nil, nil
		}
		return nil, c.translate(op{name: "lane of", releaseID: id}, err)
	}
	var st workflows.LaneState
	if err := v.Get(&st); err != nil {
		return nil, fmt.Errorf("decode lane of %s: %w", application, err)
	}
	return &st, nil
}

// Summary is the one line the Web UI shows for a release:
// "demo 1.2.0: 3 regions in 2 waves".
func Summary(spec *release.Spec, version string) string {
	waves := make([]string, 0, len(spec.Waves))
	for _, w := range spec.Waves {
		waves = append(waves, fmt.Sprintf("%s (%s)", w.Name, strings.Join(w.Regions, ", ")))
	}
	s := fmt.Sprintf("%s %s: %s", spec.Application, version, strings.Join(waves, " → "))
	// The Web UI shows the summary on one line: a long list of regions
	// gives way to the counts.
	if len(s) > 160 {
		s = fmt.Sprintf("%s %s: %s in %s", spec.Application, version,
			plural(len(spec.Regions), "region"), plural(len(spec.Waves), "wave"))
	}
	return s
}

func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// UpdateOption adjusts an Update sent by Answer or Control.
type UpdateOption func(*client.UpdateWorkflowOptions)

// WithIdempotencyKey makes repeated deliveries of the same request (Slack
// retries a callback, a person double-clicks, a CI step reruns) one Update:
// Temporal deduplicates Updates by ID within a run and returns the first
// outcome to every repeat.
func WithIdempotencyKey(key string) UpdateOption {
	return func(o *client.UpdateWorkflowOptions) {
		if key != "" {
			o.UpdateID = UpdateID(o.UpdateName, key)
		}
	}
}

// UpdateID derives a stable Update ID from an update name and a caller's key.
// The name is part of it so that approve and reject with one key stay apart.
func UpdateID(name, key string) string {
	sum := sha256.Sum256([]byte(name + "\x00" + key))
	return name + "-" + hex.EncodeToString(sum[:12])
}

// Answer approves or rejects a gate. A refusal by the workflow (not an
// approver, no such gate) comes back as an *Error of kind ErrRefused.
func (c *Client) Answer(ctx context.Context, releaseID string, approve bool, a workflows.GateAnswer, opts ...UpdateOption) error {
	name := workflows.UpdateReject
	if approve {
		name = workflows.UpdateApprove
	}
	if c.Signer != nil {
		run, err := c.signAnswer(ctx, releaseID, approve, &a)
		if err != nil {
			return err
		}
		opts = append(opts, toRun(run))
	}
	return c.update(ctx, releaseID, name, a, opts)
}

// Control sends pause, resume, abort, promote or rollback.
func (c *Client) Control(ctx context.Context, releaseID, name string, ctl workflows.Control, opts ...UpdateOption) error {
	switch name {
	case workflows.UpdatePause, workflows.UpdateResume, workflows.UpdateAbort, workflows.UpdatePromote, workflows.UpdateRollback:
	default:
		return &Error{Message: fmt.Sprintf("%s %s: unknown control (want pause, resume, abort, promote or rollback)", name, releaseID)}
	}
	if c.Signer != nil {
		run, err := c.signControl(ctx, releaseID, name, &ctl)
		if err != nil {
			return err
		}
		opts = append(opts, toRun(run))
	}
	return c.update(ctx, releaseID, name, ctl, opts)
}

func (c *Client) update(ctx context.Context, releaseID, name string, arg any, opts []UpdateOption) error {
	uo := client.UpdateWorkflowOptions{
		WorkflowID:   releaseID,
		UpdateName:   name,
		Args:         []any{arg},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	}
	for _, f := range opts {
		f(&uo)
	}
	o := op{name: name, releaseID: releaseID, update: true}
	h, err := c.T.UpdateWorkflow(ctx, uo)
	if err != nil {
		return c.translate(o, err)
	}
	return c.translate(o, h.Get(ctx, nil))
}

// Status asks the release for its status (the status query). It works on
// finished releases too, as long as a worker can replay them.
func (c *Client) Status(ctx context.Context, releaseID string) (*workflows.Status, error) {
	o := op{name: "status of", releaseID: releaseID}
	v, err := c.T.QueryWorkflow(ctx, releaseID, "", workflows.QueryStatus)
	if err != nil {
		return nil, c.translate(o, err)
	}
	var st workflows.Status
	if err := v.Get(&st); err != nil {
		return nil, c.translate(o, fmt.Errorf("decode status: %w", err))
	}
	c.liveRegions(ctx, releaseID, &st)
	return &st, nil
}

// liveRegions replaces the status of every region in progress by the
// region's own, which is newer: a region tells its release only what the
// release needs (a revision, a phase, users moved), not each step. A
// region that cannot be asked keeps what the release knows.
func (c *Client) liveRegions(ctx context.Context, releaseID string, st *workflows.Status) {
	var wg sync.WaitGroup
	for wi := range st.Waves {
		for ri := range st.Waves[wi].Regions {
			rs := &st.Waves[wi].Regions[ri]
			switch rs.Phase {
			case workflows.PhaseDeploying, workflows.PhaseBaking, workflows.PhasePaused, workflows.PhaseHeld:
			default:
				// Not started, finished, or in the release's own hands (a
				// rollback): the release knows best.
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				v, err := c.T.QueryWorkflow(ctx, workflows.RegionID(releaseID, rs.Region), "", workflows.QueryStatus)
				if err != nil {
					return
				}
				var live workflows.RegionStatus
				if v.Get(&live) == nil && live.Region == rs.Region && live.Seq >= rs.Seq {
					*rs = live
				}
			}()
		}
	}
	wg.Wait()
}

// Result waits for the release to finish and returns its result. A release
// that ended without a result (terminated, timed out, failed with an error)
// gives an error saying how it ended.
func (c *Client) Result(ctx context.Context, releaseID string) (*workflows.ReleaseResult, error) {
	o := op{name: "result of", releaseID: releaseID}
	var res workflows.ReleaseResult
	if err := c.T.GetWorkflow(ctx, releaseID, "").Get(ctx, &res); err != nil {
		if r, ok := workflows.ResultFromError(err); ok {
			// A release that did not ship closes as Failed with its result.
			return r, nil
		}
		var we *temporal.WorkflowExecutionError
		if errors.As(err, &we) {
			return nil, &Error{Message: oneLine(fmt.Sprintf("release %s ended without a result: %s", releaseID, causeOf(we))), Err: err}
		}
		return nil, c.translate(o, err)
	}
	return &res, nil
}

func causeOf(we *temporal.WorkflowExecutionError) string {
	var (
		term *temporal.TerminatedError
		to   *temporal.TimeoutError
		canc *temporal.CanceledError
		app  *temporal.ApplicationError
	)
	switch {
	case errors.As(we, &term):
		return "terminated"
	case errors.As(we, &to):
		return "timed out"
	case errors.As(we, &canc):
		return "canceled"
	case errors.As(we, &app):
		return "failed: " + app.Message()
	}
	if u := errors.Unwrap(we); u != nil {
		return u.Error()
	}
	return we.Error()
}

// URL is the release's page in the Temporal Web UI.
func (c *Client) URL(releaseID string) string {
	return strings.TrimRight(c.UIBaseURL, "/") + "/namespaces/" + url.PathEscape(c.Namespace) + "/workflows/" + url.PathEscape(releaseID)
}

func isNotFound(err error) bool {
	var nf *serviceerror.NotFound
	return errors.As(err, &nf)
}
