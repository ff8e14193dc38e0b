package workflows

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/keelson-dev/keelson/activities/analysis"
	"github.com/keelson-dev/keelson/activities/helm"
	"github.com/keelson-dev/keelson/activities/traffic"
	"github.com/keelson-dev/keelson/release"
)

// failoverFixture is the test spec with a failover section over its three
// regions, judged by an absolute error-rate check. failing names the
// region whose health check fails, and the round in which it does; the
// failover name's weights live in s.weights, read and set by the traffic
// mocks, and every Helm rollback is recorded in order.
type failoverFixture struct {
	weights    traffic.Weights
	sets       []traffic.Weights
	rounds     map[string]int
	inputs     []analysis.RunInput
	rollbacks  []string
	failRegion string
	failRound  int
}

func (s *releaseSuite) failover(f *failoverFixture) *ReleaseInput {
	in := s.input()
	maxRate := 0.05
	in.Spec.Analysis = []release.AnalysisCheck{{Name: "health", Max: &maxRate,
		Prometheus: &release.PrometheusAnalysis{Address: "http://prometheus", Query: `sum(rate(errors{region="{{.Region}}"}[1m]))`}}}
	in.Spec.Failover = &release.Failover{HostedZone: "lab.keelson.test", Record: "demo.lab.keelson.test", Check: "health",
		Regions: []release.FailoverRecord{
			{Region: "us-east-1", SetIdentifier: "us-east-1", Value: "demo.us-east-1.lab.keelson.test", Weight: 100},
			{Region: "eu-west-1", SetIdentifier: "eu-west-1", Value: "demo.eu-west-1.lab.keelson.test", Weight: 100},
			{Region: "ap-southeast-1", SetIdentifier: "ap-southeast-1", Value: "demo.ap-southeast-1.lab.keelson.test", Weight: 50},
		}}
	f.rounds = map[string]int{}
	var ta *traffic.Activities
	s.env.RegisterActivity(ta)
	s.env.OnActivity(ta.GetWeights, mock.Anything, mock.Anything).Return(func(_ context.Context, t traffic.Target) (traffic.Weights, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.Equal("demo.lab.keelson.test", t.Route53.Name)
		return maps.Clone(f.weights), nil
	})
	s.env.OnActivity(ta.SetWeights, mock.Anything, mock.Anything).Return(func(_ context.Context, in traffic.SetInput) (traffic.SetResult, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.Equal("demo.lab.keelson.test", in.Target.Route53.Name)
		f.sets = append(f.sets, in.Weights)
		maps.Copy(f.weights, in.Weights)
		return traffic.SetResult{Before: nil, After: maps.Clone(f.weights), Changed: true}, nil
	})
	var aa *analysis.Activities
	s.env.RegisterActivity(aa)
	// A round takes its duration on the workflow's clock, as the real
	// activity does.
	s.env.OnActivity(aa.Run, mock.Anything, mock.Anything).After(failoverRound).Return(func(_ context.Context, in analysis.RunInput) (analysis.RunResult, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		f.inputs = append(f.inputs, in)
		f.rounds[in.Region]++
		if in.Region != f.failRegion || f.rounds[in.Region] != f.failRound {
			return analysis.RunResult{Verdict: analysis.Passed, Samples: 30, SamplesKey: in.SamplesKey}, nil
		}
		at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
		v := 0.5
		return analysis.RunResult{Verdict: analysis.Failed, Reason: "health: 0.5 > max 0.05", Samples: 12, SamplesKey: in.SamplesKey, DecidedAt: at,
			Checks: []analysis.CheckResult{{Name: "health", Verdict: analysis.Failed, Samples: 12, Failures: 2,
				Deciding: []analysis.Sample{{Time: at, Check: "health", Value: &v, Reason: "0.5 > max 0.05"}}}}}, nil
	})
	s.rollbackFn = func(r helm.RollbackInput) (*helm.RollbackResult, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		f.rollbacks = append(f.rollbacks, r.Target.Region)
		s.rolledBack[r.Target.Region] = r.Revision
		s.revisions[r.Target.Region]++
		return &helm.RollbackResult{Revision: s.revisions[r.Target.Region]}, nil
	}
	return in
}

// A region that finished (us-east-1, wave canary) fails its health check
// while the next wave bakes: its share goes to the other two regions, the
// line stops (the bake is cut short) and the release rolls back, the last
// wave first. Nothing gives the share back.
func (s *releaseSuite) TestFailoverMovesTheShareAndStopsTheLine() {
	// us-east-1 finishes at 10m; rounds end at 15, 20, 25, 30, 35m: the
	// fifth fails while the rest wave (approved at 30m) bakes.
	f := &failoverFixture{weights: traffic.Weights{"us-east-1": 100, "eu-west-1": 100, "ap-southeast-1": 50}, failRegion: "us-east-1", failRound: 5}
	in := s.failover(f)
	s.at(30*time.Minute, func() { s.ok(s.approve("alice")) })
	s.env.ExecuteWorkflow(Release, in)
	res := s.result()

	s.Equal(PhaseRolledBack, res.Phase)
	s.Contains(res.Reason, "failover: region us-east-1 failed check health after it finished (health: 0.5 > max 0.05)")
	s.Contains(res.Reason, "its share moved to ap-southeast-1, eu-west-1 until `keelson traffic restore us-east-1`")
	s.Equal([]traffic.Weights{{"us-east-1": 0}}, f.sets, "one change: the failing region to 0")
	s.Equal(traffic.Weights{"us-east-1": 0, "eu-west-1": 100, "ap-southeast-1": 50}, f.weights, "the share stays with the others after the release")
	s.Require().Len(res.Failovers, 1)
	fo := res.Failovers[0]
	s.Equal("us-east-1", fo.Region)
	s.Equal("health", fo.Check)
	s.Equal(map[string]int{"us-east-1": 100, "eu-west-1": 100, "ap-southeast-1": 50}, fo.Before)
	s.Equal(map[string]int{"us-east-1": 0, "eu-west-1": 100, "ap-southeast-1": 50}, fo.After)
	s.False(fo.TrafficAt.IsZero())
	s.Require().Len(fo.Deciding, 1)
	s.Equal("0.5 > max 0.05", fo.Deciding[0].Reason)
	s.Empty(fo.Error)

	// The line stopped: the rest wave's bake was cut short, and every
	// region rolled back, the last wave first.
	s.Less(res.Duration(), 40*time.Minute)
	s.Require().Len(f.rollbacks, 3)
	s.ElementsMatch([]string{"eu-west-1", "ap-southeast-1"}, f.rollbacks[:2])
	s.Equal("us-east-1", f.rollbacks[2])
	s.Equal(map[string]int{"us-east-1": 3, "eu-west-1": 5, "ap-southeast-1": 7}, s.rolledBack)

	// The failover was watched on the stable side of the new version, in
	// rounds with their own samples.
	for _, ri := range f.inputs {
		s.Equal(SideStable, ri.Side)
		s.Equal("1.4.2", ri.StableVersion)
		s.Equal([]string{"health"}, checkNames(ri.Checks))
		s.Contains(ri.SamplesKey, "/failover-")
	}
	s.Equal(5, f.rounds["us-east-1"])

	// Status shows it too, and the region as failed over.
	st := s.status()
	s.Require().Len(st.Failovers, 1)
	s.Equal("us-east-1", st.Failovers[0].Region)
}

// The last region with a share keeps it: a failover never sends users
// nowhere. The line stops all the same.
func (s *releaseSuite) TestFailoverKeepsTheLastShare() {
	f := &failoverFixture{weights: traffic.Weights{"us-east-1": 100, "eu-west-1": 0, "ap-southeast-1": 0}, failRegion: "us-east-1", failRound: 2}
	in := s.failover(f)
	s.env.ExecuteWorkflow(Release, in)
	res := s.result()
	s.Empty(f.sets, "no weight changed")
	s.Require().Len(res.Failovers, 1)
	s.Contains(res.Failovers[0].Error, "no other region has a share")
	s.Equal(PhaseRolledBack, res.Phase)
	s.Contains(res.Reason, "failover: region us-east-1 failed check health")
	s.Equal(map[string]int{"us-east-1": 3}, s.rolledBack, "the rest wave never started")
}

// Healthy regions are watched until the release ends, then no longer; no
// weight is ever set.
func (s *releaseSuite) TestFailoverWatchEndsWithTheRelease() {
	f := &failoverFixture{weights: traffic.Weights{"us-east-1": 100, "eu-west-1": 100, "ap-southeast-1": 50}}
	in := s.failover(f)
	s.at(30*time.Minute, func() { s.ok(s.approve("alice")) })
	s.env.ExecuteWorkflow(Release, in)
	res := s.result()
	s.Equal(PhaseSucceeded, res.Phase)
	s.Empty(res.Failovers)
	s.Empty(f.sets)
	// us-east-1 finished at 10m and the release at 40m: six rounds (the
	// sixth was cancelled at the end, so five completed and were counted
	// only if they returned before the end).
	s.GreaterOrEqual(f.rounds["us-east-1"], 5)
	s.LessOrEqual(f.rounds["us-east-1"], 6)
}

// A region outside the failover section is not watched; a file without
// failover never asks for the change.
func (s *releaseSuite) TestNoFailoverNoWatch() {
	in := s.input()
	var aa *analysis.Activities
	s.env.RegisterActivity(aa)
	called := 0
	s.env.OnActivity(aa.Run, mock.Anything, mock.Anything).Return(func(context.Context, analysis.RunInput) (analysis.RunResult, error) {
		called++
		return analysis.RunResult{Verdict: analysis.Passed}, nil
	})
	s.at(30*time.Minute, func() { s.ok(s.approve("alice")) })
	s.env.ExecuteWorkflow(Release, in)
	s.Equal(PhaseSucceeded, s.result().Phase)
	s.Zero(called)
}

// Manual rollback of one wave: only its regions go back.
func (s *releaseSuite) TestManualRollbackOfAWave() {
	s.at(30*time.Minute, func() { s.ok(s.approve("alice")) })
	s.at(35*time.Minute, func() {
		s.refused(s.update(UpdateRollback, Control{User: "alice", Waves: []string{"nope"}}), "unknown wave")
		s.ok(s.update(UpdateRollback, Control{User: "alice", Reason: "eu errors", Waves: []string{"rest"}}))
	})
	s.env.ExecuteWorkflow(Release, s.input())
	res := s.result()
	s.Equal(PhaseRolledBack, res.Phase)
	s.Equal(map[string]int{"eu-west-1": 5, "ap-southeast-1": 7}, s.rolledBack)
	for _, r := range res.Regions {
		if r.Region == "us-east-1" {
			s.Equal(PhaseSucceeded, r.Phase)
			s.Zero(r.RolledBackTo)
		}
	}
}

func checkNames(cs []release.AnalysisCheck) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

// TrafficRestore sets the region's weight back to the file's and records
// the weights before and after.
func TestTrafficRestore(t *testing.T) {
	var ts testsuite.WorkflowTestSuite
	env := ts.NewTestWorkflowEnvironment()
	env.RegisterWorkflow(TrafficRestore)
	var ta *traffic.Activities
	env.RegisterActivity(ta)
	weights := traffic.Weights{"us-east-1": 0, "eu-west-1": 100}
	env.OnActivity(ta.GetWeights, mock.Anything, mock.Anything).Return(func(context.Context, traffic.Target) (traffic.Weights, error) {
		return maps.Clone(weights), nil
	})
	var set []traffic.Weights
	env.OnActivity(ta.SetWeights, mock.Anything, mock.Anything).Return(func(_ context.Context, in traffic.SetInput) (traffic.SetResult, error) {
		set = append(set, in.Weights)
		maps.Copy(weights, in.Weights)
		return traffic.SetResult{After: maps.Clone(weights), Changed: true}, nil
	})
	fo := release.Failover{HostedZone: "lab.keelson.test", Record: "demo.lab.keelson.test", Check: "health", Regions: []release.FailoverRecord{
		{Region: "us-east-1", SetIdentifier: "us-east-1", Value: "a", Weight: 70},
		{Region: "eu-west-1", SetIdentifier: "eu-west-1", Value: "b", Weight: 100},
	}}
	env.ExecuteWorkflow(TrafficRestore, &TrafficRestoreInput{ReleaseID: "release-demo-1.0.0", Application: "demo", Region: "us-east-1", Failover: fo, User: "erin", Reason: "database fixed"})
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var res TrafficRestoreResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, []traffic.Weights{{"us-east-1": 70}}, set)
	require.Equal(t, map[string]int{"us-east-1": 0, "eu-west-1": 100}, res.Before)
	require.Equal(t, map[string]int{"us-east-1": 70, "eu-west-1": 100}, res.After)
	require.Equal(t, "erin", res.User)

	// A region the failover name does not hold is refused before anything.
	env = ts.NewTestWorkflowEnvironment()
	env.RegisterWorkflow(TrafficRestore)
	env.ExecuteWorkflow(TrafficRestore, &TrafficRestoreInput{Region: "mars-1", Failover: fo, User: "erin"})
	require.Error(t, env.GetWorkflowError())
	require.Contains(t, fmt.Sprint(env.GetWorkflowError()), "region mars-1 has no record in the failover name demo.lab.keelson.test")
}
