package control

import (
	"context"
	"fmt"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/keelson-dev/keelson/identity"
	"github.com/keelson-dev/keelson/workflows"
)

// Signing: with Client.Signer set, every start, answer, control and
// override carries a proof (package identity) that names the run it is
// sent to; the Update then goes to that run only, so a proof never lands on
// a later run of the same release ID.

// signStart signs the start of in as releaseID.
func (c *Client) signStart(releaseID string, in *workflows.ReleaseInput) error {
	if c.Signer == nil {
		return nil
	}
	p, err := c.Signer.Sign(workflows.StartIntent(releaseID, in), time.Now())
	if err != nil {
		return &Error{Message: err.Error(), Err: err}
	}
	in.StartProof = p
	return nil
}

// signSchedule signs a schedule's creation: its trains' releases carry it.
func (c *Client) signSchedule(in *workflows.TrainInput) error {
	if c.Signer == nil {
		return nil
	}
	p, err := c.Signer.Sign(workflows.ScheduleIntent(in.Schedule, in.Spec.Application, in.Bundle), time.Now())
	if err != nil {
		return &Error{Message: err.Error(), Err: err}
	}
	in.ScheduleProof = p
	return nil
}

// runOf is the running run of releaseID.
func (c *Client) runOf(ctx context.Context, releaseID, what string) (string, error) {
	d, err := c.T.DescribeWorkflowExecution(ctx, releaseID, "")
	if err != nil {
		return "", c.translate(op{name: what, releaseID: releaseID}, err)
	}
	return d.GetWorkflowExecutionInfo().GetExecution().GetRunId(), nil
}

// signAnswer signs an answer to the gate open now in the running run.
func (c *Client) signAnswer(ctx context.Context, releaseID string, approve bool, a *workflows.GateAnswer) (string, error) {
	name := workflows.UpdateReject
	if approve {
		name = workflows.UpdateApprove
	}
	run, err := c.runOf(ctx, releaseID, name)
	if err != nil {
		return "", err
	}
	v, err := c.T.QueryWorkflow(ctx, releaseID, run, workflows.QueryStatus)
	if err != nil {
		return "", c.translate(op{name: name, releaseID: releaseID}, err)
	}
	var st workflows.Status
	if err := v.Get(&st); err != nil {
		return "", fmt.Errorf("%s %s: decode status: %w", name, releaseID, err)
	}
	gate := workflows.GateStatus{}
	if st.Gate != nil {
		gate = *st.Gate
	}
	// With no gate open, or another one, the release refuses the answer
	// for that reason before it looks at the proof.
	p, err := c.Signer.Sign(workflows.AnswerIntent(releaseID, run, approve, gate, *a), time.Now())
	if err != nil {
		return "", &Error{Message: err.Error(), Err: err}
	}
	a.Proof = p
	return run, nil
}

// signControl signs a control for the running run.
func (c *Client) signControl(ctx context.Context, releaseID, name string, ctl *workflows.Control) (string, error) {
	run, err := c.runOf(ctx, releaseID, name)
	if err != nil {
		return "", err
	}
	p, err := c.Signer.Sign(workflows.ControlIntent(releaseID, run, name, *ctl), time.Now())
	if err != nil {
		return "", &Error{Message: err.Error(), Err: err}
	}
	ctl.Proof = p
	return run, nil
}

// signOverride signs an override of deploy windows for the running run.
func (c *Client) signOverride(ctx context.Context, releaseID string, a *workflows.GateAnswer) (string, error) {
	run, err := c.runOf(ctx, releaseID, workflows.UpdateOverrideWindow)
	if err != nil {
		return "", err
	}
	p, err := c.Signer.Sign(workflows.OverrideIntent(releaseID, run, *a), time.Now())
	if err != nil {
		return "", &Error{Message: err.Error(), Err: err}
	}
	a.Proof = p
	return run, nil
}

// toRun sends an Update to one run.
func toRun(run string) UpdateOption {
	return func(o *client.UpdateWorkflowOptions) { o.RunID = run }
}

// SignerOf is who signs, for messages: "alice (SHA256:…)", or "" unsigned.
func SignerOf(s *identity.Signer) string {
	if s == nil {
		return ""
	}
	return s.Principal + " (" + s.Fingerprint() + ")"
}
