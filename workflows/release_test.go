package workflows

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"github.com/stretchr/testify/suite"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/keelson-dev/keelson/activities/analysis"
	"github.com/keelson-dev/keelson/activities/coord"
	"github.com/keelson-dev/keelson/activities/health"
	"github.com/keelson-dev/keelson/activities/helm"
	"github.com/keelson-dev/keelson/activities/policy"
	"github.com/keelson-dev/keelson/activities/slack"
	"github.com/keelson-dev/keelson/activities/terraform"
	"github.com/keelson-dev/keelson/release"
)

// testSpec is three regions in two waves: us-east-1 alone, then the other
// two in parallel behind a gate.
func testSpec() release.Spec {
	return release.Spec{
		APIVersion:  release.APIVersionV1Alpha1,
		Kind:        release.Kind,
		Application: "demo",
		Chart:       release.Chart{Path: "/charts/demo", Release: "demo", VersionValue: "version"},
		Terraform:   &release.Terraform{Path: "/stacks/demo", OutputsValue: "terraform", Vars: map[string]string{"tier": "standard"}},
		Regions: []release.Region{
			{Name: "us-east-1", KubeContext: "us-east-1", Namespace: "demo"},
			{Name: "eu-west-1", KubeContext: "eu-west-1", Namespace: "demo"},
			{Name: "ap-southeast-1", KubeContext: "ap-southeast-1", Namespace: "demo", TerraformVars: map[string]string{"tier": "small"}},
		},
		Waves: []release.Wave{
			{Name: "canary", Regions: []string{"us-east-1"}, Parallelism: 1, Bake: dur(10 * time.Minute)},
			{Name: "rest", Regions: []string{"eu-west-1", "ap-southeast-1"}, Parallelism: 2, Bake: dur(10 * time.Minute),
				Gate: &release.Gate{Name: "promote-to-rest", When: release.GateAlways, Approvers: []string{"alice", "U123"},
					ApproverGroups: []string{"release-managers"}, Timeout: dur(time.Hour), OnTimeout: release.TimeoutReject}},
		},
		Health:    []release.HealthCheck{{Name: "http", URL: "http://{{.Outputs.endpoint}}/healthz"}},
		Readiness: release.Readiness{Timeout: dur(2 * time.Minute)},
		Rollback:  release.Rollback{Policy: release.RollbackAuto},
	}
}

func dur(d time.Duration) release.Duration { return release.Duration{Duration: d} }

type releaseSuite struct {
	suite.Suite
	testsuite.WorkflowTestSuite
	env *testsuite.TestWorkflowEnvironment

	mu         sync.Mutex
	applied    []string // regions applied, in order
	upgraded   []string
	rolledBack map[string]int // region -> revision rolled back to
	revisions  map[string]int // region -> current revision
	failReady  map[string]bool
	// Plan returns planSummary (or planErr) and records the stacks planned.
	plans       []terraform.Stack
	ungated     map[string]bool // region -> PlanInput.Ungated
	planSummary terraform.Summary
	planErr     error
	expect      []expectation

	laneAsks, laneReleases   int
	snapshotAlls             int
	subscribed, unsubscribed int
	owners                   map[string]string // region -> run id of its latest revision
	// Overrides of the activities' default behaviour, set by a test.
	applyFn    func(terraform.ApplyInput) (*terraform.ApplyResult, error)
	upgradeFn  func(helm.UpgradeInput) (*helm.UpgradeResult, error)
	rollbackFn func(helm.RollbackInput) (*helm.RollbackResult, error)
	snapshotFn func(helm.Target) (*helm.Revision, error)
	verifyFn   func(terraform.VerifyInput) (*terraform.VerifyResult, error)
	// holdLane keeps the lane from being granted at once (input grants it).
	holdLane bool

	// Progressive strategies (strategy_test.go).
	ops            []string
	sideInputs     []helm.UpgradeInput
	stableInputs   []helm.UpgradeInput
	analysisInputs []analysis.RunInput
	failStable     bool
}

func TestRelease(t *testing.T) { suite.Run(t, new(releaseSuite)) }

func (s *releaseSuite) SetupTest() {
	s.env = s.NewTestWorkflowEnvironment()
	s.env.RegisterWorkflow(Release)
	s.env.RegisterWorkflow(RegionRollout)
	s.env.RegisterActivity(&terraform.Activities{})
	s.env.RegisterActivity(&helm.Activities{})
	s.env.RegisterActivity(&health.Activities{})
	s.env.RegisterActivity(&slack.Activities{})
	s.env.RegisterActivity(&coord.Activities{})
	s.env.RegisterActivity(&policy.Activities{})
	s.env.RegisterWorkflow(Lane)
	s.applied, s.upgraded = nil, nil
	s.holdLane = false
	s.failStable = false
	s.sideInputs, s.stableInputs = nil, nil
	s.applyFn, s.upgradeFn, s.rollbackFn, s.snapshotFn, s.verifyFn = nil, nil, nil, nil, nil
	s.owners = map[string]string{}
	s.rolledBack = map[string]int{}
	s.revisions = map[string]int{"us-east-1": 3, "eu-west-1": 5, "ap-southeast-1": 7}
	s.failReady = map[string]bool{}
	s.expect = nil

	var tf *terraform.Activities
	var h *helm.Activities
	var hc *health.Activities
	s.plans = nil
	s.ungated = map[string]bool{}
	s.planSummary = terraform.Summary{Adds: 1, Destroys: 1, Added: []string{"terraform_data.release"}, Destroyed: []string{"terraform_data.release"}}
	s.planErr = nil
	plan := func(_ context.Context, in terraform.PlanInput) (*terraform.PlanResult, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.plans = append(s.plans, in.Stack)
		s.ungated[in.Stack.Region] = in.Ungated
		if s.planErr != nil {
			return nil, s.planErr
		}
		return &terraform.PlanResult{
			PlanKey: fmt.Sprintf("demo/%s/%s/plan.tfplan", in.Stack.Version, in.Stack.Region),
			Summary: s.planSummary,
		}, nil
	}
	s.env.OnActivity(tf.Plan, mock.Anything, mock.Anything).Return(plan)
	s.env.OnActivity(tf.PlanAll, mock.Anything, mock.Anything).Return(func(ctx context.Context, in terraform.PlanAllInput) ([]terraform.PlanOutcome, error) {
		return batchOf(ctx, in.Inputs, plan)
	})
	s.env.OnActivity(tf.Apply, mock.Anything, mock.Anything).Return(func(_ context.Context, in terraform.ApplyInput) (*terraform.ApplyResult, error) {
		if s.applyFn != nil {
			return s.applyFn(in)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.applied = append(s.applied, in.Stack.Region)
		return &terraform.ApplyResult{Applied: true, Outputs: map[string]any{"endpoint": in.Stack.Region + ".demo"}}, nil
	})
	s.env.OnActivity(h.Upgrade, mock.Anything, mock.Anything).Return(func(_ context.Context, in helm.UpgradeInput) (*helm.UpgradeResult, error) {
		if s.upgradeFn != nil {
			return s.upgradeFn(in)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.upgraded = append(s.upgraded, in.Target.Region)
		prev := s.revisions[in.Target.Region]
		s.revisions[in.Target.Region] = prev + 1
		return &helm.UpgradeResult{Revision: prev + 1, PreviousRevision: prev, ChartVersion: "0.1.0", Changed: in.Owner.RunID != ""}, nil
	})
	s.env.OnActivity(h.WaitReady, mock.Anything, mock.Anything).Return(func(_ context.Context, in helm.WaitInput) error {
		if s.failReady[in.Target.Region] {
			return temporal.NewNonRetryableApplicationError("deployment demo: 0/2 ready", helm.ErrNotReady, nil)
		}
		return nil
	})
	s.env.OnActivity(h.Rollback, mock.Anything, mock.Anything).Return(func(_ context.Context, in helm.RollbackInput) (*helm.RollbackResult, error) {
		if s.rollbackFn != nil {
			return s.rollbackFn(in)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.rolledBack[in.Target.Region] = in.Revision
		s.revisions[in.Target.Region]++
		return &helm.RollbackResult{Revision: s.revisions[in.Target.Region]}, nil
	})
	s.env.OnActivity(hc.Check, mock.Anything, mock.Anything).Return(&health.CheckResult{Probes: 3}, nil)

	// The lane: asked through an activity, granted by a signal (lane.go
	// has its own tests); given back by a signal to the lane's workflow.
	var co *coord.Activities
	s.laneAsks, s.laneReleases = 0, 0
	s.env.OnActivity(co.SignalWithStart, mock.Anything, mock.Anything).Return(func(_ context.Context, in coord.SignalWithStartInput) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if in.WorkflowID == FreezeID {
			s.subscribed++
			return nil
		}
		s.laneAsks++
		return nil
	})
	s.env.OnSignalExternalWorkflow(mock.Anything, LaneID("demo"), "", SignalLaneRelease, mock.Anything).Return(func(_, _, _, _ string, _ any) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.laneReleases++
		return nil
	})
	s.subscribed, s.unsubscribed = 0, 0
	s.env.OnSignalExternalWorkflow(mock.Anything, FreezeID, "", SignalFreezeUnsubscribe, mock.Anything).Return(func(_, _, _, _ string, _ any) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.unsubscribed++
		return nil
	})
	// keelson-lean-history: both signals leave in one local activity.
	s.env.OnActivity(co.Signals, mock.Anything, mock.Anything).Return(func(_ context.Context, in []coord.SignalInput) (*coord.SignalResult, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		out := &coord.SignalResult{}
		for _, sig := range in {
			switch {
			case sig.WorkflowID == LaneID("demo") && sig.Signal == SignalLaneRelease:
				s.laneReleases++
			case sig.WorkflowID == FreezeID && sig.Signal == SignalFreezeUnsubscribe:
				s.unsubscribed++
			default:
				return nil, fmt.Errorf("unexpected signal %s to %s", sig.Signal, sig.WorkflowID)
			}
			out.Delivered = append(out.Delivered, true)
		}
		return out, nil
	})
	s.env.OnActivity(co.CancelRequester, mock.Anything, mock.Anything).Return(&coord.CancelRequest{Identity: "alice@laptop"}, nil)
	snapshot := func(t helm.Target) (*helm.Revision, error) {
		if s.snapshotFn != nil {
			return s.snapshotFn(t)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		rev := s.revisions[t.Region]
		return &helm.Revision{Revision: rev, Deployed: rev, Status: "deployed"}, nil
	}
	s.env.OnActivity(h.Snapshot, mock.Anything, mock.Anything).Return(func(_ context.Context, t helm.Target) (*helm.Revision, error) {
		return snapshot(t)
	})
	s.env.OnActivity(h.SnapshotAll, mock.Anything, mock.Anything).Return(func(_ context.Context, in helm.SnapshotAllInput) ([]helm.Revision, error) {
		s.mu.Lock()
		s.snapshotAlls++
		s.mu.Unlock()
		var out []helm.Revision
		for _, t := range in.Targets {
			rev, err := snapshot(t)
			if err != nil {
				return nil, err
			}
			out = append(out, *rev)
		}
		return out, nil
	})
	verify := func(_ context.Context, in terraform.VerifyInput) (*terraform.VerifyResult, error) {
		if s.verifyFn != nil {
			return s.verifyFn(in)
		}
		return &terraform.VerifyResult{}, nil
	}
	s.env.OnActivity(tf.Verify, mock.Anything, mock.Anything).Return(verify)
	s.env.OnActivity(tf.VerifyAll, mock.Anything, mock.Anything).Return(func(ctx context.Context, in terraform.VerifyAllInput) ([]terraform.VerifyOutcome, error) {
		return batchOf(ctx, in.Inputs, verify)
	})
}

// batchOf runs a region's stand-in for each input as the batch activities
// do: a non-retryable error is that region's outcome, any other fails the
// whole batch.
func batchOf[I, O any](ctx context.Context, inputs []I, fn func(context.Context, I) (*O, error)) ([]terraform.Outcome[O], error) {
	out := make([]terraform.Outcome[O], len(inputs))
	for i, in := range inputs {
		res, err := fn(ctx, in)
		if err != nil {
			if !nonRetryable(err) {
				return nil, err
			}
			out[i].Error = err.Error()
			continue
		}
		out[i].Result = res
	}
	return out, nil
}

// nonRetryable mirrors the batch activities: such an error is one
// region's outcome, any other fails (and retries) the whole batch.
func nonRetryable(err error) bool {
	var appErr *temporal.ApplicationError
	return errors.As(err, &appErr) && appErr.NonRetryable()
}

func (s *releaseSuite) input() *ReleaseInput {
	s.env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: ReleaseID("demo", "1.4.2")})
	if !s.holdLane {
		s.env.RegisterDelayedCallback(func() { s.env.SignalWorkflow(SignalLaneGranted, LaneQueued{}) }, 0)
	}
	// The stop-the-line switch's first answer: nothing frozen.
	s.env.RegisterDelayedCallback(func() { s.env.SignalWorkflow(SignalReleaseHold, Hold{}) }, 0)
	return &ReleaseInput{Spec: testSpec(), Version: "1.4.2", StartedBy: "ci"}
}

// at runs fn when the workflow's clock has moved by d (time skipping).
func (s *releaseSuite) at(d time.Duration, fn func()) { s.env.RegisterDelayedCallback(fn, d) }

// updateResult is filled in by the test environment once the workflow has
// handled the update; tests check it after the workflow completed.
type updateResult struct {
	done     bool
	accepted bool
	err      error
}

func (u *updateResult) Err() error {
	if !u.done {
		return errors.New("update never completed")
	}
	return u.err
}

func (s *releaseSuite) update(name string, arg any) *updateResult {
	u := &updateResult{}
	s.env.UpdateWorkflow(name, "", &testsuite.TestUpdateCallback{
		OnAccept: func() { u.accepted = true },
		OnReject: func(err error) { u.err, u.done = err, true },
		OnComplete: func(_ any, err error) {
			u.err, u.done = err, true
		},
	}, arg)
	return u
}

func (s *releaseSuite) approve(user string) *updateResult {
	return s.update(UpdateApprove, GateAnswer{Gate: "promote-to-rest", User: user, Via: "cli"})
}

func (s *releaseSuite) status() Status {
	v, err := s.env.QueryWorkflow(QueryStatus)
	s.Require().NoError(err)
	var st Status
	s.Require().NoError(v.Get(&st))
	return st
}

// ok and refused record what an update sent from a delayed callback must
// come to; result checks them once the workflow has completed.
func (s *releaseSuite) ok(u *updateResult) { s.expect = append(s.expect, expectation{u, true, ""}) }

func (s *releaseSuite) refused(u *updateResult, why string) {
	s.expect = append(s.expect, expectation{u, false, why})
}

type expectation struct {
	u   *updateResult
	ok  bool
	why string
}

func (s *releaseSuite) result() *ReleaseResult {
	s.Require().True(s.env.IsWorkflowCompleted())
	for i, e := range s.expect {
		if e.ok {
			s.NoError(e.u.Err(), "update %d", i)
		} else {
			s.Error(e.u.Err(), "update %d: %s", i, e.why)
			s.False(e.u.accepted, "update %d: a refused update is never accepted", i)
		}
	}
	if err := s.env.GetWorkflowError(); err != nil {
		// A release that did not ship closes as Failed with its result.
		res, ok := ResultFromError(err)
		s.Require().True(ok, "the release failed without a result: %v", err)
		s.NotEqual(PhaseSucceeded, res.Phase)
		s.Contains(err.Error(), string(res.Phase), "the failure message starts with the outcome")
		return res
	}
	var res ReleaseResult
	s.Require().NoError(s.env.GetWorkflowResult(&res))
	s.Equal(PhaseSucceeded, res.Phase, "only a release that shipped completes")
	return &res
}

func (s *releaseSuite) TestHappyPathThreeRegionsTwoWaves() {
	var atGate Status
	s.at(30*time.Minute, func() {
		atGate = s.status()
		s.ok(s.approve("alice"))
	})
	s.env.ExecuteWorkflow(Release, s.input())
	res := s.result()

	s.Equal(PhaseAwaitGate, atGate.Phase, "the release waits at the gate after the first wave's bake")
	s.Require().NotNil(atGate.Gate)
	s.Equal("promote-to-rest", atGate.Gate.Name)
	s.Equal(PhaseSucceeded, atGate.Waves[0].Phase)
	s.Equal(PhasePending, atGate.Waves[1].Regions[0].Phase, "the second wave has not started before approval")

	s.Equal(PhaseSucceeded, res.Phase)
	s.Equal("release-demo-1.4.2", res.ReleaseID)
	s.Require().Len(res.Regions, 3)
	want := map[string][2]int{"us-east-1": {3, 4}, "eu-west-1": {5, 6}, "ap-southeast-1": {7, 8}}
	for _, r := range res.Regions {
		s.Equal(PhaseSucceeded, r.Phase, r.Region)
		s.Equal(want[r.Region][0], r.PreviousRevision, r.Region)
		s.Equal(want[r.Region][1], r.Revision, r.Region)
		s.True(r.Changed)
		s.Equal(10*time.Minute, r.Duration.Round(time.Minute), "each region baked for its wave's bake time")
	}
	s.Equal("canary", res.Regions[0].Wave)
	s.Equal([]string{"us-east-1"}, s.applied[:1], "the canary region goes first")
	s.ElementsMatch([]string{"us-east-1", "eu-west-1", "ap-southeast-1"}, s.upgraded)
	s.Require().Len(res.Approvals, 1)
	s.Equal(Approval{Gate: "promote-to-rest", Approved: true, User: "alice", Via: "cli", At: res.Approvals[0].At}, res.Approvals[0])
	s.Empty(s.rolledBack)
}

func (s *releaseSuite) TestTerraformVarsMergeRegionOverRelease() {
	s.at(30*time.Minute, func() { s.ok(s.approve("alice")) })
	s.env.ExecuteWorkflow(Release, s.input())
	s.Equal(PhaseSucceeded, s.result().Phase)
	tiers := map[string]string{}
	for _, st := range s.plans {
		tiers[st.Region] = st.Vars["tier"]
		s.Equal("1.4.2", st.Version)
		s.Equal("/stacks/demo", st.Dir)
	}
	s.Equal(map[string]string{"us-east-1": "standard", "eu-west-1": "standard", "ap-southeast-1": "small"}, tiers)
	// Only the gated wave's plans are shown before they apply.
	s.Equal(map[string]bool{"us-east-1": true, "eu-west-1": false, "ap-southeast-1": false}, s.ungated)
}

func (s *releaseSuite) TestGateRejectedEndsTheReleaseCleanly() {
	s.at(30*time.Minute, func() {
		s.refused(s.update(UpdateReject, GateAnswer{User: "alice"}), "a rejection without a reason is refused")
		s.ok(s.update(UpdateReject, GateAnswer{User: "alice", Reason: "error budget spent", Via: "slack"}))
	})
	s.env.ExecuteWorkflow(Release, s.input())
	res := s.result()
	s.Equal(PhaseRejected, res.Phase)
	s.Contains(res.Reason, "rejected by alice: error budget spent")
	s.Equal([]string{"us-east-1"}, s.upgraded, "nothing after the gate was touched")
	s.Empty(s.rolledBack, "a rejection does not roll back the wave that already baked")
	s.Equal(PhaseSucceeded, res.Regions[0].Phase)
	s.Equal(PhasePending, res.Regions[1].Phase)
	s.Require().Len(res.Approvals, 1)
	s.False(res.Approvals[0].Approved)
}

func (s *releaseSuite) TestGateTimesOut() {
	s.env.ExecuteWorkflow(Release, s.input())
	res := s.result()
	s.Equal(PhaseRejected, res.Phase)
	s.Contains(res.Reason, "timed out")
	s.Require().Len(res.Approvals, 1)
	s.True(res.Approvals[0].TimedOut)
	s.Equal([]string{"us-east-1"}, s.upgraded)
	// Canary bake (10m) then the gate's hour.
	s.Equal(70*time.Minute, res.Duration().Round(time.Minute))
}

func (s *releaseSuite) TestGateEscalatesOnceThenApproved() {
	in := s.input()
	in.Spec.Waves[1].Gate.OnTimeout = release.TimeoutEscalate
	in.Spec.Waves[1].Gate.Escalation = &release.Escalation{Mention: "@oncall", Extend: dur(30 * time.Minute)}
	var escalated Status
	s.at(10*time.Minute+time.Hour+5*time.Minute, func() {
		escalated = s.status()
		s.ok(s.approve("alice"))
	})
	s.env.ExecuteWorkflow(Release, in)
	s.Equal(PhaseSucceeded, s.result().Phase)
	s.Require().NotNil(escalated.Gate)
	s.True(escalated.Gate.Escalated)
}

func (s *releaseSuite) TestUnauthorisedApproverRefusedByValidator() {
	var mallory *updateResult
	s.at(30*time.Minute, func() {
		mallory = s.approve("mallory")
		s.refused(s.update(UpdateApprove, GateAnswer{Gate: "another-gate", User: "alice"}), "answers to another gate are refused")
		st := s.status()
		s.Equal(PhaseAwaitGate, st.Phase, "a refused approval changes nothing")
		s.Empty(st.Approvals)
		// Slack ids and group membership count as approvers too.
		s.ok(s.update(UpdateApprove, GateAnswer{User: "bob", Groups: []string{"release-managers"}, Via: "slack"}))
		s.refused(s.approve("alice"), "a gate answered once cannot be answered again")
	})
	s.env.ExecuteWorkflow(Release, s.input())
	res := s.result()
	s.Equal(PhaseSucceeded, res.Phase)
	s.Equal("bob", res.Approvals[0].User)
	s.Require().NotNil(mallory)
	s.Require().Error(mallory.Err())
	s.False(mallory.accepted)
	s.Contains(mallory.Err().Error(), "user mallory is not an approver of gate promote-to-rest")
	s.Contains(mallory.Err().Error(), "approvers: alice, U123, @release-managers")
}

func (s *releaseSuite) TestApproveWithoutOpenGateRefused() {
	var early *updateResult
	s.at(time.Minute, func() {
		early = s.approve("alice")
	})
	s.at(30*time.Minute, func() { s.ok(s.approve("alice")) })
	s.env.ExecuteWorkflow(Release, s.input())
	s.Equal(PhaseSucceeded, s.result().Phase)
	s.Require().Error(early.Err())
	s.Contains(early.Err().Error(), "has no gate waiting")
}

func (s *releaseSuite) TestPauseAndResume() {
	var paused Status
	s.at(30*time.Minute, func() {
		s.ok(s.update(UpdatePause, Control{User: "alice", Reason: "incident"}))
		s.refused(s.update(UpdatePause, Control{}), "pausing twice is refused")
		s.ok(s.approve("alice"))
	})
	s.at(3*time.Hour, func() {
		paused = s.status()
		s.ok(s.update(UpdateResume, Control{User: "alice"}))
	})
	s.env.ExecuteWorkflow(Release, s.input())
	res := s.result()
	s.Equal(PhaseSucceeded, res.Phase)
	s.True(paused.Paused)
	s.Equal(PhasePaused, paused.Phase)
	s.Equal(PhasePending, paused.Waves[1].Regions[0].Phase, "no region starts while paused")
	// Resumed at 3h, then the second wave's 10m bake.
	s.Equal(3*time.Hour+10*time.Minute, res.Duration().Round(time.Minute))
}

func (s *releaseSuite) TestPauseHoldsRegionBetweenSteps() {
	// Pause while the canary region is baking: it finishes its bake step,
	// and the release does not open the gate until resumed.
	var during Status
	s.at(2*time.Minute, func() { s.ok(s.update(UpdatePause, Control{User: "alice"})) })
	s.at(time.Hour, func() {
		during = s.status()
		s.ok(s.update(UpdateResume, Control{User: "alice"}))
	})
	s.at(90*time.Minute, func() { s.ok(s.approve("alice")) })
	s.env.ExecuteWorkflow(Release, s.input())
	s.Equal(PhaseSucceeded, s.result().Phase)
	s.Nil(during.Gate, "the gate does not open while paused")
	s.True(during.Paused)
}

func (s *releaseSuite) TestAbortMidWave() {
	// Abort while the second wave bakes: both of its regions and the canary
	// are rolled back to their recorded revisions.
	s.at(30*time.Minute, func() { s.ok(s.approve("alice")) })
	s.at(35*time.Minute, func() {
		s.ok(s.update(UpdateAbort, Control{User: "alice", Reason: "customer reports"}))
		s.refused(s.update(UpdateAbort, Control{User: "alice"}), "a second abort is refused")
	})
	s.env.ExecuteWorkflow(Release, s.input())
	res := s.result()
	s.Equal(PhaseAborted, res.Phase)
	s.Contains(res.Reason, "aborted by alice: customer reports")
	s.Equal(map[string]int{"us-east-1": 3, "eu-west-1": 5, "ap-southeast-1": 7}, s.rolledBack)
	for _, r := range res.Regions {
		s.Equal(PhaseRolledBack, r.Phase, r.Region)
		s.NotZero(r.RolledBackTo, r.Region)
	}
	s.Less(res.Duration(), 40*time.Minute, "the bake was cut short")
}

func (s *releaseSuite) TestFailingRegionStopsTheLineAndRollsBack() {
	in := s.input()
	// Three waves so there is a wave after the failure that must not start.
	in.Spec.Waves = []release.Wave{
		{Name: "canary", Regions: []string{"us-east-1"}, Bake: dur(time.Minute)},
		{Name: "eu", Regions: []string{"eu-west-1"}, Bake: dur(time.Minute)},
		{Name: "ap", Regions: []string{"ap-southeast-1"}, Bake: dur(time.Minute)},
	}
	s.failReady["eu-west-1"] = true
	s.env.ExecuteWorkflow(Release, in)
	res := s.result()
	s.Equal(PhaseRolledBack, res.Phase)
	s.Contains(res.Reason, "region eu-west-1 failed")
	s.Contains(res.Reason, "0/2 ready")
	s.Equal([]string{"us-east-1", "eu-west-1"}, s.upgraded, "the region after the failure was never touched")
	s.Equal(map[string]int{"us-east-1": 3, "eu-west-1": 5}, s.rolledBack, "both changed regions return to their previous revisions")
	byRegion := map[string]RegionResult{}
	for _, r := range res.Regions {
		byRegion[r.Region] = r
	}
	s.Equal(PhaseRolledBack, byRegion["eu-west-1"].Phase)
	s.Contains(byRegion["eu-west-1"].Error, "readiness")
	s.Equal(PhasePending, byRegion["ap-southeast-1"].Phase)
}

func (s *releaseSuite) TestRollbackPolicyFailedRegionOnly() {
	in := s.input()
	in.Spec.Rollback.Policy = release.RollbackFailed
	s.failReady["eu-west-1"] = true
	s.at(30*time.Minute, func() { s.ok(s.approve("alice")) })
	s.env.ExecuteWorkflow(Release, in)
	res := s.result()
	s.Equal(PhaseRolledBack, res.Phase)
	s.Equal(5, s.rolledBack["eu-west-1"])
	s.NotContains(s.rolledBack, "us-east-1")
}

func (s *releaseSuite) TestRollbackPolicyNoneLeavesRegions() {
	in := s.input()
	in.Spec.Rollback.Policy = release.RollbackNone
	s.failReady["us-east-1"] = true
	s.env.ExecuteWorkflow(Release, in)
	res := s.result()
	s.Equal(PhaseFailed, res.Phase)
	s.Empty(s.rolledBack)
}

func (s *releaseSuite) TestManualRollback() {
	s.at(5*time.Minute, func() { s.ok(s.update(UpdateRollback, Control{User: "alice", Reason: "latency"})) })
	s.env.ExecuteWorkflow(Release, s.input())
	res := s.result()
	s.Equal(PhaseRolledBack, res.Phase)
	s.Equal(map[string]int{"us-east-1": 3}, s.rolledBack)
	s.Contains(res.Reason, "rollback requested by alice: latency")
}

func (s *releaseSuite) TestPromoteSkipsTheRestOfABake() {
	s.at(2*time.Minute, func() { s.ok(s.update(UpdatePromote, Control{User: "alice"})) })
	var gateAt time.Time
	s.at(5*time.Minute, func() {
		st := s.status()
		s.Require().NotNil(st.Gate, "promoted canary reached the gate before its 10m bake ended")
		gateAt = st.Gate.Deadline.Add(-time.Hour)
		s.ok(s.approve("alice"))
	})
	s.env.ExecuteWorkflow(Release, s.input())
	res := s.result()
	s.Equal(PhaseSucceeded, res.Phase)
	s.Less(gateAt.Sub(res.Started), 5*time.Minute)
}

func (s *releaseSuite) TestGateOnlyWhenTerraformDestroys() {
	in := s.input()
	in.Spec.Waves[1].Gate.When = release.GateDestroys
	s.planSummary = terraform.Summary{Changes: 1}
	s.env.ExecuteWorkflow(Release, in)
	res := s.result()
	s.Equal(PhaseSucceeded, res.Phase, "no destroy, no gate")
	s.Empty(res.Approvals)
}

func (s *releaseSuite) TestPlanFailureChangesNothing() {
	s.planErr = temporal.NewNonRetryableApplicationError("Unsupported argument", terraform.ErrConfig, errors.New("main.tf:3"))
	s.env.ExecuteWorkflow(Release, s.input())
	res := s.result()
	s.Equal(PhaseFailed, res.Phase)
	s.Contains(res.Reason, "Unsupported argument")
	s.Empty(s.upgraded)
}

func (s *releaseSuite) TestDetailsTableAndSearchAttributes() {
	var details string
	var upserts []string
	s.env.OnUpsertTypedSearchAttributes(mock.Anything).Run(func(args mock.Arguments) {
		sa := args.Get(0).(temporal.SearchAttributes)
		if v, ok := sa.GetKeyword(temporal.NewSearchAttributeKeyKeyword(SearchAttrPhase)); ok {
			upserts = append(upserts, v)
		}
	}).Return(nil)
	s.at(30*time.Minute, func() {
		st := s.status()
		details = releaseDetails(&st)
		s.ok(s.approve("alice"))
	})
	s.env.ExecuteWorkflow(Release, s.input())
	s.Equal(PhaseSucceeded, s.result().Phase)
	s.Contains(details, "| wave | region | phase | step | revision | health |")
	s.Contains(details, "| canary | us-east-1 | succeeded | done | 3 → 4 |")
	s.Contains(details, "Gate **promote-to-rest**")
	s.ElementsMatch([]string{"queued", "planning", "awaiting-approval", "deploying", "succeeded"}, phasesSet(upserts))
	s.Equal(string(PhaseSucceeded), upserts[len(upserts)-1])
}

func (s *releaseSuite) TestSlackNotificationsAreOffThePath() {
	in := s.input()
	in.Spec.Notify = &release.Notify{Slack: &release.SlackNotify{Channel: "#releases"}}
	var a *slack.Activities
	var mu sync.Mutex
	var texts []string
	// Slack is down for the whole release: every call fails, and the
	// release still succeeds on time.
	s.env.OnActivity(a.Notify, mock.Anything, mock.Anything).Return(func(_ context.Context, in slack.NotifyInput) (*slack.MessageRef, error) {
		mu.Lock()
		texts = append(texts, in.Text)
		mu.Unlock()
		return nil, errors.New("slack: service unavailable")
	})
	s.env.OnActivity(a.PostGate, mock.Anything, mock.Anything).Return(nil, errors.New("slack: service unavailable"))
	s.at(30*time.Minute, func() { s.ok(s.approve("alice")) })
	s.env.ExecuteWorkflow(Release, in)
	res := s.result()
	s.Equal(PhaseSucceeded, res.Phase)
	s.Less(res.Duration(), 45*time.Minute)
	mu.Lock()
	defer mu.Unlock()
	s.NotEmpty(texts)
	s.True(strings.HasPrefix(texts[0], "Release of demo 1.4.2 started by ci"))
}

func TestReleaseIDIsDerived(t *testing.T) {
	require.Equal(t, "release-demo-1.4.2", ReleaseID("demo", "1.4.2"))
	require.Equal(t, "release-demo-1.4.2_rc_1", ReleaseID("demo", "1.4.2+rc/1"))
	require.Equal(t, "release-demo-1.4.2/eu-west-1", RegionID(ReleaseID("demo", "1.4.2"), "eu-west-1"))
}

func TestBadInputIsNotRetried(t *testing.T) {
	var ts testsuite.WorkflowTestSuite
	env := ts.NewTestWorkflowEnvironment()
	env.RegisterWorkflow(Release)
	env.ExecuteWorkflow(Release, &ReleaseInput{Version: "1"})
	require.True(t, env.IsWorkflowCompleted())
	var app *temporal.ApplicationError
	require.ErrorAs(t, env.GetWorkflowError(), &app)
	require.True(t, app.NonRetryable())
}

func phasesSet(ps []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range ps {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

func (s *releaseSuite) TestCancelledReleaseRollsBackAsAbort() {
	s.at(35*time.Minute, func() { s.env.CancelWorkflow() })
	s.at(30*time.Minute, func() { s.ok(s.approve("alice")) })
	s.env.ExecuteWorkflow(Release, s.input())
	res := s.result()
	s.Equal(PhaseAborted, res.Phase)
	// Who cancelled is read from the cancel request in the history.
	s.Equal("aborted by alice@laptop: cancel requested through Temporal", res.Reason)
	s.Equal(map[string]int{"us-east-1": 3, "eu-west-1": 5, "ap-southeast-1": 7}, s.rolledBack)
	s.Equal(1, s.laneReleases, "the lane is given back")
}

func (s *releaseSuite) TestSlackGateMessageRemindersAndClose() {
	in := s.input()
	in.Spec.Notify = &release.Notify{Slack: &release.SlackNotify{Channel: "#releases"}}
	gate := in.Spec.Waves[1].Gate
	gate.Reminders = []release.Duration{dur(15 * time.Minute)}
	var a *slack.Activities
	var mu sync.Mutex
	var posted []slack.GateMessage
	var closed []slack.CloseGateInput
	var reminded []slack.RemindInput
	var replies []slack.NotifyInput
	s.env.OnActivity(a.Notify, mock.Anything, mock.Anything).Return(func(_ context.Context, in slack.NotifyInput) (*slack.MessageRef, error) {
		mu.Lock()
		defer mu.Unlock()
		if in.ParentTS == "" {
			return &slack.MessageRef{Channel: "C1", TS: "100.1"}, nil
		}
		replies = append(replies, in)
		return &slack.MessageRef{Channel: in.Channel, TS: fmt.Sprintf("100.%d", len(replies)+1)}, nil
	})
	s.env.OnActivity(a.UpdateParent, mock.Anything, mock.Anything).Return(&slack.MessageRef{Channel: "C1", TS: "100.1"}, nil)
	s.env.OnActivity(a.PostGate, mock.Anything, mock.Anything).Return(func(_ context.Context, m slack.GateMessage) (*slack.MessageRef, error) {
		mu.Lock()
		defer mu.Unlock()
		posted = append(posted, m)
		return &slack.MessageRef{Channel: "C1", TS: "200.1"}, nil
	})
	s.env.OnActivity(a.CloseGate, mock.Anything, mock.Anything).Return(func(_ context.Context, c slack.CloseGateInput) (*slack.MessageRef, error) {
		mu.Lock()
		defer mu.Unlock()
		closed = append(closed, c)
		return &c.Ref, nil
	})
	s.env.OnActivity(a.Remind, mock.Anything, mock.Anything).Return(func(_ context.Context, r slack.RemindInput) (*slack.MessageRef, error) {
		mu.Lock()
		defer mu.Unlock()
		reminded = append(reminded, r)
		return &slack.MessageRef{Channel: "C1", TS: "300.1"}, nil
	})
	// The gate opens at 10m (after the canary's bake) with an hour to go:
	// the reminder fires at 55m; the approval comes at 58m.
	s.at(58*time.Minute, func() { s.ok(s.update(UpdateApprove, GateAnswer{User: "bob", UserID: "U123", Via: "slack"})) })
	s.env.ExecuteWorkflow(Release, in)
	s.Equal(PhaseSucceeded, s.result().Phase)

	mu.Lock()
	defer mu.Unlock()
	s.Require().Len(posted, 1, "one gate message")
	s.Equal("promote-to-rest", posted[0].Gate)
	s.Equal("100.1", posted[0].ThreadTS, "the gate message is part of the release's thread")
	s.Require().Len(posted[0].Regions, 2)
	s.Equal([]string{"terraform_data.release"}, posted[0].Regions[0].Terraform.Destroyed)
	s.Require().Len(reminded, 1)
	s.Equal(slack.MessageRef{Channel: "C1", TS: "200.1"}, reminded[0].Gate)
	s.Contains(reminded[0].Mention, "alice")
	s.Require().Len(closed, 1)
	s.Equal(slack.OutcomeApproved, closed[0].Outcome)
	s.Equal("U123", closed[0].ByID)
	s.Equal("C1", replies[0].Channel, "replies go to the parent's channel id")
	last := replies[len(replies)-1]
	s.Contains(last.Text, "Release finished: succeeded")
}
