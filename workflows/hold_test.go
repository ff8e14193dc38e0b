package workflows

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/keelson-dev/keelson/activities/helm"
	"github.com/keelson-dev/keelson/release"
)

// dublinHours are business hours in Dublin, for every region.
func dublinHours(in *ReleaseInput) {
	in.Spec.TimeZone = "Europe/Dublin"
	in.Spec.Windows = []release.Window{{Days: []string{"Mon-Thu"}, From: "09:00", To: "16:00"}}
}

// upgradeTimes records the workflow clock at each region's Helm upgrade.
func (s *releaseSuite) upgradeTimes() map[string]time.Time {
	at := map[string]time.Time{}
	var mu sync.Mutex
	s.upgradeFn = func(in helm.UpgradeInput) (*helm.UpgradeResult, error) {
		mu.Lock()
		at[in.Target.Region] = s.env.Now().UTC()
		mu.Unlock()
		s.mu.Lock()
		defer s.mu.Unlock()
		prev := s.revisions[in.Target.Region]
		s.revisions[in.Target.Region] = prev + 1
		return &helm.UpgradeResult{Revision: prev + 1, PreviousRevision: prev, Changed: true}, nil
	}
	return at
}

// A release started on Friday evening waits for Monday 09:00 in Dublin:
// across the spring-forward weekend that is 08:00Z, across the fall-back
// weekend 09:00Z.
func (s *releaseSuite) TestWaveWaitsForItsWindowAcrossDaylightSaving() {
	for _, tc := range []struct{ start, opens string }{
		{"2027-03-26T17:00:00Z", "2027-03-29T08:00:00Z"}, // GMT to IST
		{"2026-10-23T16:00:00Z", "2026-10-26T09:00:00Z"}, // IST to GMT
	} {
		s.SetupTest()
		s.env.SetStartTime(utcTime(tc.start))
		at := s.upgradeTimes()
		in := s.input()
		dublinHours(in)
		var held Status
		var plansWhileHeld int
		s.at(time.Hour, func() {
			held = s.status()
			s.mu.Lock()
			plansWhileHeld = len(s.plans)
			s.mu.Unlock()
		})
		// The second wave's gate opens after the first wave's 10m bake.
		s.at(utcTime(tc.opens).Sub(utcTime(tc.start))+20*time.Minute, func() { s.ok(s.approve("alice")) })
		s.env.ExecuteWorkflow(Release, in)
		res := s.result()
		s.Equal(PhaseSucceeded, res.Phase)
		s.Equal(utcTime(tc.opens), at["us-east-1"], "started %s", tc.start)

		s.Equal(PhaseHeld, held.Phase)
		s.Require().NotNil(held.Hold)
		s.Equal(HoldWindow, held.Hold.Kind)
		s.Equal(utcTime(tc.opens), held.Hold.Until.UTC())
		s.Contains(held.Message, "wave canary waits for its deploy windows: us-east-1 outside its deploy windows (Mon-Thu 09:00-16:00, Europe/Dublin)")
		s.Zero(plansWhileHeld, "nothing was planned while the wave waited")
	}
}

// A canary whose window closes during a pause holds before its next step,
// with its weights as they were, and goes on when the window opens again.
func (s *releaseSuite) TestWindowClosingMidRolloutHoldsAtTheNextStep() {
	s.env.SetStartTime(utcTime("2026-11-23T09:00:00Z")) // a Monday
	in := s.progressive(&release.Strategy{Canary: &release.Canary{Steps: []release.CanaryStep{
		{SetWeight: weight(10)}, {Pause: &release.Pause{Duration: dur(20 * time.Minute)}},
		{SetWeight: weight(50)}, {Pause: &release.Pause{Duration: dur(20 * time.Minute)}},
		{SetWeight: weight(100)},
	}}})
	in.Spec.Windows = []release.Window{{Days: []string{"Mon-Fri"}, From: "09:00", To: "09:30"}}
	var held Status
	var opsAtHold []string
	s.at(2*time.Hour, func() {
		held = s.status()
		s.mu.Lock()
		opsAtHold = append(opsAtHold, s.ops...)
		s.mu.Unlock()
	})
	s.env.ExecuteWorkflow(Release, in)
	res := s.result()
	s.Equal(PhaseSucceeded, res.Phase)
	// Held at 11:00 before the 100% step: 10 and 50 were set, not 100.
	s.Equal([]string{"install side 1.4.2", "traffic 90/10", "traffic 50/50"}, opsAtHold)
	rs := held.Waves[0].Regions[0]
	s.Equal(PhaseHeld, rs.Phase)
	s.Contains(rs.Step, "held before canary 5/5: set weight 100: outside its deploy windows")
	s.Contains(rs.Step, "until 2026-11-24T09:00:00Z")
	// It went on the next morning: the release ended after 09:00 Tuesday.
	s.True(res.Finished.After(utcTime("2026-11-24T09:00:00Z")), "finished %s", res.Finished)
}

// The stop-the-line switch holds a release at its next wave and lets it go
// when the freeze is lifted; the release subscribed and unsubscribed.
func (s *releaseSuite) TestFreezeHoldsAndReleases() {
	in := s.input()
	frozen := Hold{Held: true, Scope: "all", User: "sre-lead", Reason: "incident 4711"}
	s.at(5*time.Minute, func() { s.env.SignalWorkflow(SignalReleaseHold, frozen) })
	var held Status
	var plansWhileHeld int
	s.at(30*time.Minute, func() {
		held = s.status()
		s.mu.Lock()
		plansWhileHeld = len(s.plans)
		s.mu.Unlock()
	})
	s.at(2*time.Hour, func() { s.env.SignalWorkflow(SignalReleaseHold, Hold{}) })
	s.at(2*time.Hour+time.Minute, func() { s.ok(s.approve("alice")) })
	s.env.ExecuteWorkflow(Release, in)
	res := s.result()
	s.Equal(PhaseSucceeded, res.Phase)
	s.Equal(PhaseHeld, held.Phase)
	s.Require().NotNil(held.Hold)
	s.Equal(HoldFreeze, held.Hold.Kind)
	s.Equal("sre-lead", held.Hold.By)
	s.Contains(held.Message, "every application frozen by sre-lead")
	s.Equal(1, plansWhileHeld, "the second wave was not planned while frozen")
	s.Greater(res.Duration(), 2*time.Hour)
	s.Equal(1, s.subscribed)
	s.Equal(1, s.unsubscribed)
}

// Only the file's approvers may override its windows, with a reason; the
// override is recorded and the wave goes at once.
func (s *releaseSuite) TestOverrideWindowNeedsAnApprover() {
	s.env.SetStartTime(utcTime("2026-11-27T17:00:00Z")) // a Friday
	at := s.upgradeTimes()
	in := s.input()
	dublinHours(in)
	s.at(time.Hour, func() {
		s.refused(s.update(UpdateOverrideWindow, GateAnswer{User: "mallory", Reason: "hurry", Via: "cli"}), "not an approver")
		s.refused(s.update(UpdateOverrideWindow, GateAnswer{User: "alice", Via: "cli"}), "no reason")
		s.ok(s.update(UpdateOverrideWindow, GateAnswer{User: "alice", Reason: "security fix", Via: "cli"}))
		s.refused(s.update(UpdateOverrideWindow, GateAnswer{User: "alice", Reason: "again", Via: "cli"}), "already overridden")
	})
	s.at(2*time.Hour, func() { s.ok(s.approve("alice")) })
	s.env.ExecuteWorkflow(Release, in)
	res := s.result()
	s.Equal(PhaseSucceeded, res.Phase)
	s.Equal(utcTime("2026-11-27T18:00:00Z"), at["us-east-1"], "the wave went at the override")
	s.Require().NotEmpty(res.Approvals)
	s.Equal(UpdateOverrideWindow, res.Approvals[0].Gate)
	s.Equal("alice", res.Approvals[0].User)
	s.Equal("security fix", res.Approvals[0].Reason)
}

func utcTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// The switch: freezes reach the subscribed releases of their scope, and
// unfreezing needs a freeze in force.
func TestFreezeWorkflowTellsSubscribers(t *testing.T) {
	var ts testsuite.WorkflowTestSuite
	env := ts.NewTestWorkflowEnvironment()
	env.RegisterWorkflow(Freeze)
	var mu sync.Mutex
	told := map[string][]Hold{}
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, mock.Anything, SignalReleaseHold, mock.Anything).Return(func(_, id, _, _ string, arg any) error {
		mu.Lock()
		defer mu.Unlock()
		told[id] = append(told[id], arg.(Hold))
		return nil
	})
	type answer struct {
		done bool
		err  error
	}
	update := func(name string, q FreezeRequest) *answer {
		a := &answer{}
		env.UpdateWorkflow(name, "", &testsuite.TestUpdateCallback{
			OnReject:   func(err error) { a.done, a.err = true, err },
			OnAccept:   func() {},
			OnComplete: func(_ any, err error) { a.done, a.err = true, err },
		}, q)
		return a
	}
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalFreezeSubscribe, FreezeSubscriber{ReleaseID: "release-web-1", RunID: "r1", Application: "web"})
		env.SignalWorkflow(SignalFreezeSubscribe, FreezeSubscriber{ReleaseID: "release-api-1", RunID: "r2", Application: "api"})
	}, time.Second)
	var answers []*answer
	env.RegisterDelayedCallback(func() {
		answers = append(answers,
			update(UpdateFreeze, FreezeRequest{Application: "web", User: "sre", Reason: "db migration"}),
			update(UpdateFreeze, FreezeRequest{All: true, User: "sre"}),   // no reason: refused
			update(UpdateUnfreeze, FreezeRequest{All: true, User: "sre"}), // none in force: refused
		)
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		answers = append(answers, update(UpdateUnfreeze, FreezeRequest{Application: "web", User: "sre"}))
		env.SignalWorkflow(SignalFreezeUnsubscribe, FreezeSubscriber{ReleaseID: "release-api-1", RunID: "r2", Application: "api"})
	}, time.Hour)
	var state FreezeState
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryFreeze)
		require.NoError(t, err)
		require.NoError(t, v.Get(&state))
		env.CancelWorkflow()
	}, 2*time.Hour)
	env.ExecuteWorkflow(Freeze, &FreezeState{})

	require.Len(t, answers, 4)
	for i, a := range answers {
		require.True(t, a.done, "update %d never answered", i)
	}
	require.NoError(t, answers[0].err)
	require.ErrorContains(t, answers[1].err, "needs a reason")
	require.ErrorContains(t, answers[2].err, "no freeze of all applications")
	require.NoError(t, answers[3].err)
	// web: told at subscription (free), frozen, free again; api: only at
	// subscription, the freeze of web did not concern it.
	require.Len(t, told["release-web-1"], 3)
	require.False(t, told["release-web-1"][0].Held)
	require.True(t, told["release-web-1"][1].Held)
	require.Equal(t, "db migration", told["release-web-1"][1].Reason)
	require.False(t, told["release-web-1"][2].Held)
	require.Len(t, told["release-api-1"], 1)
	require.Equal(t, []FreezeSubscriber{{ReleaseID: "release-web-1", RunID: "r1", Application: "web"}}, state.Subscribers)
	require.Nil(t, state.All)
	require.Empty(t, state.Apps)
}
