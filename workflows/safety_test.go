package workflows

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"

	"github.com/keelson-dev/keelson/activities/helm"
	"github.com/keelson-dev/keelson/activities/terraform"
	"github.com/keelson-dev/keelson/release"
)

// Tests of the paths added with changeOwnership (safety.go, lane.go).

func (s *releaseSuite) TestQueuedBehindTheRunningRelease() {
	s.holdLane = true
	in := s.input()
	s.at(time.Second, func() {
		s.env.SignalWorkflow(SignalLaneQueued, LaneQueued{Holder: "release-demo-1.4.1", Position: 1})
	})
	s.at(time.Minute, func() {
		st := s.status()
		s.Equal(PhaseQueued, st.Phase)
		s.Require().NotNil(st.Queue)
		s.Equal(QueueStatus{Behind: "release-demo-1.4.1", Position: 1}, *st.Queue)
		s.Empty(s.upgraded, "nothing changes while queued")
		s.Empty(s.plans, "nothing is even planned while queued")
		s.env.SignalWorkflow(SignalLaneGranted, LaneQueued{Holder: ReleaseID("demo", "1.4.2")})
	})
	s.at(40*time.Minute, func() { s.ok(s.approve("alice")) })
	s.env.ExecuteWorkflow(Release, in)
	res := s.result()
	s.Equal(PhaseSucceeded, res.Phase)
	s.Equal(1, s.laneAsks)
	s.Equal(1, s.laneReleases)
}

func (s *releaseSuite) TestAbortWhileQueuedChangesNothing() {
	s.holdLane = true
	in := s.input()
	s.at(time.Minute, func() { s.ok(s.update(UpdateAbort, Control{User: "bob", Reason: "superseded by release-demo-1.4.3"})) })
	s.env.ExecuteWorkflow(Release, in)
	res := s.result()
	s.Equal(PhaseAborted, res.Phase)
	s.Contains(res.Reason, "superseded by release-demo-1.4.3")
	s.Empty(s.plans)
	s.Empty(s.upgraded)
	s.Empty(s.rolledBack)
	s.Equal(1, s.laneReleases, "it leaves the queue")
}

func (s *releaseSuite) TestRollbackOfAnUnknownRegionIsRefused() {
	s.at(5*time.Minute, func() {
		s.refused(s.update(UpdateRollback, Control{User: "alice", Regions: []string{"eu-west-9"}}), "has no region eu-west-9")
	})
	s.at(30*time.Minute, func() { s.ok(s.approve("alice")) })
	s.env.ExecuteWorkflow(Release, s.input())
	s.Equal(PhaseSucceeded, s.result().Phase)
	s.Empty(s.rolledBack)
}

func (s *releaseSuite) TestPlanThatGrewOpensTheGateAgain() {
	grown := &terraform.PlanResult{PlanKey: "demo/1.4.2/eu-west-1/replan-abc.tfplan",
		Summary: terraform.Summary{Adds: 1, Destroys: 2, Destroyed: []string{"terraform_data.network", "terraform_data.release"}}}
	calls := 0
	s.verifyFn = func(in terraform.VerifyInput) (*terraform.VerifyResult, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if in.Stack.Region != "eu-west-1" {
			return &terraform.VerifyResult{}, nil
		}
		calls++
		if calls == 1 {
			return &terraform.VerifyResult{Stale: true, Plan: grown, Exceeds: []string{"replaces terraform_data.network (the approved plan did not)"}}, nil
		}
		return &terraform.VerifyResult{}, nil
	}
	var applied []string
	s.applyFn = func(in terraform.ApplyInput) (*terraform.ApplyResult, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		applied = append(applied, in.PlanKey)
		return &terraform.ApplyResult{Applied: true}, nil
	}
	s.at(30*time.Minute, func() { s.ok(s.approve("alice")) })
	s.at(40*time.Minute, func() {
		st := s.status()
		s.Equal(PhaseAwaitGate, st.Phase)
		s.Require().NotNil(st.Gate)
		s.Contains(st.Gate.Note, "terraform_data.network")
		var eu *GatePlan
		for i := range st.Gate.Plans {
			if st.Gate.Plans[i].Region == "eu-west-1" {
				eu = &st.Gate.Plans[i]
			}
		}
		s.Require().NotNil(eu)
		s.Contains(eu.Destroyed, "terraform_data.network")
		s.Empty(s.upgraded[1:], "the rest wave waits for the second approval")
		s.ok(s.approve("alice"))
	})
	s.env.ExecuteWorkflow(Release, s.input())
	res := s.result()
	s.Equal(PhaseSucceeded, res.Phase)
	s.Len(res.Approvals, 2)
	s.Contains(applied, grown.PlanKey, "the plan approved the second time is the one applied")
}

func (s *releaseSuite) TestRollbackRetriesUntilItSucceeds() {
	s.failReady["us-east-1"] = true
	failures := 0
	s.rollbackFn = func(in helm.RollbackInput) (*helm.RollbackResult, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if failures < 12 { // four rounds of three attempts
			failures++
			return nil, errors.New("dial tcp 127.0.0.1:26443: connect: connection refused")
		}
		s.rolledBack[in.Target.Region] = in.Revision
		s.revisions[in.Target.Region]++
		return &helm.RollbackResult{Revision: s.revisions[in.Target.Region]}, nil
	}
	sawRetrying := false
	for d := time.Second; d < 2*time.Minute; d += time.Second {
		s.at(d, func() {
			if strings.HasPrefix(s.status().Waves[0].Regions[0].Step, "rollback retrying: ") {
				sawRetrying = true
			}
		})
	}
	s.env.ExecuteWorkflow(Release, s.input())
	res := s.result()
	s.Equal(PhaseRolledBack, res.Phase)
	s.Equal(map[string]int{"us-east-1": 3}, s.rolledBack)
	s.True(sawRetrying, "the details table said the rollback was retrying")
}

func (s *releaseSuite) TestRollbackGivesUpAtItsDeadline() {
	in := s.input()
	in.Spec.Rollback.Deadline = dur(10 * time.Minute)
	s.failReady["us-east-1"] = true
	s.rollbackFn = func(helm.RollbackInput) (*helm.RollbackResult, error) { return nil, errors.New("connection refused") }
	s.env.ExecuteWorkflow(Release, in)
	res := s.result()
	s.Equal(PhaseFailed, res.Phase)
	s.Contains(res.Regions[0].Error, "rollback failed: connection refused")
	s.LessOrEqual(res.Finished.Sub(res.Started), 30*time.Minute)
}

func (s *releaseSuite) TestFailedUpgradeThatMadeARevisionIsRolledBack() {
	s.upgradeFn = func(in helm.UpgradeInput) (*helm.UpgradeResult, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		// Helm applied the objects, then a post-upgrade hook failed: the
		// failed revision is the run's own.
		s.revisions[in.Target.Region]++
		s.owners[in.Target.Region] = in.Owner.RunID
		return nil, temporal.NewNonRetryableApplicationError("upgrade demo in us-east-1: post-upgrade hooks failed", "HelmHookFailed", nil)
	}
	s.snapshotFn = func(t helm.Target) (*helm.Revision, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		rev := s.revisions[t.Region]
		return &helm.Revision{Revision: rev, Deployed: map[string]int{"us-east-1": 3, "eu-west-1": 5, "ap-southeast-1": 7}[t.Region], RunID: s.owners[t.Region]}, nil
	}
	s.env.ExecuteWorkflow(Release, s.input())
	res := s.result()
	s.Equal(PhaseRolledBack, res.Phase)
	s.True(res.Regions[0].Changed)
	s.Equal(map[string]int{"us-east-1": 3}, s.rolledBack)
}

func (s *releaseSuite) TestFailedFirstInstallIsUninstalled() {
	s.revisions = map[string]int{}
	s.failReady["us-east-1"] = true
	var uninstalled []string
	s.rollbackFn = func(in helm.RollbackInput) (*helm.RollbackResult, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if in.Revision != 0 || !in.Uninstall {
			return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("want an uninstall, got %+v", in), "Test", nil)
		}
		uninstalled = append(uninstalled, in.Target.Region)
		return &helm.RollbackResult{Uninstalled: true}, nil
	}
	s.env.ExecuteWorkflow(Release, s.input())
	res := s.result()
	s.Equal(PhaseRolledBack, res.Phase)
	s.Equal([]string{"us-east-1"}, uninstalled)
	s.Equal("uninstalled", s.status().Waves[0].Regions[0].Step)
}

func (s *releaseSuite) TestFailedFirstInstallKeptWhenTheFileSaysSo() {
	in := s.input()
	in.Spec.Rollback.FailedInstall = release.FailedInstallKeep
	s.revisions = map[string]int{}
	s.failReady["us-east-1"] = true
	s.rollbackFn = func(helm.RollbackInput) (*helm.RollbackResult, error) { return nil, errors.New("must not be called") }
	s.env.ExecuteWorkflow(Release, in)
	res := s.result()
	s.Equal(PhaseFailed, res.Phase)
	s.Contains(res.Regions[0].Error, "first install kept")
}

func (s *releaseSuite) TestForeignRevisionStopsTheRegionWithoutRollingItBack() {
	s.upgradeFn = func(in helm.UpgradeInput) (*helm.UpgradeResult, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if in.Target.Region == "eu-west-1" {
			return nil, temporal.NewNonRetryableApplicationError("upgrade demo in eu-west-1: revision 6 was not made by Keelson", helm.ErrForeignRevision, nil)
		}
		s.upgraded = append(s.upgraded, in.Target.Region)
		prev := s.revisions[in.Target.Region]
		s.revisions[in.Target.Region] = prev + 1
		s.owners[in.Target.Region] = in.Owner.RunID
		return &helm.UpgradeResult{Revision: prev + 1, PreviousRevision: prev, Changed: true}, nil
	}
	s.at(30*time.Minute, func() { s.ok(s.approve("alice")) })
	s.env.ExecuteWorkflow(Release, s.input())
	res := s.result()
	s.Equal(PhaseRolledBack, res.Phase)
	s.Contains(res.Reason, "revision 6 was not made by Keelson")
	s.NotContains(s.rolledBack, "eu-west-1", "a revision someone else made is never rolled back")
	s.Contains(s.rolledBack, "us-east-1")
}

func (s *releaseSuite) undoInput(to string) *ReleaseInput {
	in := s.input()
	in.Version = "before-1.4.1"
	in.Undo = &UndoInput{ReleaseID: "release-demo-1.4.1", RunID: "run-141", Version: "1.4.1", ToVersion: to, Regions: []RegionResult{
		{Region: "us-east-1", Wave: "canary", Changed: true, PreviousRevision: 3, Revision: 4},
		{Region: "eu-west-1", Wave: "rest", Changed: true, PreviousRevision: 5, Revision: 6},
		{Region: "ap-southeast-1", Wave: "rest", Changed: false, PreviousRevision: 7, Revision: 7},
	}}
	return in
}

func (s *releaseSuite) TestUndoReturnsRegionsInReverseWaveOrder() {
	var order []string
	var expects []*helm.Owner
	s.rollbackFn = func(in helm.RollbackInput) (*helm.RollbackResult, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		order = append(order, fmt.Sprintf("%s@%d", in.Target.Region, in.Revision))
		expects = append(expects, in.Expect)
		return &helm.RollbackResult{Revision: 10}, nil
	}
	s.at(time.Minute, func() {
		st := s.status()
		s.Require().NotNil(st.Gate, "the file's gate of the rest wave asks before the undo goes there")
		s.Contains(st.Gate.Note, "undo of release-demo-1.4.1")
		s.Empty(order)
		s.ok(s.approve("alice"))
	})
	s.env.ExecuteWorkflow(Release, s.undoInput(""))
	res := s.result()
	s.Equal(PhaseSucceeded, res.Phase)
	s.Equal([]string{"eu-west-1@5", "us-east-1@3"}, order, "rest first, then canary; ap-southeast-1 was not changed")
	for _, e := range expects {
		s.Equal(&helm.Owner{ReleaseID: "release-demo-1.4.1", RunID: "run-141"}, e)
	}
	s.Empty(s.plans)
	s.Empty(s.upgraded)
	s.Equal(1, s.laneReleases)
}

func (s *releaseSuite) TestUndoToAVersionTheRevisionsDoNotHoldChangesNothing() {
	var h *helm.Activities
	s.env.OnActivity(h.History, mock.Anything, mock.Anything).Return(func(_ context.Context, t helm.Target) ([]helm.Revision, error) {
		return []helm.Revision{{Revision: 3, Version: "1.3.0"}, {Revision: 4, Version: "1.4.1"}, {Revision: 5, Version: "1.2.0"}, {Revision: 6, Version: "1.4.1"}}, nil
	})
	s.rollbackFn = func(helm.RollbackInput) (*helm.RollbackResult, error) { return nil, errors.New("must not be called") }
	s.at(time.Minute, func() { s.ok(s.approve("alice")) })
	s.env.ExecuteWorkflow(Release, s.undoInput("1.3.0"))
	res := s.result()
	s.Equal(PhaseFailed, res.Phase)
	s.Contains(res.Reason, "eu-west-1: revision 5 holds version 1.2.0, not 1.3.0")
}
