package terraform

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	tfjson "github.com/hashicorp/terraform-json"
	"github.com/stretchr/testify/require"

	"github.com/keelson-dev/keelson/activities/artifacts"
)

// commandLog records the Terraform commands a fixture's activities run,
// from their "terraform command finished" log records, and passes the
// records on.
type commandLog struct {
	rec  *commands
	next slog.Handler
}

type commands struct {
	mu   sync.Mutex
	cmds []string
}

func (c *commandLog) Enabled(ctx context.Context, l slog.Level) bool { return c.next.Enabled(ctx, l) }
func (c *commandLog) WithAttrs(as []slog.Attr) slog.Handler {
	return &commandLog{rec: c.rec, next: c.next.WithAttrs(as)}
}
func (c *commandLog) WithGroup(g string) slog.Handler {
	return &commandLog{rec: c.rec, next: c.next.WithGroup(g)}
}
func (c *commandLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "terraform command finished" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "command" {
				c.rec.mu.Lock()
				c.rec.cmds = append(c.rec.cmds, a.Value.String())
				c.rec.mu.Unlock()
			}
			return true
		})
	}
	return c.next.Handle(ctx, r)
}

// take returns the commands recorded since the last take, in the order
// they finished.
func (c *commands) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.cmds
	c.cmds = nil
	return out
}

func withCommandLog(f *fixture) *commands {
	rec := &commands{}
	f.a.Logger = slog.New(&commandLog{rec: rec, next: slog.NewTextHandler(f.t.Output(), nil)})
	return rec
}

// A plan and an apply start only the Terraform processes that do
// something no file read can: init once for a working copy whose inputs do
// not change, no validate unless plan fails, show beside apply, and the
// state and outputs read from the state file.
func TestPlanAndApplyStartFewProcesses(t *testing.T) {
	f := newFixture(t)
	cmds := withCommandLog(f)

	v1 := demoStack(t, "1.0.0")
	p1 := f.mustPlan(v1)
	require.Equal(t, []string{"init", "plan", "show"}, cmds.take())
	res := f.mustApply(v1, p1.PlanKey)
	require.ElementsMatch(t, []string{"apply", "show"}, cmds.take(), "init done, state and outputs read from the file")
	require.True(t, res.Applied)
	require.Equal(t, "https://web.eu-west.demo.internal", res.Outputs["endpoint"])

	v2 := demoStack(t, "1.1.0")
	p2 := f.mustPlan(v2)
	require.Equal(t, []string{"plan", "show"}, cmds.take(), "nothing init reads changed")
	require.True(t, p2.Changes)
	require.Len(t, p2.SHA256, 64)
	// A release passes the approved plan: its summary needs no show.
	res = f.mustApplyApproved(v2, p2)
	require.Equal(t, []string{"apply"}, cmds.take())
	require.True(t, res.Applied)
	require.Equal(t, p2.Summary, res.Summary)
	require.Equal(t, []string{"1.0.0", "1.1.0"}, f.applies(v2))

	// Any change to the stack's files runs init again, once.
	v3 := stackWith(t, "1.2.0", "# a comment changes the stack\n")
	f.mustPlan(v3)
	require.Equal(t, []string{"init", "plan", "show"}, cmds.take())
	f.mustPlan(v3)
	require.Equal(t, []string{"plan", "show"}, cmds.take())

	// An init that fails leaves no record of success behind.
	broken := stackWith(t, "1.3.0", `terraform { required_version = "< 1.0" }`)
	_, err := f.plan(broken)
	requireAppError(t, err, ErrConfig)
	require.Equal(t, []string{"init"}, cmds.take())
	_, err = os.Stat(filepath.Join(f.workCopy(v1), ".terraform", initStampFile))
	require.ErrorIs(t, err, os.ErrNotExist)
	f.mustPlan(v3)
	require.Equal(t, []string{"init", "plan", "show"}, cmds.take())

	// A broken configuration is told by validate once plan failed.
	_, err = f.plan(stackWith(t, "1.4.0", `output "x" { value = var.nothing }`))
	requireAppError(t, err, ErrConfig)
	require.Equal(t, []string{"init", "plan", "validate"}, cmds.take())
}

// Outputs read from the state are terraform output's: values of any type,
// sensitive ones left out. A stack whose backend Keelson does not know is
// asked through Terraform, and gets the same.
func TestOutputsFromTheState(t *testing.T) {
	outputs := `
output "list" { value = [1, "two", { three = 3 }] }
output "secret" {
  value     = "hunter2"
  sensitive = true
}
`
	want := map[string]any{
		"list":           []any{float64(1), "two", map[string]any{"three": float64(3)}},
		"endpoint":       "https://web.eu-west.demo.internal",
		"bucket":         "keelson-web-eu-west",
		"release_marker": nil, // checked apart: it is an id
	}
	check := func(t *testing.T, got map[string]any) {
		t.Helper()
		require.NotContains(t, got, "secret")
		require.NotEmpty(t, got["release_marker"])
		got["release_marker"] = nil
		require.Equal(t, want, got)
	}

	t.Run("state file", func(t *testing.T) {
		f := newFixture(t)
		cmds := withCommandLog(f)
		st := stackWith(t, "1.0.0", outputs)
		res := f.mustApply(st, f.mustPlan(st).PlanKey)
		require.NotContains(t, cmds.take(), "output")
		check(t, res.Outputs)
	})
	t.Run("backend of the stack's own", func(t *testing.T) {
		f := newFixture(t)
		cmds := withCommandLog(f)
		st := stackWith(t, "1.0.0", outputs+`terraform {
  backend "local" { path = "terraform.tfstate.d/elsewhere" }
}
`)
		res := f.mustApply(st, f.mustPlan(st).PlanKey)
		got := cmds.take()
		require.Contains(t, got, "state pull")
		require.Contains(t, got, "output")
		check(t, res.Outputs)
		_, err := os.Stat(filepath.Join(f.workCopy(st), "terraform.tfstate"))
		require.ErrorIs(t, err, os.ErrNotExist, "the state is where the stack's backend says")
	})
}

// A saved plan replaced in the artifact store after the approval is not
// applied: the release passes the approved plan's digest.
func TestReplacedPlanIsNotApplied(t *testing.T) {
	f := newFixture(t)
	v1 := demoStack(t, "1.0.0")
	approved := f.mustPlan(v1)
	// Someone plans something else and puts it where the approved plan was.
	changed := stackWith(t, "1.0.0", `resource "terraform_data" "extra" {}`)
	other := f.mustPlan(changed)
	require.NotEqual(t, approved.SHA256, other.SHA256)
	require.Equal(t, approved.PlanKey, other.PlanKey, "same application, version and region")

	_, err := f.applyApproved(v1, approved)
	requireAppError(t, err, ErrPlanNotApproved)
	require.ErrorContains(t, err, approved.SHA256)
	require.Empty(t, f.applies(v1), "nothing applied")

	// The plan now in the store applies when it is the one approved.
	res := f.mustApplyApproved(changed, other)
	require.True(t, res.Applied)
	require.Contains(t, res.Summary.Added, "terraform_data.extra")
	require.Equal(t, []string{"1.0.0"}, f.applies(v1))
}

// terraform-exec asks the binary for its version before init and show;
// a working copy's second plan asks no more, and a binary replaced in
// place is asked again. Counted from the processes themselves: a wrapper
// records its arguments and runs the real Terraform.
func TestVersionAskedOncePerWorkingCopy(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	wrapper := filepath.Join(dir, "terraform")
	script := "#!/bin/sh\necho \"$1\" >>" + calls + "\nexec " + terraformBin + " \"$@\"\n"
	require.NoError(t, os.WriteFile(wrapper, []byte(script), 0o755))
	f.a.Binary = wrapper
	ran := func() []string {
		t.Helper()
		b, err := os.ReadFile(calls)
		require.NoError(t, err)
		require.NoError(t, os.Remove(calls))
		return strings.Fields(string(b))
	}

	v1 := demoStack(t, "1.0.0")
	f.mustApplyApproved(v1, f.mustPlan(v1))
	require.Equal(t, []string{"version", "init", "plan", "show", "apply"}, ran())
	v2 := demoStack(t, "1.1.0")
	f.mustApplyApproved(v2, f.mustPlan(v2))
	require.Equal(t, []string{"plan", "show", "apply"}, ran(), "the version is known")

	// The same binary, changed: its version is asked again (and init runs,
	// as the init digest has the binary's size and time too).
	require.NoError(t, os.WriteFile(wrapper, []byte(script+"# changed\n"), 0o755))
	v3 := demoStack(t, "1.2.0")
	f.mustPlan(v3)
	require.Equal(t, []string{"version", "init", "plan", "show"}, ran())
}

// A plan nobody looks at before it applies (its wave has no gate) runs no
// show: its apply shows it beside the apply, returns the same summary a
// shown plan has, and keeps the same JSON in the artifact store.
func TestUngatedPlanIsShownByItsApply(t *testing.T) {
	f := newFixture(t)
	cmds := withCommandLog(f)
	v1 := demoStack(t, "1.0.0")
	f.mustApplyApproved(v1, f.mustPlan(v1))
	cmds.take()

	// The reference: version 1.1.0 planned as a gated wave plans it, in
	// another fixture's working copy from the same state.
	v2 := demoStack(t, "1.1.0")
	ref := newFixture(t)
	ref.mustApplyApproved(v1, ref.mustPlan(v1))
	shown := ref.mustPlan(v2)
	require.True(t, shown.Shown())

	p, err := f.planWith(PlanInput{Stack: v2, Ungated: true})
	require.NoError(t, err)
	require.Equal(t, []string{"plan"}, cmds.take())
	require.False(t, p.Shown())
	require.Empty(t, p.JSONKey)
	require.Zero(t, p.Summary)
	require.True(t, p.Changes)
	require.Len(t, p.SHA256, 64)
	_, err = f.store.Get(context.Background(), JSONKeyFor(v2))
	require.ErrorIs(t, err, artifacts.ErrNotFound, "no JSON before the apply")

	res := f.mustApplyApproved(v2, p)
	require.ElementsMatch(t, []string{"apply", "show"}, cmds.take())
	require.True(t, res.Applied)
	require.Equal(t, shown.Summary, res.Summary)
	require.NotZero(t, res.Summary.Adds)
	var kept tfjson.Plan
	require.NoError(t, json.Unmarshal(f.artifact(JSONKeyFor(v2)), &kept), "the plan kept as JSON")
	require.Equal(t, res.Summary, Summarize(&kept))
	require.Contains(t, string(f.artifact(JSONKeyFor(v2))), `"1.1.0"`)
	require.Equal(t, []string{"1.0.0", "1.1.0"}, f.applies(v2))

	// The digest is checked as for a shown plan.
	changed := stackWith(t, "1.2.0", `resource "terraform_data" "extra" {}`)
	p3, err := f.planWith(PlanInput{Stack: changed, Ungated: true})
	require.NoError(t, err)
	p3.SHA256 = shown.SHA256
	_, err = f.applyApproved(changed, p3)
	requireAppError(t, err, ErrPlanNotApproved)
}

// The plan kept as JSON is one JSON document, also when the first command
// that needs Terraform's version is the show: a worker restarted on a
// working copy already initialised skips init. terraform-exec writes the
// version's answer where the show's output goes; it used to land in front
// of the plan.
func TestPlanJSONKeptWhole(t *testing.T) {
	f := newFixture(t)
	v1 := demoStack(t, "1.0.0")
	f.mustApplyApproved(v1, f.mustPlan(v1))

	restarted := &Activities{Binary: f.a.Binary, WorkDir: f.a.WorkDir, Artifacts: f.a.Artifacts, Logger: f.a.Logger}
	f.env.RegisterActivity(restarted)
	cmds := &commands{}
	restarted.Logger = slog.New(&commandLog{rec: cmds, next: slog.NewTextHandler(t.Output(), nil)})
	v2 := demoStack(t, "1.1.0")
	v, err := f.env.ExecuteActivity(restarted.Plan, PlanInput{Stack: v2})
	require.NoError(t, err)
	var p PlanResult
	require.NoError(t, v.Get(&p))
	require.Equal(t, []string{"plan", "show"}, cmds.take(), "no init: the working copy is initialised")
	var kept tfjson.Plan
	require.NoError(t, json.Unmarshal(f.artifact(p.JSONKey), &kept))
	require.Equal(t, p.Summary, Summarize(&kept))
}
