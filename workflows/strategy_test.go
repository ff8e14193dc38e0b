package workflows

import (
	"context"
	"fmt"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"

	"github.com/keelson-dev/keelson/activities/analysis"
	"github.com/keelson-dev/keelson/activities/helm"
	"github.com/keelson-dev/keelson/activities/traffic"
	"github.com/keelson-dev/keelson/release"
)

// progressive makes the test spec one region (us-east-1) with strategy st
// behind Route 53 weights, and records every traffic, Helm and analysis
// call in s.ops. verdicts are the analysis results, in order (passed when
// they run out).
func (s *releaseSuite) progressive(st *release.Strategy, verdicts ...analysis.Verdict) *ReleaseInput {
	in := s.input()
	spec := &in.Spec
	spec.Terraform = nil
	spec.Health = nil
	spec.Waves = []release.Wave{{Name: "canary", Regions: []string{"us-east-1"}, Bake: dur(5 * time.Minute)}}
	spec.Regions = spec.Regions[:1]
	spec.Regions[0].AWSRegion = "us-east-1"
	spec.Strategy = st
	spec.Traffic = &release.Traffic{Route53: &release.Route53Traffic{
		HostedZone: "lab.keelson.test", Record: "demo.us-east-1.lab.keelson.test",
		Stable: release.WeightedRecord{SetIdentifier: "stable", Value: "demo.demo.us-east-1.lab.keelson.test"},
		Canary: release.WeightedRecord{SetIdentifier: "canary", Value: "demo-canary.demo.us-east-1.lab.keelson.test"},
	}}
	maxRatio := 2.0
	spec.Analysis = []release.AnalysisCheck{{Name: "errors", Compare: release.CompareRatio, Max: &maxRatio,
		Prometheus: &release.PrometheusAnalysis{Address: "http://prometheus", Query: `sum(rate(errors{side="{{.Side}}"}[1m]))`}}}

	s.ops = nil
	sideRev := 0
	s.upgradeFn = func(u helm.UpgradeInput) (*helm.UpgradeResult, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if u.Target.Release == "demo"+SideSuffix {
			s.ops = append(s.ops, fmt.Sprintf("install side %s", u.Version))
			s.sideInputs = append(s.sideInputs, u)
			sideRev++
			return &helm.UpgradeResult{Revision: sideRev, Changed: true}, nil
		}
		s.ops = append(s.ops, fmt.Sprintf("upgrade stable %s", u.Version))
		s.stableInputs = append(s.stableInputs, u)
		if s.failStable {
			s.owners["us-east-1"] = u.Owner.RunID
			return nil, temporal.NewNonRetryableApplicationError("revision 4 failed after Helm began applying it", helm.ErrUpgradeFailed, nil)
		}
		prev := s.revisions["us-east-1"]
		s.revisions["us-east-1"] = prev + 1
		s.owners["us-east-1"] = u.Owner.RunID
		return &helm.UpgradeResult{Revision: prev + 1, PreviousRevision: prev, Changed: true}, nil
	}
	s.rollbackFn = func(r helm.RollbackInput) (*helm.RollbackResult, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if r.Uninstall {
			s.ops = append(s.ops, "uninstall "+r.Target.Release)
			return &helm.RollbackResult{Uninstalled: true}, nil
		}
		s.ops = append(s.ops, fmt.Sprintf("rollback %s to %d", r.Target.Release, r.Revision))
		s.rolledBack[r.Target.Region] = r.Revision
		return &helm.RollbackResult{Revision: r.Revision + 10}, nil
	}
	s.snapshotFn = func(t helm.Target) (*helm.Revision, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if t.Release == "demo"+SideSuffix {
			return &helm.Revision{}, nil
		}
		rev := s.revisions[t.Region]
		if s.failStable && s.owners["us-east-1"] != "" {
			// The failed upgrade made revision 4.
			return &helm.Revision{Revision: rev + 1, Deployed: rev, Status: "failed", RunID: s.owners["us-east-1"]}, nil
		}
		return &helm.Revision{Revision: rev, Deployed: rev, Status: "deployed", Version: "1.4.1"}, nil
	}

	var ta *traffic.Activities
	s.env.RegisterActivity(ta)
	s.env.OnActivity(ta.SetWeights, mock.Anything, mock.Anything).Return(func(_ context.Context, in traffic.SetInput) (traffic.SetResult, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.ops = append(s.ops, fmt.Sprintf("traffic %d/%d", in.Weights[SideStable], in.Weights[SideCanary]))
		s.Equal("demo.us-east-1.lab.keelson.test", in.Target.Route53.Name)
		return traffic.SetResult{After: in.Weights, Changed: true}, nil
	})
	var aa *analysis.Activities
	s.env.RegisterActivity(aa)
	s.analysisInputs = nil
	s.env.OnActivity(aa.Run, mock.Anything, mock.Anything).Return(func(ctx context.Context, in analysis.RunInput) (analysis.RunResult, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.analysisInputs = append(s.analysisInputs, in)
		v := analysis.Passed
		if len(verdicts) > 0 {
			v, verdicts = verdicts[0], verdicts[1:]
		}
		s.ops = append(s.ops, "analysis "+string(v))
		res := analysis.RunResult{Verdict: v, Samples: 6, SamplesKey: in.SamplesKey}
		if v != analysis.Passed {
			val := 4.5
			res.Reason = "errors: 4.5 > max 2"
			res.DecidedAt = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
			res.Checks = []analysis.CheckResult{{Name: "errors", Verdict: v, Samples: 6, Failures: 1,
				Deciding: []analysis.Sample{{Time: res.DecidedAt, Check: "errors", Value: &val, Reason: "4.5 > max 2"}}}}
		}
		return res, nil
	})
	return in
}

func weight(w int) *int { return &w }

func canary() *release.Strategy {
	return &release.Strategy{Canary: &release.Canary{
		Values: release.Values{"replicas": 1},
		Steps: []release.CanaryStep{
			{SetWeight: weight(10)},
			{Analysis: &release.AnalysisStep{Checks: []string{"errors"}, Duration: dur(time.Minute)}},
			{SetWeight: weight(50)},
			{Pause: &release.Pause{Duration: dur(2 * time.Minute)}},
			{Analysis: &release.AnalysisStep{Checks: []string{"errors"}, Duration: dur(time.Minute)}},
			{SetWeight: weight(100)},
		},
	}}
}

func (s *releaseSuite) TestCanaryStepsThenPromotion() {
	s.env.ExecuteWorkflow(Release, s.progressive(canary()))
	res := s.result()
	s.Equal(PhaseSucceeded, res.Phase, res.Reason)
	s.Equal([]string{
		"install side 1.4.2",
		"traffic 90/10", "analysis passed",
		"traffic 50/50", "analysis passed",
		"traffic 0/100",
		"upgrade stable 1.4.2", "traffic 100/0", "uninstall demo-canary",
	}, s.ops)
	rr := res.Regions[0]
	s.Equal("canary", rr.Strategy)
	s.Equal(map[string]int{"stable": 100, "canary": 0}, rr.Traffic)
	s.Require().Len(rr.Analysis, 2)
	s.Equal("passed", rr.Analysis[0].Verdict)
	s.Equal(3, rr.PreviousRevision)
	s.Equal(4, rr.Revision)
	s.False(rr.SideLeft)
	s.Equal(map[string]any{"replicas": float64(1)}, s.sideInputs[0].SideValues, "the canary side gets the strategy's values")
	s.Nil(s.stableInputs[0].SideValues)
	s.Require().Len(s.analysisInputs, 2)
	s.Equal("1.4.1", s.analysisInputs[0].StableVersion, "the stable version is the one recorded before the release")
	s.Equal("1.4.2", s.analysisInputs[0].CanaryVersion)
	s.Equal(SideCanary, s.analysisInputs[0].Side)
	s.NotEqual(s.analysisInputs[0].SamplesKey, s.analysisInputs[1].SamplesKey, "each analysis keeps its own samples")
}

func (s *releaseSuite) TestCanaryAnalysisFailureSendsTrafficBackFirst() {
	s.env.ExecuteWorkflow(Release, s.progressive(canary(), analysis.Failed))
	res := s.result()
	s.Equal(PhaseRolledBack, res.Phase)
	s.Contains(res.Reason, "analysis failed: errors: 4.5 > max 2")
	s.Equal([]string{"install side 1.4.2", "traffic 90/10", "analysis failed", "traffic 100/0", "uninstall demo-canary"}, s.ops,
		"traffic goes back to stable before the side is removed, and the stable release is never touched")
	rr := res.Regions[0]
	s.Require().NotNil(rr.AutoRollback)
	s.False(rr.AutoRollback.DecidedAt.IsZero())
	s.False(rr.AutoRollback.TrafficAt.IsZero())
	s.False(rr.AutoRollback.HelmAt.IsZero())
	s.Equal(3, rr.AutoRollback.StableRevision)
	s.False(rr.Changed)
	s.Require().Len(rr.Analysis, 1)
	s.Require().Len(rr.Analysis[0].Deciding, 1, "the deciding samples are in the result")
	s.Equal(4.5, *rr.Analysis[0].Deciding[0].Value)
	s.Equal(map[string]int{"stable": 100, "canary": 0}, rr.Traffic)
}

func (s *releaseSuite) TestCanaryInconclusiveWaitsForAPersonThenResumes() {
	var paused Status
	s.at(10*time.Minute, func() {
		paused = s.status()
		s.ok(s.update(UpdateResume, Control{User: "alice"}))
	})
	s.env.ExecuteWorkflow(Release, s.progressive(canary(), analysis.Inconclusive))
	res := s.result()
	s.Equal(PhasePaused, paused.Waves[0].Regions[0].Phase)
	s.Contains(paused.Waves[0].Regions[0].Step, "inconclusive")
	s.Contains(paused.Waves[0].Regions[0].Analysis, "errors: 4.5 > max 2")
	s.Equal(PhaseSucceeded, res.Phase)
	s.True(res.Regions[0].Analysis[0].Accepted)
}

func (s *releaseSuite) TestCanaryInconclusiveThenAbortReverts() {
	s.at(10*time.Minute, func() { s.ok(s.update(UpdateAbort, Control{User: "alice", Reason: "no data"})) })
	s.env.ExecuteWorkflow(Release, s.progressive(canary(), analysis.Inconclusive))
	res := s.result()
	s.Equal(PhaseAborted, res.Phase)
	s.Equal([]string{"install side 1.4.2", "traffic 90/10", "analysis inconclusive", "traffic 100/0", "uninstall demo-canary"}, s.ops)
}

func (s *releaseSuite) TestCanaryPauseUntilPromoted() {
	st := &release.Strategy{Canary: &release.Canary{Steps: []release.CanaryStep{
		{SetWeight: weight(20)}, {Pause: &release.Pause{}}, {SetWeight: weight(100)},
	}}}
	var waiting Status
	s.at(time.Hour, func() {
		waiting = s.status()
		s.ok(s.update(UpdatePromote, Control{User: "alice"}))
	})
	s.env.ExecuteWorkflow(Release, s.progressive(st))
	res := s.result()
	s.Contains(waiting.Waves[0].Regions[0].Step, "pause until promoted")
	s.Equal(map[string]int{"stable": 80, "canary": 20}, waiting.Waves[0].Regions[0].Traffic)
	s.Equal(PhaseSucceeded, res.Phase)
	s.Equal(time.Hour+5*time.Minute, res.Regions[0].Duration.Round(time.Minute), "the promote ended the pause, not the bake after it")
}

func (s *releaseSuite) TestCanaryPromotionFailureRollsStableBackBeforeTraffic() {
	s.failStable = true
	s.env.ExecuteWorkflow(Release, s.progressive(canary()))
	res := s.result()
	s.Equal(PhaseRolledBack, res.Phase)
	n := len(s.ops)
	s.Require().GreaterOrEqual(n, 3)
	s.Equal([]string{"upgrade stable 1.4.2", "rollback demo to 3", "traffic 100/0", "uninstall demo-canary"}, s.ops[n-4:],
		"the stable release returns to its revision before traffic goes back to it")
	s.False(res.Regions[0].SideLeft)
}

func (s *releaseSuite) TestBlueGreenSwitchesAtOnce() {
	st := &release.Strategy{BlueGreen: &release.BlueGreen{
		PrePromotion:   &release.AnalysisStep{Checks: []string{"errors"}},
		ScaleDownDelay: dur(10 * time.Minute),
	}}
	s.env.ExecuteWorkflow(Release, s.progressive(st))
	res := s.result()
	s.Equal(PhaseSucceeded, res.Phase, res.Reason)
	s.Equal([]string{"install side 1.4.2", "analysis passed", "traffic 0/100", "upgrade stable 1.4.2", "traffic 100/0", "uninstall demo-canary"}, s.ops,
		"one switch of all traffic; the old version stays until the scale-down delay ends")
	s.Equal(10*time.Minute+5*time.Minute, res.Regions[0].Duration.Round(time.Minute))
}

func (s *releaseSuite) TestBlueGreenRollbackIsASwitchBack() {
	st := &release.Strategy{BlueGreen: &release.BlueGreen{
		PostPromotion:  &release.AnalysisStep{Checks: []string{"errors"}},
		ScaleDownDelay: dur(10 * time.Minute),
	}}
	s.env.ExecuteWorkflow(Release, s.progressive(st, analysis.Failed))
	res := s.result()
	s.Equal(PhaseRolledBack, res.Phase)
	s.Equal([]string{"install side 1.4.2", "traffic 0/100", "analysis failed", "traffic 100/0", "uninstall demo-canary"}, s.ops)
}

func (s *releaseSuite) TestBlueGreenManualPromotion() {
	st := &release.Strategy{BlueGreen: &release.BlueGreen{ManualPromotion: true, ScaleDownDelay: dur(time.Minute)}}
	var waiting Status
	s.at(30*time.Minute, func() {
		waiting = s.status()
		s.ok(s.update(UpdatePromote, Control{User: "alice"}))
	})
	s.env.ExecuteWorkflow(Release, s.progressive(st))
	res := s.result()
	s.Contains(waiting.Waves[0].Regions[0].Step, "waiting for promote")
	s.Equal([]string{"install side 1.4.2"}, s.ops[:1])
	s.Equal(PhaseSucceeded, res.Phase)
}

func (s *releaseSuite) TestRollingSetsSurgeAndUnavailability() {
	st := &release.Strategy{Rolling: &release.Rolling{BatchSize: 2, BatchPause: dur(5 * time.Second),
		Analysis: &release.AnalysisStep{Checks: []string{"errors"}}}}
	s.env.ExecuteWorkflow(Release, s.progressive(st))
	res := s.result()
	s.Equal(PhaseSucceeded, res.Phase, res.Reason)
	s.Equal([]string{"upgrade stable 1.4.2", "analysis passed"}, s.ops)
	s.Equal(&helm.RollingUpdate{MaxSurge: 2, MaxUnavailable: 0, MinReadySeconds: 5}, s.stableInputs[0].Rolling)
	s.Equal(SideStable, s.analysisInputs[0].Side, "a rolling release has one side")
	s.Equal("rolling", res.Regions[0].Strategy)
}

func (s *releaseSuite) TestRollingAnalysisFailureRollsBack() {
	st := &release.Strategy{Rolling: &release.Rolling{MaxSurge: 1, MaxUnavailable: 1,
		Analysis: &release.AnalysisStep{Checks: []string{"errors"}}}}
	s.env.ExecuteWorkflow(Release, s.progressive(st, analysis.Failed))
	res := s.result()
	s.Equal(PhaseRolledBack, res.Phase)
	s.Equal([]string{"upgrade stable 1.4.2", "analysis failed", "rollback demo to 3"}, s.ops)
}

func (s *releaseSuite) TestCanaryFirstInstallGoesAllAtOnce() {
	in := s.progressive(canary())
	s.revisions["us-east-1"] = 0
	s.env.ExecuteWorkflow(Release, in)
	res := s.result()
	s.Equal(PhaseSucceeded, res.Phase, res.Reason)
	s.Equal([]string{"upgrade stable 1.4.2"}, s.ops, "no stable side to compare with: no canary")
	s.Equal("canary (first install: all at once)", res.Regions[0].Strategy)
}
