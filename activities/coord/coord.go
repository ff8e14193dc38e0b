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
