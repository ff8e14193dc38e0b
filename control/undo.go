package control

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/keelson-dev/keelson/release"
	"github.com/keelson-dev/keelson/workflows"
)

// UndoOptions are the choices of `keelson rollback` for a finished release.
type UndoOptions struct {
	StartedBy string
	Reason    string
	// Regions limits the undo; all the regions the release changed when empty.
	Regions []string
	// Waves limits the undo to these waves' regions (added to Regions).
	Waves []string
	// ToVersion, when set, is the version every region must return to.
	ToVersion string
}

// Rollback rolls back a release: a running one through its rollback
// Update; a finished one by starting its undo, a release of its own (lane,
// ownership checks, gates) that returns the regions it changed to the
// revisions it recorded. undo is set when an undo was started.
func (c *Client) Rollback(ctx context.Context, releaseID string, ctl workflows.Control, opts ...UpdateOption) (undo *StartResult, err error) {
	d, err := c.T.DescribeWorkflowExecution(ctx, releaseID, "")
	if err != nil {
		return nil, c.translate(op{name: "rollback", releaseID: releaseID}, err)
	}
	if d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return nil, c.Control(ctx, releaseID, workflows.UpdateRollback, ctl, opts...)
	}
	res, err := c.Undo(ctx, releaseID, UndoOptions{StartedBy: ctl.User, Reason: ctl.Reason, Regions: ctl.Regions, Waves: ctl.Waves})
	if err != nil {
		return nil, err
	}
	return &res, nil
}

// RollbackTo undoes the latest finished release of application that
// changed regions, provided every region it changed held version before.
func (c *Client) RollbackTo(ctx context.Context, application, version string, o UndoOptions) (StartResult, error) {
	list, err := c.List(ctx, ListQuery{Application: application, Limit: 20})
	if err != nil {
		return StartResult{}, err
	}
	for _, info := range list {
		if info.Status == "Running" {
			return StartResult{}, &Error{Kind: ErrRefused, Message: fmt.Sprintf(
				"rollback %s --to %s: %s is still running; roll it back with `keelson rollback %s`, or wait", application, version, info.ReleaseID, info.ReleaseID)}
		}
		if strings.HasPrefix(info.ReleaseID, "rollback-") {
			return StartResult{}, &Error{Kind: ErrRefused, Message: fmt.Sprintf(
				"rollback %s --to %s: the latest change of %s is the undo %s; release %s to go on from there", application, version, application, info.ReleaseID, version)}
		}
		if info.Version == version {
			return StartResult{}, &Error{Kind: ErrRefused, Message: fmt.Sprintf(
				"rollback %s --to %s: the latest release of %s is already %s (%s)", application, version, application, version, info.ReleaseID)}
		}
		res, err := c.Result(ctx, info.ReleaseID)
		if err != nil {
			continue
		}
		changed := false
		for _, r := range res.Regions {
			changed = changed || (r.Changed && r.RolledBackTo == 0)
		}
		if !changed {
			continue
		}
		o.ToVersion = version
		return c.Undo(ctx, info.ReleaseID, o)
	}
	return StartResult{}, &Error{Kind: ErrRefused, Message: fmt.Sprintf(
		"rollback %s --to %s: no finished release of %s that changed regions was found", application, version, application)}
}

// Undo starts the undo of a finished release (idempotent: a second call
// returns the undo already running).
func (c *Client) Undo(ctx context.Context, releaseID string, o UndoOptions) (StartResult, error) {
	opName := op{name: "rollback", releaseID: releaseID}
	d, err := c.T.DescribeWorkflowExecution(ctx, releaseID, "")
	if err != nil {
		return StartResult{}, c.translate(opName, err)
	}
	info := d.GetWorkflowExecutionInfo()
	runID := info.GetExecution().GetRunId()
	if st := info.GetStatus(); st != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED && st != enumspb.WORKFLOW_EXECUTION_STATUS_FAILED {
		return StartResult{}, &Error{Kind: ErrRefused, Message: fmt.Sprintf("rollback %s: it ended %s, without a result to undo", releaseID, strings.ToLower(info.GetStatus().String()))}
	}
	// A release that did not ship closes as Failed with its result; one
	// that failed without a result (terminated) has nothing to undo.
	res, err := c.Result(ctx, releaseID)
	if err != nil {
		return StartResult{}, err
	}
	in, err := c.releaseInput(ctx, releaseID, runID)
	if err != nil {
		return StartResult{}, c.translate(opName, err)
	}
	if in.Undo != nil {
		return StartResult{}, &Error{Kind: ErrRefused, Message: fmt.Sprintf("rollback %s: it is itself an undo; release the version you want instead", releaseID)}
	}
	for _, name := range o.Waves {
		i := slices.IndexFunc(in.Spec.Waves, func(w release.Wave) bool { return w.Name == name })
		if i < 0 {
			return StartResult{}, &Error{Kind: ErrRefused, Message: fmt.Sprintf("rollback %s: it has no wave %s", releaseID, name)}
		}
		for _, region := range in.Spec.Waves[i].Regions {
			if !slices.Contains(o.Regions, region) {
				o.Regions = append(o.Regions, region)
			}
		}
	}
	known := map[string]bool{}
	changed := 0
	for _, r := range res.Regions {
		known[r.Region] = true
		if r.Changed && r.RolledBackTo == 0 && (len(o.Regions) == 0 || slices.Contains(o.Regions, r.Region)) {
			changed++
		}
	}
	for _, name := range o.Regions {
		if !known[name] {
			return StartResult{}, &Error{Kind: ErrRefused, Message: fmt.Sprintf("rollback %s: it has no region %s", releaseID, name)}
		}
	}
	if changed == 0 {
		return StartResult{}, &Error{Kind: ErrRefused, Message: fmt.Sprintf("rollback %s: it left no change of its own to undo (%s)", releaseID, res.Phase)}
	}
	version := o.ToVersion
	if version == "" {
		version = "before-" + in.Version
	}
	id := workflows.UndoID(in.Spec.Application, in.Version)
	startedBy := o.StartedBy
	if o.Reason != "" {
		startedBy += " (" + o.Reason + ")"
	}
	undo := &workflows.ReleaseInput{Spec: in.Spec, Bundle: in.Bundle, Version: version, StartedBy: startedBy, Undo: &workflows.UndoInput{
		ReleaseID: releaseID, RunID: runID, Version: in.Version, ToVersion: o.ToVersion, Regions: res.Regions, Only: o.Regions,
	}}
	if err := c.signStart(id, undo); err != nil {
		return StartResult{}, err
	}
	sopts := c.startOptions(id, in.Spec.Application, version,
		fmt.Sprintf("undo of %s %s: %d regions back to their revisions before it", in.Spec.Application, in.Version, changed))
	run, err := c.T.ExecuteWorkflow(ctx, sopts, workflows.Release, undo)
	if err != nil {
		return StartResult{}, c.translate(op{name: "start", releaseID: id}, err)
	}
	return StartResult{ReleaseID: id, RunID: run.GetRunID(), URL: c.URL(id)}, nil
}

// releaseInput reads the input a release run started with.
func (c *Client) releaseInput(ctx context.Context, releaseID, runID string) (*workflows.ReleaseInput, error) {
	it := c.T.GetWorkflowHistory(ctx, releaseID, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	if !it.HasNext() {
		return nil, errors.New("empty history")
	}
	ev, err := it.Next()
	if err != nil {
		return nil, err
	}
	attrs := ev.GetWorkflowExecutionStartedEventAttributes()
	if attrs == nil {
		return nil, errors.New("history does not start with the release's start")
	}
	var in workflows.ReleaseInput
	if err := c.converter().FromPayloads(attrs.GetInput(), &in); err != nil {
		return nil, fmt.Errorf("decode the release's input: %w", err)
	}
	return &in, nil
}
