package workflows

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/keelson-dev/keelson/activities/policy"
	"github.com/keelson-dev/keelson/identity"
)

// The intents a proof signs (package identity). Callers (the CLI, the Slack
// bridge) build them from what they send; the release builds them again
// from what it receives and its own state, so both sides must use these.

// StartIntent is what the starter of a release signs.
func StartIntent(releaseID string, in *ReleaseInput) identity.Intent {
	return identity.Intent{Action: identity.ActionStart, Release: releaseID, Application: in.Spec.Application, Version: in.Version, Bundle: in.Bundle}
}

// ScheduleIntent is what the creator of a schedule signs: the releases its
// trains start carry it.
func ScheduleIntent(schedule, application, bundle string) identity.Intent {
	return identity.Intent{Action: ActionSchedule, Release: "schedule:" + schedule, Application: application, Bundle: bundle}
}

// ActionSchedule is the action of ScheduleIntent.
const ActionSchedule = "schedule"

// AnswerIntent is what an approval or rejection of gate signs. gate is the
// gate as the release's status shows it (its name and opening).
func AnswerIntent(releaseID, runID string, approve bool, gate GateStatus, a GateAnswer) identity.Intent {
	action := UpdateReject
	if approve {
		action = UpdateApprove
	}
	return identity.Intent{
		Action: action, Release: releaseID, Run: runID,
		Gate: gate.Name, GateOpened: identity.Millis(gate.Opened), Reason: a.Reason,
		SlackTeam: a.Team, SlackUser: a.UserID, Groups: a.Groups,
	}
}

// OverrideIntent is what an override of deploy windows signs.
func OverrideIntent(releaseID, runID string, a GateAnswer) identity.Intent {
	return identity.Intent{Action: UpdateOverrideWindow, Release: releaseID, Run: runID, Reason: a.Reason, SlackTeam: a.Team, SlackUser: a.UserID, Groups: a.Groups}
}

// ControlIntent is what a control (pause, resume, abort, promote,
// rollback) signs, with its scope.
func ControlIntent(releaseID, runID, name string, c Control) identity.Intent {
	return identity.Intent{Action: name, Release: releaseID, Run: runID, Reason: c.Reason, Regions: c.Regions, Waves: c.Waves}
}

// loadAccess reads the worker's access policy for the application into
// the history and checks who started the release. It returns why the start
// is refused, or "".
func (r *releaseImpl) loadAccess(ctx workflow.Context) string {
	r.accessPending = true
	defer func() { r.accessPending = false }()
	var a *policy.Activities
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 5 * time.Second, MaximumAttempts: 5},
		Summary:             "read the worker's access policy",
	})
	var acc identity.Access
	if err := workflow.ExecuteLocalActivity(lctx, a.Access, policy.AccessInput{Application: r.in.Spec.Application}).Get(ctx, &acc); err != nil {
		return fmt.Sprintf("start refused: the worker's access policy could not be read: %v", rootCause(err))
	}
	r.access = &acc
	r.status.StartedBy = r.in.StartedBy
	if !acc.Enforced {
		r.status.Access = "not verified: the worker has no access policy"
		return ""
	}
	r.status.Access = "verified against " + acc.Policy
	var who identity.Identity
	var err error
	if r.in.Schedule != "" {
		// Started by a train: its schedule's creation is the decision.
		if workflow.GetInfo(ctx).ParentWorkflowExecution == nil {
			return fmt.Sprintf("start refused: release names schedule %s but no train started it", r.in.Schedule)
		}
		// Checking a signature is pure computation over the bytes given;
		// workflowcheck follows x/crypto/ssh's reflection into the runtime.
		//workflowcheck:ignore
		who, err = acc.VerifyStanding(ScheduleIntent(r.in.Schedule, r.in.Spec.Application, r.in.Bundle), r.in.StartProof)
	} else {
		// Checking a signature is pure computation over the bytes given;
		// workflowcheck follows x/crypto/ssh's reflection into the runtime.
		//workflowcheck:ignore
		who, err = acc.Verify(StartIntent(r.id, r.in), r.in.StartProof, workflow.Now(ctx))
	}
	if err != nil {
		return "start refused: " + err.Error()
	}
	// An undo is a rollback: the operators' to start.
	role, roles := identity.RoleStarter, "starters"
	if r.in.Undo != nil {
		role, roles = identity.RoleOperator, "operators"
	}
	if !acc.May(role, who) {
		return fmt.Sprintf("start refused: %s is not one of the %s of %s (%s: %s)", who.ID, roles, r.in.Spec.Application, roles, acc.Holders(role))
	}
	r.starter = &who
	r.status.StartedBy = who.ID
	workflow.GetLogger(ctx).Info("Start verified", "startedBy", who.ID, "key", who.Key)
	return ""
}

// identify verifies p over in. It returns nil and no error where identities
// are not verified (a run that started before them, or a worker without an
// access policy): the caller then falls back to the names given.
func (r *releaseImpl) identify(ctx workflow.Context, in identity.Intent, p *identity.Proof) (*identity.Identity, error) {
	if r.access == nil {
		if r.accessPending {
			return nil, refuse("release %s is still reading its access policy; try again in a moment", r.id)
		}
		return nil, nil
	}
	if !r.access.Enforced {
		return nil, nil
	}
	// Pure computation over the bytes given (see loadAccess).
	//workflowcheck:ignore
	who, err := r.access.Verify(in, p, workflow.Now(ctx))
	if err != nil {
		// The caller gets the refusal; the worker's log keeps it too.
		signer := ""
		if p != nil {
			signer = p.Signer
		}
		workflow.GetLogger(ctx).Warn("Proof refused", "action", in.Action, "signer", signer, "slackUser", in.SlackUser, "error", err)
		return nil, refuse("%v", err)
	}
	return &who, nil
}

// runID is this run's ID, which proofs name.
func runID(ctx workflow.Context) string { return workflow.GetInfo(ctx).WorkflowExecution.RunID }

// mayOperate checks a control's proof and that its signer is an operator.
func (r *releaseImpl) mayOperate(ctx workflow.Context, name string, c Control) (*identity.Identity, error) {
	who, err := r.identify(ctx, ControlIntent(r.id, runID(ctx), name, c), c.Proof)
	if err != nil || who == nil {
		return nil, err
	}
	if !r.access.May(identity.RoleOperator, *who) {
		return nil, refuse("%s is not an operator of %s (operators: %s)", who.ID, r.in.Spec.Application, r.access.Holders(identity.RoleOperator))
	}
	return who, nil
}

// mayApprove checks an answer's proof, the approver roles of the policy
// and of the gate, separation of duties and distinct approvers.
func (r *releaseImpl) mayApprove(ctx workflow.Context, approve bool, a GateAnswer) (*identity.Identity, error) {
	g := r.gate
	who, err := r.identify(ctx, AnswerIntent(r.id, runID(ctx), approve, g.status, a), a.Proof)
	if err != nil || who == nil {
		return nil, err
	}
	if !r.access.May(identity.RoleApprover, *who) {
		return nil, refuse("%s is not an approver of %s in the access policy (approvers: %s)", who.ID, r.in.Spec.Application, r.access.Holders(identity.RoleApprover))
	}
	if list := append(slices.Clone(g.spec.Approvers), prefixed("@", g.spec.ApproverGroups)...); len(list) > 0 && !identity.Matches(list, *who) {
		return nil, refuse("%s is not an approver of gate %s (approvers: %s)", who.ID, g.status.Name, strings.Join(list, ", "))
	}
	if approve && !g.spec.StarterMayApprove && r.starter != nil && who.ID == r.starter.ID {
		return nil, refuse("%s started release %s and may not approve its gates (separation of duties; a gate may allow it with starterMayApprove)", who.ID, r.id)
	}
	if approve && slices.Contains(g.status.Approved, who.ID) {
		return nil, refuse("%s already approved gate %s, which needs %d distinct approvers", who.ID, g.status.Name, g.status.Needed)
	}
	return who, nil
}

// mayOverride checks an override's proof and that its signer is an
// operator: overriding a window is steering the release, not approving it.
func (r *releaseImpl) mayOverride(ctx workflow.Context, a GateAnswer) (*identity.Identity, error) {
	who, err := r.identify(ctx, OverrideIntent(r.id, runID(ctx), a), a.Proof)
	if err != nil || who == nil {
		return nil, err
	}
	if !r.access.May(identity.RoleOperator, *who) {
		return nil, refuse("%s is not an operator of %s (operators: %s)", who.ID, r.in.Spec.Application, r.access.Holders(identity.RoleOperator))
	}
	return who, nil
}
