package control

import (
	"context"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/keelson-dev/keelson/workflows"
)

// Freeze stops the line: every running release the freeze concerns holds
// at its next step boundary and every new one waits before its first wave,
// until Unfreeze. The switch is one long-running workflow (FreezeID),
// started here when it does not run yet.
func (c *Client) Freeze(ctx context.Context, q workflows.FreezeRequest) (*workflows.FreezeState, error) {
	return c.freezeUpdate(ctx, workflows.UpdateFreeze, q)
}

// Unfreeze lifts a freeze in force.
func (c *Client) Unfreeze(ctx context.Context, q workflows.FreezeRequest) (*workflows.FreezeState, error) {
	return c.freezeUpdate(ctx, workflows.UpdateUnfreeze, q)
}

// Freezes reads the freezes in force and the releases subscribed.
func (c *Client) Freezes(ctx context.Context) (*workflows.FreezeState, error) {
	o := op{name: "freezes of", releaseID: workflows.FreezeID}
	v, err := c.T.QueryWorkflow(ctx, workflows.FreezeID, "", workflows.QueryFreeze)
	if err != nil {
		if isNotFound(err) {
			return &workflows.FreezeState{}, nil
		}
		return nil, c.translate(o, err)
	}
	var st workflows.FreezeState
	if err := v.Get(&st); err != nil {
		return nil, c.translate(o, fmt.Errorf("decode the freezes: %w", err))
	}
	return &st, nil
}

func (c *Client) freezeUpdate(ctx context.Context, name string, q workflows.FreezeRequest) (*workflows.FreezeState, error) {
	o := op{name: name, releaseID: workflows.FreezeID, update: true}
	if _, err := c.T.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       workflows.FreezeID,
		TaskQueue:                c.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		StaticSummary:            "stop-the-line switch: freezes of every application or one",
	}, workflows.FreezeWorkflow, &workflows.FreezeState{}); err != nil {
		return nil, c.translate(op{name: "start", releaseID: workflows.FreezeID}, err)
	}
	h, err := c.T.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   workflows.FreezeID,
		UpdateName:   name,
		Args:         []any{q},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		return nil, c.translate(o, err)
	}
	var st workflows.FreezeState
	if err := h.Get(ctx, &st); err != nil {
		return nil, c.translate(o, err)
	}
	return &st, nil
}

// OverrideWindow lets a release go outside its deploy windows and the
// file's freezes: an approver's decision, recorded with the approvals.
func (c *Client) OverrideWindow(ctx context.Context, releaseID string, a workflows.GateAnswer, opts ...UpdateOption) error {
	if c.Signer != nil {
		run, err := c.signOverride(ctx, releaseID, &a)
		if err != nil {
			return err
		}
		opts = append(opts, toRun(run))
	}
	return c.update(ctx, releaseID, workflows.UpdateOverrideWindow, a, opts)
}
