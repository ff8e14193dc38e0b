package workflows

import (
	"crypto/ed25519"
	"crypto/rand"
	"time"

	"github.com/stretchr/testify/mock"
	"golang.org/x/crypto/ssh"

	"github.com/keelson-dev/keelson/activities/policy"
	"github.com/keelson-dev/keelson/identity"
)

// testRunID is the run ID the SDK's test environment gives a workflow.
const testRunID = "default-test-run-id"

type testPeople map[string]*identity.Signer

func newPeople(s *releaseSuite, ids ...string) testPeople {
	p := testPeople{}
	for _, id := range ids {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		s.Require().NoError(err)
		k, err := ssh.NewSignerFromKey(priv)
		s.Require().NoError(err)
		p[id] = identity.NewSigner(id, k)
	}
	return p
}

func (p testPeople) pub(id string) string {
	in := identity.Intent{Action: "probe", Release: "probe"}
	proof, _ := p[id].Sign(in, time.Now())
	return proof.Key
}

// enforce makes the worker's access policy the given one for the suite.
func (s *releaseSuite) enforce(a identity.Access) {
	var pa *policy.Activities
	a.Enforced = true
	s.env.OnActivity(pa.Access, mock.Anything, mock.Anything).Return(a, nil)
}

// accessFor: ci starts, alice, bob and ci approve, oncall operates; the
// Slack bridge has its key; mallory has a key nobody listed.
func accessFor(p testPeople) identity.Access {
	a := identity.Access{Policy: "access.yaml (test)", Bridges: []string{p.pub(identity.Bridge)},
		Starters: []string{"ci"}, Approvers: []string{"alice", "bob", "ci", "@release-managers"}, Operators: []string{"oncall"}}
	for _, id := range []string{"ci", "alice", "bob", "oncall"} {
		a.People = append(a.People, identity.Person{ID: id, Keys: []string{p.pub(id)}})
	}
	a.People[1].Slack = []string{"T1/U123"}
	return a
}

func (s *releaseSuite) signedInput(p testPeople, signer string) *ReleaseInput {
	in := s.input()
	proof, err := p[signer].Sign(StartIntent(ReleaseID("demo", "1.4.2"), in), s.env.Now())
	s.Require().NoError(err)
	in.StartProof = proof
	return in
}

// signedAnswer signs an approval (or rejection) of the gate open now.
func (s *releaseSuite) signedAnswer(p testPeople, signer string, approve bool, a GateAnswer) GateAnswer {
	st := s.status()
	s.Require().NotNil(st.Gate, "no gate open to answer")
	a.Proof, _ = p[signer].Sign(AnswerIntent(ReleaseID("demo", "1.4.2"), testRunID, approve, *st.Gate, a), s.env.Now())
	return a
}

func (s *releaseSuite) TestSignedApprovalsByTwoDistinctApprovers() {
	p := newPeople(s, "ci", "alice", "bob", "oncall", "mallory", identity.Bridge)
	s.enforce(accessFor(p))
	spec := testSpec()
	g := spec.Waves[1].Gate
	g.Approvers, g.ApproverGroups, g.Approvals = []string{"alice", "bob", "ci"}, nil, 2

	var refused []*updateResult
	var atGate, afterOne Status
	s.at(30*time.Minute, func() {
		atGate = s.status()
		base := GateAnswer{Gate: "promote-to-rest", User: "alice", Via: "cli"}
		// A name, no proof.
		refused = append(refused, s.update(UpdateApprove, base))
		// alice's name, mallory's key.
		forged := s.signedAnswer(p, "mallory", true, base)
		forged.Proof.Signer = "alice"
		refused = append(refused, s.update(UpdateApprove, forged))
		// alice's valid approval of another release's gate.
		other := base
		other.Proof, _ = p["alice"].Sign(AnswerIntent("release-other-2.0.0", testRunID, true, *atGate.Gate, base), s.env.Now())
		refused = append(refused, s.update(UpdateApprove, other))
		// The starter, an approver by the policy, may not approve.
		refused = append(refused, s.update(UpdateApprove, s.signedAnswer(p, "ci", true, GateAnswer{Gate: "promote-to-rest", User: "ci", Via: "cli"})))
		// oncall is an operator, not an approver.
		refused = append(refused, s.update(UpdateApprove, s.signedAnswer(p, "oncall", true, GateAnswer{Gate: "promote-to-rest", User: "oncall", Via: "cli"})))
		// An abort by an approver who is not an operator.
		abort := Control{User: "alice", Reason: "why not", Via: "cli"}
		abort.Proof, _ = p["alice"].Sign(ControlIntent(ReleaseID("demo", "1.4.2"), testRunID, UpdateAbort, abort), s.env.Now())
		refused = append(refused, s.update(UpdateAbort, abort))

		s.ok(s.update(UpdateApprove, s.signedAnswer(p, "alice", true, base)))
	})
	s.at(31*time.Minute, func() {
		afterOne = s.status()
		// alice again does not make two.
		refused = append(refused, s.update(UpdateApprove, s.signedAnswer(p, "alice", true, GateAnswer{Gate: "promote-to-rest", User: "alice", Via: "cli"})))
	})
	s.at(32*time.Minute, func() {
		s.ok(s.update(UpdateApprove, s.signedAnswer(p, "bob", true, GateAnswer{Gate: "promote-to-rest", User: "bob", Via: "cli", Reason: "looks good"})))
	})
	in := s.signedInput(p, "ci")
	in.Spec = spec
	s.env.ExecuteWorkflow(Release, in)
	res := s.result()

	wants := []string{"not signed", "is not one of alice's keys", "bad signature", "may not approve its gates", "oncall is not an approver", "alice is not an operator", "alice already approved"}
	s.Require().Len(refused, len(wants))
	for i, u := range refused {
		s.Require().Error(u.Err(), wants[i])
		s.Contains(u.Err().Error(), wants[i])
		s.False(u.accepted, wants[i])
	}
	s.Equal(PhaseSucceeded, res.Phase)
	s.Equal("ci", atGate.StartedBy)
	s.Contains(atGate.Access, "verified against access.yaml")
	s.Equal(2, atGate.Gate.Needed)
	s.Require().NotNil(afterOne.Gate, "one approval of two leaves the gate open")
	s.Equal([]string{"alice"}, afterOne.Gate.Approved)
	s.Require().Len(res.Approvals, 2)
	for i, who := range []string{"alice", "bob"} {
		a := res.Approvals[i]
		s.Equal(who, a.Identity)
		s.Equal(who, a.User)
		s.Equal(2, a.Needed)
		s.Contains(a.Key, "SHA256:")
	}
}

func (s *releaseSuite) TestUnsignedStartTouchesNothing() {
	p := newPeople(s, "ci", "alice", "bob", "oncall", identity.Bridge)
	s.enforce(accessFor(p))
	in := s.input()
	s.env.ExecuteWorkflow(Release, in)
	res := s.result()
	s.Equal(PhaseRejected, res.Phase)
	s.Contains(res.Reason, "start refused: not signed")
	s.Empty(s.plans, "nothing planned")
	s.Empty(s.upgraded, "nothing upgraded")
}

func (s *releaseSuite) TestStartByNonStarterIsRefused() {
	p := newPeople(s, "ci", "alice", "bob", "oncall", identity.Bridge)
	s.enforce(accessFor(p))
	s.env.ExecuteWorkflow(Release, s.signedInput(p, "alice"))
	res := s.result()
	s.Equal(PhaseRejected, res.Phase)
	s.Contains(res.Reason, "alice is not one of the starters of demo")
	s.Empty(s.upgraded)
}

// A Slack click relayed by the bridge: the user is who Slack says, never
// the name in the payload; a display name equal to an approver's id does
// not make an approver.
func (s *releaseSuite) TestSlackAnswersNameTheRealUser() {
	p := newPeople(s, "ci", "alice", "bob", "oncall", identity.Bridge)
	s.enforce(accessFor(p))
	var impostor *updateResult
	s.at(30*time.Minute, func() {
		// UEVE renamed herself "alice"; she is in no approver group.
		impostor = s.update(UpdateApprove, s.signedAnswer(p, identity.Bridge, true, GateAnswer{Gate: "promote-to-rest", User: "alice", UserID: "UEVE", Team: "T1", Via: "slack"}))
		// U123 is alice's Slack account.
		s.ok(s.update(UpdateApprove, s.signedAnswer(p, identity.Bridge, true, GateAnswer{Gate: "promote-to-rest", User: "Alice A.", UserID: "U123", Team: "T1", Via: "slack"})))
	})
	s.env.ExecuteWorkflow(Release, s.signedInput(p, "ci"))
	res := s.result()
	s.Require().Error(impostor.Err())
	s.Contains(impostor.Err().Error(), "slack:T1/UEVE is not an approver")
	s.Equal(PhaseSucceeded, res.Phase)
	s.Require().Len(res.Approvals, 1)
	a := res.Approvals[0]
	s.Equal("alice", a.Identity)
	s.Equal("U123", a.UserID)
	s.Equal("T1", a.Team)
	s.Equal("Alice A.", a.User, "the Slack display name stays as shown; Identity says who")
}
