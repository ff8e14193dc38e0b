package terraform

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
)

func TestExceeds(t *testing.T) {
	const (
		net     = "terraform_data.network"
		release = "terraform_data.release"
		rollout = "terraform_data.rollout"
		queue   = "terraform_data.queue"
	)
	// A new version: the release and rollout are replaced, the network is
	// changed in place.
	approved := Summary{
		Added:     []string{release, rollout},
		Changed:   []string{net},
		Destroyed: []string{release, rollout},
		Replaced:  []string{release, rollout},
	}
	cases := []struct {
		name     string
		approved *Summary // the new version's plan above when nil
		next     Summary
		want     []string
	}{
		{name: "identical", next: approved},
		{name: "empty next: nothing left to do", next: Summary{}},
		{name: "fewer changes: the part an interrupted apply left", next: Summary{Added: []string{rollout}}},
		{name: "a replace approved is now only a create", next: Summary{Added: []string{release, rollout}}},
		{name: "an address approved as changed is now created (drift put back)", next: Summary{Added: []string{net}}},
		{
			name: "destroy added",
			next: Summary{Added: []string{release, rollout}, Destroyed: []string{net, release, rollout}, Replaced: []string{release, rollout}},
			want: []string{"destroys terraform_data.network (the approved plan did not)"},
		},
		{
			name: "replace added",
			next: Summary{Added: []string{net, release, rollout}, Destroyed: []string{net, release, rollout}, Replaced: []string{net, release, rollout}},
			want: []string{"replaces terraform_data.network (the approved plan did not)"},
		},
		{
			name: "replace told by Added and Destroyed alone (a summary from before Replaced)",
			next: Summary{Added: []string{net}, Destroyed: []string{net}},
			want: []string{"replaces terraform_data.network (the approved plan did not)"},
		},
		{
			name: "destroy of an address not in the approved plan",
			next: Summary{Destroyed: []string{queue}},
			want: []string{"destroys terraform_data.queue (the approved plan did not)"},
		},
		{
			name: "new addresses created and changed, destroys first",
			next: Summary{Added: []string{"terraform_data.b", release}, Changed: []string{"terraform_data.a"}, Destroyed: []string{queue}},
			want: []string{
				"destroys terraform_data.queue (the approved plan did not)",
				"creates terraform_data.b (the approved plan did not touch it)",
				"changes terraform_data.a (the approved plan did not touch it)",
			},
		},
		{
			name:     "everything exceeds an empty approved plan",
			approved: &Summary{},
			next:     Summary{Added: []string{rollout}},
			want:     []string{"creates terraform_data.rollout (the approved plan did not touch it)"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := approved
			if c.approved != nil {
				a = *c.approved
			}
			require.Equal(t, c.want, Exceeds(a, c.next))
		})
	}
}

// stateOf reads the working copy's local state: its lineage and serial, and
// the addresses of its resources.
func (f *fixture) stateOf(st Stack) (stateMeta, []string) {
	f.t.Helper()
	b, err := os.ReadFile(filepath.Join(f.workCopy(st), "terraform.tfstate"))
	require.NoError(f.t, err)
	var state struct {
		stateMeta
		Resources []struct {
			Type string `json:"type"`
			Name string `json:"name"`
		} `json:"resources"`
	}
	require.NoError(f.t, json.Unmarshal(b, &state))
	var addrs []string
	for _, r := range state.Resources {
		addrs = append(addrs, r.Type+"."+r.Name)
	}
	slices.Sort(addrs)
	return state.stateMeta, addrs
}

// A plan made on an empty state, and one made on an applied state, are not
// stale until the state moves: Verify says so without planning again.
func TestVerifyFreshPlan(t *testing.T) {
	f := newFixture(t)
	v1, v2 := demoStack(t, "1.0.0"), demoStack(t, "2.0.0")

	first := f.mustPlan(v1)
	require.Equal(t, &VerifyResult{}, f.mustVerify(v1, first.PlanKey), "a first plan before any state")
	f.mustApply(v1, first.PlanKey)

	next := f.mustPlan(v2)
	require.Equal(t, &VerifyResult{}, f.mustVerify(v2, next.PlanKey))
	require.Equal(t, []string{"1.0.0"}, f.applies(v1), "verify applies nothing")

	_, err := f.verify(v2, "")
	requireAppError(t, err, ErrBadInput)
	_, err = f.verify(v2, "web/2.0.0/eu-west/never-planned.tfplan")
	requireAppError(t, err, ErrBadInput)
}

// The state moves after a plan was approved so that a re-plan would destroy
// something the approved plan left alone: Verify says so, Apply refuses and
// applies nothing, and the new plan, saved under a key of its own, is what
// the gate approves next and Apply then applies.
func TestStalePlanThatGrewGoesBackToTheGate(t *testing.T) {
	f := newFixture(t)
	v1, v2 := demoStack(t, "1.0.0"), demoStack(t, "2.0.0")
	f.mustApply(v1, f.mustPlan(v1).PlanKey)
	approved := f.mustPlan(v2)
	approvedBytes := f.artifact(approved.PlanKey)

	// Someone applies the same stack with one more resource: the approved
	// plan's configuration has no queue, so a re-plan of it destroys it.
	withQueue := stackWith(t, "1.0.0", `resource "terraform_data" "queue" {}`)
	f.mustApply(withQueue, f.mustPlan(withQueue).PlanKey)
	before, addrs := f.stateOf(v1)
	require.Contains(t, addrs, "terraform_data.queue")

	const reason = "destroys terraform_data.queue (the approved plan did not)"
	ver := f.mustVerify(v2, approved.PlanKey)
	require.True(t, ver.Stale)
	require.Equal(t, []string{reason}, ver.Exceeds)
	require.NotNil(t, ver.Plan)
	require.NotEqual(t, approved.PlanKey, ver.Plan.PlanKey)
	require.NotEqual(t, approved.JSONKey, ver.Plan.JSONKey)
	require.NotEmpty(t, f.artifact(ver.Plan.PlanKey))
	require.NotEmpty(t, f.artifact(ver.Plan.JSONKey))
	require.Equal(t, []string{"terraform_data.queue", "terraform_data.release", "terraform_data.rollout"}, ver.Plan.Summary.Destroyed)
	require.Equal(t, []string{"terraform_data.release", "terraform_data.rollout"}, ver.Plan.Summary.Replaced)

	_, err := f.apply(v2, approved.PlanKey)
	requireAppError(t, err, ErrPlanExceedsApproved)
	require.ErrorContains(t, err, "re-plan of web/eu-west does more than the approved plan: "+reason)
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(err, &appErr))
	var grown *PlanResult
	require.NoError(t, appErr.Details(&grown))
	require.NotNil(t, grown)
	require.NotEqual(t, approved.PlanKey, grown.PlanKey)
	require.NotEmpty(t, f.artifact(grown.PlanKey))
	require.Contains(t, grown.Summary.Destroyed, "terraform_data.queue")

	after, addrs := f.stateOf(v1)
	require.Equal(t, before, after, "nothing applied: the state's serial did not move")
	require.Contains(t, addrs, "terraform_data.queue")
	require.Equal(t, []string{"1.0.0"}, f.applies(v1))
	require.Equal(t, approvedBytes, f.artifact(approved.PlanKey), "the approved plan is never overwritten")

	// The gate approves the grown plan; it is fresh and applies as it is.
	res := f.mustApply(v2, grown.PlanKey)
	require.True(t, res.Applied)
	require.False(t, res.Replanned)
	_, addrs = f.stateOf(v1)
	require.NotContains(t, addrs, "terraform_data.queue")
	require.Equal(t, []string{"1.0.0", "2.0.0"}, f.applies(v1))
}

// A state of another lineage (another stack's state copied over this one's,
// or the state removed) is never re-planned over: Verify and Apply stop
// before anything runs, naming both lineages.
func TestStateOfAnotherLineage(t *testing.T) {
	f := newFixture(t)
	other := demoStack(t, "1.0.0")
	other.Region = "us-east"
	f.mustApply(other, f.mustPlan(other).PlanKey)
	eu, euNext := demoStack(t, "1.0.0"), demoStack(t, "2.0.0")
	f.mustApply(eu, f.mustPlan(eu).PlanKey)
	approved := f.mustPlan(euNext)
	own, _ := f.stateOf(eu)
	foreign, _ := f.stateOf(other)
	require.NotEqual(t, own.Lineage, foreign.Lineage)

	stateFile := filepath.Join(f.workCopy(eu), "terraform.tfstate")
	foreignState, err := os.ReadFile(filepath.Join(f.workCopy(other), "terraform.tfstate"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(stateFile, foreignState, 0o644))

	_, err = f.verify(euNext, approved.PlanKey)
	requireAppError(t, err, ErrStateLineage)
	require.ErrorContains(t, err, "lineage "+foreign.Lineage)
	require.ErrorContains(t, err, "lineage "+own.Lineage)
	require.ErrorContains(t, err, "replaced or is another stack's")

	_, err = f.apply(euNext, approved.PlanKey)
	requireAppError(t, err, ErrStateLineage)
	require.ErrorContains(t, err, "lineage "+foreign.Lineage)
	require.ErrorContains(t, err, "lineage "+own.Lineage)
	got, err := os.ReadFile(stateFile)
	require.NoError(t, err)
	require.Equal(t, foreignState, got, "the foreign state was not touched")
	require.Equal(t, []string{"1.0.0"}, f.applies(eu))

	// Terraform's own refusal, which Apply meets only when the state is
	// replaced between its look and the apply, is classified the same way.
	ctx := context.Background()
	s, err := f.a.open(ctx, euNext, "apply")
	require.NoError(t, err)
	saved := s.scratch("saved.tfplan")
	require.NoError(t, s.download(ctx, approved.PlanKey, saved))
	require.NoError(t, s.init(ctx))
	err = s.apply(ctx, saved)
	s.close()
	requireAppError(t, err, ErrStateLineage)
	require.ErrorContains(t, err, "Saved plan does not match the given state")
	require.Equal(t, []string{"1.0.0"}, f.applies(eu))

	// A state that is gone is not an empty stack to build again.
	require.NoError(t, os.Remove(stateFile))
	_, err = f.apply(euNext, approved.PlanKey)
	requireAppError(t, err, ErrStateLineage)
	require.ErrorContains(t, err, "empty (no lineage)")
	require.ErrorContains(t, err, own.Lineage)
	require.NoFileExists(t, stateFile)
	require.Equal(t, []string{"1.0.0"}, f.applies(eu))
}
