package slackhook_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"

	"go.temporal.io/sdk/client"

	"github.com/keelson-dev/keelson/control"
	"github.com/keelson-dev/keelson/workflows"
)

// fakeReleases is the release side as the handler sees it: a status per
// release and a validator that behaves like the workflow's (approvers by
// name or id, approver groups as written in the release file), with
// Temporal's deduplication of Updates by id.
type fakeReleases struct {
	mu       sync.Mutex
	releases map[string]*fakeRelease
	calls    []answerCall
	// fail, when set, is returned by every Answer (Temporal unreachable).
	fail error
	// onAnswer, when set, is called as an Answer arrives.
	onAnswer func()
}

type fakeRelease struct {
	status    workflows.Status
	approvers []string
	groups    []string
	// updates are the outcomes of Updates already applied, by Update id.
	updates map[string]error
}

type answerCall struct {
	releaseID string
	approve   bool
	answer    workflows.GateAnswer
	updateID  string
}

func newFakeReleases() *fakeReleases {
	return &fakeReleases{releases: map[string]*fakeRelease{}}
}

// addGate adds a release waiting at gate.
func (f *fakeReleases) addGate(id, gate string, approvers, groups []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.releases[id] = &fakeRelease{
		status: workflows.Status{Application: "shop", Version: "1.4.2", Phase: workflows.PhaseAwaitGate,
			Gate: &workflows.GateStatus{Name: gate, Wave: "prod", Approvers: approvers, Groups: groups}},
		approvers: approvers, groups: groups, updates: map[string]error{},
	}
}

func (f *fakeReleases) setPhase(id string, p workflows.Phase) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.releases[id].status.Phase = p
	f.releases[id].status.Gate = nil
}

func (f *fakeReleases) answers() []answerCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeReleases) phase(id string) workflows.Phase {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.releases[id].status.Phase
}

func (f *fakeReleases) Status(_ context.Context, id string) (*workflows.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.releases[id]
	if !ok {
		return nil, &control.Error{Kind: control.ErrNotFound, Message: "release " + id + " not found"}
	}
	st := r.status
	return &st, nil
}

func (f *fakeReleases) Answer(_ context.Context, id string, approve bool, a workflows.GateAnswer, opts ...control.UpdateOption) error {
	name := workflows.UpdateReject
	if approve {
		name = workflows.UpdateApprove
	}
	uo := client.UpdateWorkflowOptions{WorkflowID: id, UpdateName: name}
	for _, o := range opts {
		o(&uo)
	}
	if f.onAnswer != nil {
		f.onAnswer()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, answerCall{releaseID: id, approve: approve, answer: a, updateID: uo.UpdateID})
	if f.fail != nil {
		return f.fail
	}
	r, ok := f.releases[id]
	if !ok {
		return &control.Error{Kind: control.ErrNotFound, Message: "release " + id + " not found"}
	}
	if prev, ok := r.updates[uo.UpdateID]; ok && uo.UpdateID != "" {
		return prev // Temporal returns the first outcome to a repeated Update id
	}
	err := r.validate(a)
	if err == nil {
		r.apply(approve, a)
		if uo.UpdateID != "" {
			r.updates[uo.UpdateID] = nil
		}
	}
	return err
}

func (r *fakeRelease) validate(a workflows.GateAnswer) error {
	refuse := func(format string, args ...any) error {
		reason := "refused: " + fmt.Sprintf(format, args...)
		return &control.Error{Kind: control.ErrRefused, Message: "approve refused: " + reason, Reason: reason}
	}
	if r.status.Phase.Done() {
		return &control.Error{Kind: control.ErrFinished, Message: "release already finished"}
	}
	if r.status.Gate == nil {
		return refuse("no gate waiting for an answer")
	}
	if a.Gate != "" && a.Gate != r.status.Gate.Name {
		return refuse("gate %s is not open", a.Gate)
	}
	if len(r.approvers) == 0 && len(r.groups) == 0 {
		return nil
	}
	for _, who := range r.approvers {
		if who == a.User || who == a.UserID {
			return nil
		}
	}
	for _, g := range a.Groups {
		if slices.Contains(r.groups, g) {
			return nil
		}
	}
	return refuse("user %s is not an approver of gate %s", a.User, r.status.Gate.Name)
}

func (r *fakeRelease) apply(approve bool, a workflows.GateAnswer) {
	r.status.Approvals = append(r.status.Approvals, workflows.Approval{Gate: r.status.Gate.Name, Approved: approve,
		User: a.User, UserID: a.UserID, Via: a.Via, Reason: a.Reason})
	r.status.Gate = nil
	if approve {
		r.status.Phase = workflows.PhaseDeploying
	} else {
		r.status.Phase = workflows.PhaseRejected
		r.status.Message = a.Reason
	}
}

// syncBuffer collects log lines written from the handler's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
