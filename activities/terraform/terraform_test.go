package terraform

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/keelson-dev/keelson/activities/artifacts"
)

const terraformBin = "/usr/local/bin/terraform"

// fixture is one test's Terraform activities: a work dir, an artifact store
// and the demo stack, run through the SDK's activity test environment so
// that heartbeats and cancellation behave as on a worker.
type fixture struct {
	t          testing.TB
	a          *Activities
	store      *artifacts.Local
	env        *testsuite.TestActivityEnvironment
	heartbeats chan string
	cancel     context.CancelFunc
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	if _, err := os.Stat(terraformBin); err != nil {
		t.Fatalf("these tests run the real Terraform at %s: %v", terraformBin, err)
	}
	root := t.TempDir()
	store, err := artifacts.NewLocal(filepath.Join(root, "artifacts"))
	require.NoError(t, err)
	f := &fixture{
		t:     t,
		store: store,
		a: &Activities{
			Binary:    terraformBin,
			WorkDir:   filepath.Join(root, "work"),
			Artifacts: store,
			Logger:    slog.New(slog.NewTextHandler(t.Output(), nil)),
		},
		heartbeats: make(chan string, 1000),
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	t.Cleanup(cancel)
	var suite testsuite.WorkflowTestSuite
	f.env = suite.NewTestActivityEnvironment()
	f.env.SetWorkerOptions(worker.Options{
		BackgroundActivityContext: ctx,
		Interceptors:              []interceptor.WorkerInterceptor{&heartbeatSpy{ch: f.heartbeats}},
	})
	f.env.SetTestTimeout(3 * time.Minute)
	f.env.RegisterActivity(f.a)
	return f
}

// heartbeatSpy sees every heartbeat an activity records (the test
// environment's listener sees only those not throttled away).
type heartbeatSpy struct {
	interceptor.WorkerInterceptorBase
	ch chan string
}

func (h *heartbeatSpy) InterceptActivity(ctx context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	return &spyInbound{ActivityInboundInterceptorBase: interceptor.ActivityInboundInterceptorBase{Next: next}, ch: h.ch}
}

type spyInbound struct {
	interceptor.ActivityInboundInterceptorBase
	ch chan string
}

func (i *spyInbound) Init(outbound interceptor.ActivityOutboundInterceptor) error {
	return i.Next.Init(&spyOutbound{ActivityOutboundInterceptorBase: interceptor.ActivityOutboundInterceptorBase{Next: outbound}, ch: i.ch})
}

type spyOutbound struct {
	interceptor.ActivityOutboundInterceptorBase
	ch chan string
}

func (o *spyOutbound) RecordHeartbeat(ctx context.Context, details ...any) {
	if len(details) == 1 {
		if phase, ok := details[0].(string); ok {
			select {
			case o.ch <- phase:
			default:
			}
		}
	}
	o.Next.RecordHeartbeat(ctx, details...)
}

func demoStack(t testing.TB, version string) Stack {
	dir, err := filepath.Abs("../../infra/demo/terraform")
	require.NoError(t, err)
	return Stack{Application: "web", Version: version, Region: "eu-west", Dir: dir}
}

func (f *fixture) plan(st Stack) (*PlanResult, error) {
	f.t.Helper()
	return f.planWith(PlanInput{Stack: st})
}

func (f *fixture) planWith(in PlanInput) (*PlanResult, error) {
	f.t.Helper()
	st := in.Stack
	start := time.Now()
	v, err := f.env.ExecuteActivity(f.a.Plan, in)
	f.t.Logf("plan %s %s took %v", st.Region, st.Version, time.Since(start).Round(time.Millisecond))
	if err != nil {
		return nil, err
	}
	var res PlanResult
	require.NoError(f.t, v.Get(&res))
	return &res, nil
}

func (f *fixture) apply(st Stack, key string) (*ApplyResult, error) {
	f.t.Helper()
	start := time.Now()
	v, err := f.env.ExecuteActivity(f.a.Apply, ApplyInput{Stack: st, PlanKey: key})
	f.t.Logf("apply %s %s took %v", st.Region, st.Version, time.Since(start).Round(time.Millisecond))
	if err != nil {
		return nil, err
	}
	var res ApplyResult
	require.NoError(f.t, v.Get(&res))
	return &res, nil
}

// applyApproved applies a plan as a release does, passing the plan that
// was approved.
func (f *fixture) applyApproved(st Stack, approved *PlanResult) (*ApplyResult, error) {
	f.t.Helper()
	v, err := f.env.ExecuteActivity(f.a.Apply, ApplyInput{Stack: st, PlanKey: approved.PlanKey, Approved: approved})
	if err != nil {
		return nil, err
	}
	var res ApplyResult
	require.NoError(f.t, v.Get(&res))
	return &res, nil
}

func (f *fixture) mustApplyApproved(st Stack, approved *PlanResult) *ApplyResult {
	f.t.Helper()
	res, err := f.applyApproved(st, approved)
	require.NoError(f.t, err)
	return res
}

func (f *fixture) verify(st Stack, key string) (*VerifyResult, error) {
	f.t.Helper()
	start := time.Now()
	v, err := f.env.ExecuteActivity(f.a.Verify, VerifyInput{Stack: st, PlanKey: key})
	f.t.Logf("verify %s %s took %v", st.Region, st.Version, time.Since(start).Round(time.Millisecond))
	if err != nil {
		return nil, err
	}
	var res VerifyResult
	require.NoError(f.t, v.Get(&res))
	return &res, nil
}

func (f *fixture) mustVerify(st Stack, key string) *VerifyResult {
	f.t.Helper()
	res, err := f.verify(st, key)
	require.NoError(f.t, err)
	return res
}

func (f *fixture) mustPlan(st Stack) *PlanResult {
	f.t.Helper()
	res, err := f.plan(st)
	require.NoError(f.t, err)
	return res
}

func (f *fixture) mustApply(st Stack, key string) *ApplyResult {
	f.t.Helper()
	res, err := f.apply(st, key)
	require.NoError(f.t, err)
	return res
}

func (f *fixture) workCopy(st Stack) string {
	return filepath.Join(f.a.WorkDir, st.Application, st.Region)
}

// applies returns the versions recorded in the working copy's applies.log,
// one per apply of the release resource.
func (f *fixture) applies(st Stack) []string {
	f.t.Helper()
	b, err := os.ReadFile(filepath.Join(f.workCopy(st), "applies.log"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	require.NoError(f.t, err)
	var versions []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		v, _, _ := strings.Cut(line, " ")
		versions = append(versions, v)
	}
	return versions
}

func (f *fixture) artifact(key string) []byte {
	f.t.Helper()
	rc, err := f.store.Get(context.Background(), key)
	require.NoError(f.t, err)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	require.NoError(f.t, err)
	return b
}

func TestPlanApplyAndNextVersion(t *testing.T) {
	f := newFixture(t)
	v1 := demoStack(t, "1.0.0")

	plan := f.mustPlan(v1)
	require.Equal(t, "web/1.0.0/eu-west/plan.tfplan", plan.PlanKey)
	require.Equal(t, "web/1.0.0/eu-west/plan.json", plan.JSONKey)
	require.Equal(t, Summary{
		Adds:  3,
		Added: []string{"terraform_data.network", "terraform_data.release", "terraform_data.rollout"},
	}, plan.Summary)
	require.NotEmpty(t, f.artifact(plan.PlanKey))
	var full struct {
		FormatVersion   string            `json:"format_version"`
		ResourceChanges []json.RawMessage `json:"resource_changes"`
		Variables       map[string]struct {
			Value any `json:"value"`
		} `json:"variables"`
	}
	require.NoError(t, json.Unmarshal(f.artifact(plan.JSONKey), &full))
	require.NotEmpty(t, full.FormatVersion)
	require.Len(t, full.ResourceChanges, 3)
	require.Equal(t, "1.0.0", full.Variables[VarVersion].Value, "the version reaches the stack")
	require.Empty(t, f.applies(v1), "plan applies nothing")

	res := f.mustApply(v1, plan.PlanKey)
	require.True(t, res.Applied)
	require.False(t, res.Replanned)
	require.Equal(t, plan.Summary, res.Summary)
	require.Equal(t, "https://web.eu-west.demo.internal", res.Outputs["endpoint"])
	require.Equal(t, "keelson-web-eu-west", res.Outputs["bucket"])
	marker, _ := res.Outputs["release_marker"].(string)
	require.NotEmpty(t, marker)
	require.Equal(t, []string{"1.0.0"}, f.applies(v1))

	// The next version replaces the per-version resources and keeps the
	// network; a replace is an add and a destroy.
	v2 := demoStack(t, "1.1.0")
	plan2 := f.mustPlan(v2)
	require.Equal(t, Summary{
		Adds:      2,
		Destroys:  2,
		Added:     []string{"terraform_data.release", "terraform_data.rollout"},
		Destroyed: []string{"terraform_data.release", "terraform_data.rollout"},
		Replaced:  []string{"terraform_data.release", "terraform_data.rollout"},
	}, plan2.Summary)
	res2 := f.mustApply(v2, plan2.PlanKey)
	require.True(t, res2.Applied)
	require.NotEqual(t, marker, res2.Outputs["release_marker"])
	require.Equal(t, []string{"1.0.0", "1.1.0"}, f.applies(v1))

	// Heartbeats carried the phase while Terraform ran.
	close(f.heartbeats)
	var phases []string
	for p := range f.heartbeats {
		phases = append(phases, p)
	}
	require.Contains(t, phases, "terraform plan")
}

// A retry of an apply that already happened (the worker died before it
// could report) finds the saved plan stale, plans again, finds nothing left
// and applies nothing.
func TestApplyRetriedAfterItApplied(t *testing.T) {
	f := newFixture(t)
	v1 := demoStack(t, "1.0.0")
	plan := f.mustPlan(v1)
	first := f.mustApply(v1, plan.PlanKey)
	require.True(t, first.Applied)

	again := f.mustApply(v1, plan.PlanKey)
	require.True(t, again.Replanned)
	require.False(t, again.Applied)
	require.False(t, again.Summary.HasChanges())
	require.Equal(t, first.Outputs, again.Outputs)
	require.Equal(t, []string{"1.0.0"}, f.applies(v1), "exactly one apply")
}

// A plan that went stale because another version was applied after it is
// planned again and what is left (putting its own version back) is applied:
// the re-plan replaces what the approved plan replaced, nothing more.
func TestStalePlanIsReplanned(t *testing.T) {
	f := newFixture(t)
	v1, v2, v3 := demoStack(t, "1.0.0"), demoStack(t, "2.0.0"), demoStack(t, "3.0.0")
	f.mustApply(v1, f.mustPlan(v1).PlanKey)
	planV2 := f.mustPlan(v2)
	f.mustApply(v3, f.mustPlan(v3).PlanKey)

	ver := f.mustVerify(v2, planV2.PlanKey)
	require.True(t, ver.Stale)
	require.Empty(t, ver.Exceeds, "the re-plan is within the approved plan")
	require.NotNil(t, ver.Plan)
	require.NotEqual(t, planV2.PlanKey, ver.Plan.PlanKey)
	require.Equal(t, planV2.Summary, ver.Plan.Summary)

	res := f.mustApply(v2, planV2.PlanKey)
	require.True(t, res.Replanned)
	require.True(t, res.Applied)
	require.Equal(t, []string{"terraform_data.release", "terraform_data.rollout"}, res.Summary.Destroyed)
	require.Equal(t, []string{"1.0.0", "3.0.0", "2.0.0"}, f.applies(v1))
}

// Variables from the release file reach the stack; Keelson's own cannot be
// overridden by them.
func TestVarsAndStackRefresh(t *testing.T) {
	f := newFixture(t)
	st := demoStack(t, "1.0.0")
	st.Vars = map[string]string{"tier": "premium", VarVersion: "9.9.9", "api_server": "https://127.0.0.1:6443"}
	plan := f.mustPlan(st)
	var full struct {
		Variables map[string]struct {
			Value any `json:"value"`
		} `json:"variables"`
	}
	require.NoError(t, json.Unmarshal(f.artifact(plan.JSONKey), &full))
	require.Equal(t, "premium", full.Variables["tier"].Value)
	require.Equal(t, "1.0.0", full.Variables[VarVersion].Value)

	// A file left in the working copy from an older stack is removed; state
	// and logs stay.
	stale := filepath.Join(f.workCopy(st), "old.tf")
	require.NoError(t, os.WriteFile(stale, []byte(`resource "terraform_data" "old" {}`), 0o644))
	f.mustApply(st, plan.PlanKey)
	require.NoFileExists(t, stale)
	require.FileExists(t, filepath.Join(f.workCopy(st), "terraform.tfstate"))
	require.Equal(t, []string{"1.0.0"}, f.applies(st))
}

func requireAppError(t *testing.T, err error, typ string) {
	t.Helper()
	require.Error(t, err)
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(err, &appErr), "application error: %v", err)
	require.Equal(t, typ, appErr.Type(), "error: %v", err)
	require.True(t, appErr.NonRetryable(), "error: %v", err)
}

// stackWith is the demo stack plus one extra file.
func stackWith(t *testing.T, version, extra string) Stack {
	st := demoStack(t, version)
	dir := t.TempDir()
	require.NoError(t, syncStack(st.Dir, dir))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "extra.tf"), []byte(extra), 0o644))
	st.Dir = dir
	return st
}

func TestBrokenStackIsConfigError(t *testing.T) {
	cases := map[string]struct{ extra, says string }{
		"invalid HCL":           {`resource "terraform_data" "x" {`, "Unclosed configuration block"},
		"unknown resource type": {`resource "terraform_nonexistent" "x" {}`, "Invalid resource type"},
		"missing variable":      {`variable "needed" { type = string }`, "No value for required variable"},
		"undeclared reference":  {`output "x" { value = var.nothing }`, "Reference to undeclared input variable"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			_, err := f.plan(stackWith(t, "1.0.0", c.extra))
			requireAppError(t, err, ErrConfig)
			require.ErrorContains(t, err, c.says)
		})
	}
}

func TestBadInput(t *testing.T) {
	f := newFixture(t)
	st := demoStack(t, "1.0.0")

	noRegion := st
	noRegion.Region = ""
	_, err := f.plan(noRegion)
	requireAppError(t, err, ErrBadInput)

	climbing := st
	climbing.Application = ".."
	_, err = f.plan(climbing)
	requireAppError(t, err, ErrBadInput)

	noDir := st
	noDir.Dir = ""
	_, err = f.plan(noDir)
	requireAppError(t, err, ErrBadInput)

	missingDir := st
	missingDir.Dir = filepath.Join(t.TempDir(), "nothing")
	_, err = f.plan(missingDir)
	requireAppError(t, err, ErrBadInput)

	_, err = f.apply(st, "")
	requireAppError(t, err, ErrBadInput)
	_, err = f.apply(st, "web/1.0.0/eu-west/never-planned.tfplan")
	requireAppError(t, err, ErrBadInput)
	_, err = f.apply(st, "../outside.tfplan")
	requireAppError(t, err, ErrBadInput)
}

// BenchmarkPlanApplyVersion measures one region's release of a new version:
// Plan, then Apply of the saved plan, with the real Terraform.
func BenchmarkPlanApplyVersion(b *testing.B) {
	f := newFixture(b)
	f.a.Logger = slog.New(slog.DiscardHandler)
	f.mustApply(demoStack(b, "0"), f.mustPlan(demoStack(b, "0")).PlanKey)
	var plan, apply time.Duration
	for i := 0; b.Loop(); i++ {
		st := demoStack(b, fmt.Sprintf("1.%d", i))
		start := time.Now()
		p := f.mustPlan(st)
		plan += time.Since(start)
		start = time.Now()
		f.mustApply(st, p.PlanKey)
		apply += time.Since(start)
	}
	b.ReportMetric(float64(plan.Milliseconds())/float64(b.N), "plan-ms/op")
	b.ReportMetric(float64(apply.Milliseconds())/float64(b.N), "apply-ms/op")
}
