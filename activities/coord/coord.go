// Package coord lets workflows coordinate with other workflows where the
// SDK has no workflow-side call for it: signal-with-start of an
// application's lane, whether a workflow run is still open, and who asked
// Temporal to cancel a run. Its activities hold a Temporal client.
package coord

import (
	"context"
	"errors"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
)

// ErrBadInput is the type of non-retryable input errors.
const ErrBadInput = "CoordBadInput"

// Activities holds the client the worker dialled.
type Activities struct {
	Client client.Client
}

// SignalWithStartInput signals WorkflowID, starting it with StartArg first
// when no run of it is open.
type SignalWithStartInput struct {
	WorkflowID   string `json:"workflowId"`
	WorkflowType string `json:"workflowType"`
	TaskQueue    string `json:"taskQueue"`
	Signal       string `json:"signal"`
	Arg          any    `json:"arg,omitempty"`
	StartArg     any    `json:"startArg,omitempty"`
	Summary      string `json:"summary,omitempty"`
}

// SignalWithStart is idempotent for the callers that use it: the lane
// ignores a second request of the same run.
func (a *Activities) SignalWithStart(ctx context.Context, in SignalWithStartInput) error {
	if in.WorkflowID == "" || in.WorkflowType == "" || in.Signal == "" || in.TaskQueue == "" {
		return temporal.NewNonRetryableApplicationError("signal-with-start needs a workflow id, type, task queue and signal", ErrBadInput, nil)
	}
	opts := client.StartWorkflowOptions{
		ID:                       in.WorkflowID,
		TaskQueue:                in.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		StaticSummary:            in.Summary,
	}
	if _, err := a.Client.SignalWithStartWorkflow(ctx, in.WorkflowID, in.Signal, in.Arg, opts, in.WorkflowType, in.StartArg); err != nil {
		return fmt.Errorf("signal %s with start of %s: %w", in.Signal, in.WorkflowID, err)
	}
	return nil
}

// RunRef names one run of a workflow.
type RunRef struct {
	WorkflowID string `json:"workflowId"`
	RunID      string `json:"runId"`
}

// RunState tells whether a run is still open.
type RunState struct {
	Open   bool   `json:"open"`
	Status string `json:"status"`
}

// Describe reports whether the run is open. A run that no longer exists
// (retention passed) is reported closed.
func (a *Activities) Describe(ctx context.Context, in RunRef) (*RunState, error) {
	d, err := a.Client.DescribeWorkflowExecution(ctx, in.WorkflowID, in.RunID)
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return &RunState{Open: false, Status: "not found"}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("describe %s run %s: %w", in.WorkflowID, in.RunID, err)
	}
	st := d.GetWorkflowExecutionInfo().GetStatus()
	return &RunState{Open: st == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, Status: st.String()}, nil
}

// CancelRequest is who asked Temporal to cancel a run, read from the run's
// WorkflowExecutionCancelRequested event (the workflow itself cannot see it).
type CancelRequest struct {
	Identity string `json:"identity"`
	Cause    string `json:"cause,omitempty"`
}

// CancelRequester finds the run's cancel request in its history. It reads
// from the end, where the request is, and stops at the first one found.
func (a *Activities) CancelRequester(ctx context.Context, in RunRef) (*CancelRequest, error) {
	it := a.Client.GetWorkflowHistory(ctx, in.WorkflowID, in.RunID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var found *historypb.WorkflowExecutionCancelRequestedEventAttributes
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("read history of %s: %w", in.WorkflowID, err)
		}
		if attrs := ev.GetWorkflowExecutionCancelRequestedEventAttributes(); attrs != nil {
			found = attrs
			break
		}
	}
	if found == nil {
		return &CancelRequest{Identity: "unknown"}, nil
	}
	who := found.GetIdentity()
	if who == "" {
		who = "unknown"
	}
	if p := found.GetExternalWorkflowExecution(); p != nil && p.GetWorkflowId() != "" {
		who = "workflow " + p.GetWorkflowId()
	}
	return &CancelRequest{Identity: who, Cause: found.GetCause()}, nil
}

// SignalInput is one signal to an open run of WorkflowID.
type SignalInput struct {
	WorkflowID string `json:"workflowId"`
	Signal     string `json:"signal"`
	Arg        any    `json:"arg,omitempty"`
}

// SignalResult says, per signal in order, whether it was delivered.
type SignalResult struct {
	Delivered []bool   `json:"delivered"`
	Errors    []string `json:"errors,omitempty"`
}

// Signals delivers each signal to the open run of its workflow, from the
// worker rather than from the workflow: a workflow's own signal to another
// workflow costs its history two events and a workflow task, where a local
// activity doing the same costs one marker. A workflow that does not run
// (the lane ended, the switch was never started) is not an error: there is
// nobody to tell. Other errors are returned so that the local activity
// retries; a retry sends every signal again, which the lane and the switch
// ignore for a release they no longer hold.
func (a *Activities) Signals(ctx context.Context, in []SignalInput) (*SignalResult, error) {
	out := &SignalResult{Delivered: make([]bool, len(in))}
	var errs []error
	for i, s := range in {
		if s.WorkflowID == "" || s.Signal == "" {
			return nil, temporal.NewNonRetryableApplicationError("a signal needs a workflow id and a signal name", ErrBadInput, nil)
		}
		err := a.Client.SignalWorkflow(ctx, s.WorkflowID, "", s.Signal, s.Arg)
		var nf *serviceerror.NotFound
		switch {
		case err == nil:
			out.Delivered[i] = true
		case errors.As(err, &nf):
			out.Errors = append(out.Errors, fmt.Sprintf("%s to %s: no open run", s.Signal, s.WorkflowID))
		default:
			errs = append(errs, fmt.Errorf("signal %s to %s: %w", s.Signal, s.WorkflowID, err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}
