package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/keelson-dev/keelson/control"
	"github.com/keelson-dev/keelson/release"
	"github.com/keelson-dev/keelson/workflows"
)

// fake is a release backend that records calls.
type fake struct {
	mu       sync.Mutex
	dialed   globals
	calls    []string
	answer   workflows.GateAnswer
	approve  bool
	updateID string
	control  workflows.Control
	err      error

	start    control.StartResult
	statuses []*workflows.Status
	polled   int
	finished chan struct{}
	result   *workflows.ReleaseResult
	restore  control.RestoreOptions

	startOpts control.StartOptions

	dora      control.DoraData
	doraQuery control.DoraQuery
}

func (f *fake) record(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

func (f *fake) Start(_ context.Context, spec *release.Spec, version string, o control.StartOptions) (control.StartResult, error) {
	by := o.StartedBy
	f.startOpts = o
	f.record("start " + spec.Application + " " + version + " by " + by)
	return f.start, f.err
}

func applyOpts(name string, opts []control.UpdateOption) string {
	o := client.UpdateWorkflowOptions{UpdateName: name}
	for _, fn := range opts {
		fn(&o)
	}
	return o.UpdateID
}

func (f *fake) Answer(_ context.Context, id string, approve bool, a workflows.GateAnswer, opts ...control.UpdateOption) error {
	f.record("answer " + id)
	f.approve, f.answer = approve, a
	f.updateID = applyOpts("approve", opts)
	return f.err
}

func (f *fake) Control(_ context.Context, id, name string, c workflows.Control, opts ...control.UpdateOption) error {
	f.record(name + " " + id)
	f.control = c
	f.updateID = applyOpts(name, opts)
	return f.err
}

// Rollback behaves as the control client does for a running release: the
// rollback Update (finished releases are covered by the integration tests).
func (f *fake) Rollback(ctx context.Context, id string, c workflows.Control, opts ...control.UpdateOption) (*control.StartResult, error) {
	return nil, f.Control(ctx, id, workflows.UpdateRollback, c, opts...)
}

func (f *fake) RollbackTo(_ context.Context, app, version string, o control.UndoOptions) (control.StartResult, error) {
	f.record("rollback " + app + " --to " + version)
	return control.StartResult{ReleaseID: workflows.UndoID(app, "x"), URL: "http://ui/undo"}, f.err
}

func (f *fake) RestoreTraffic(_ context.Context, o control.RestoreOptions) (control.RestoreResult, error) {
	f.record("traffic restore " + o.Region)
	f.restore = o
	return control.RestoreResult{ReleaseID: "release-demo-1.1.0", RestoreID: "traffic-restore-release-demo-1.1.0-us-east-1",
		Result: workflows.TrafficRestoreResult{Region: o.Region, Weight: 100, After: map[string]int{"us-east-1": 100, "eu-west-1": 100}},
		URL:    "http://ui/restore"}, f.err
}

func (f *fake) Freeze(_ context.Context, q workflows.FreezeRequest) (*workflows.FreezeState, error) {
	f.record(fmt.Sprintf("freeze all=%v app=%s by %s: %s", q.All, q.Application, q.User, q.Reason))
	st := &workflows.FreezeState{Apps: map[string]workflows.FreezeEntry{}}
	e := workflows.FreezeEntry{User: q.User, Reason: q.Reason, Since: time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)}
	if q.All {
		st.All = &e
	} else {
		st.Apps[q.Application] = e
	}
	return st, f.err
}

func (f *fake) Unfreeze(_ context.Context, q workflows.FreezeRequest) (*workflows.FreezeState, error) {
	f.record(fmt.Sprintf("unfreeze all=%v app=%s by %s", q.All, q.Application, q.User))
	return &workflows.FreezeState{}, f.err
}

func (f *fake) Freezes(context.Context) (*workflows.FreezeState, error) {
	f.record("freezes")
	return &workflows.FreezeState{}, f.err
}

func (f *fake) OverrideWindow(_ context.Context, id string, a workflows.GateAnswer, _ ...control.UpdateOption) error {
	f.record(fmt.Sprintf("override-window %s by %s: %s", id, a.User, a.Reason))
	return f.err
}

func (f *fake) Status(_ context.Context, id string) (*workflows.Status, error) {
	f.record("status " + id)
	if f.err != nil {
		return nil, f.err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	i := min(f.polled, len(f.statuses)-1)
	f.polled++
	if i == len(f.statuses)-1 && f.finished != nil {
		select {
		case <-f.finished:
		default:
			close(f.finished)
		}
	}
	return f.statuses[i], nil
}

func (f *fake) Result(ctx context.Context, id string) (*workflows.ReleaseResult, error) {
	if f.finished != nil {
		select {
		case <-f.finished:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return f.result, f.err
}

func (f *fake) List(_ context.Context, q control.ListQuery) ([]control.ReleaseInfo, error) {
	f.record("list " + q.Visibility())
	return nil, f.err
}

func (f *fake) DoraRecords(_ context.Context, q control.DoraQuery) (control.DoraData, error) {
	f.record("dora " + q.Application)
	f.doraQuery = q
	return f.dora, f.err
}

func (f *fake) URL(id string) string { return "http://ui/namespaces/default/workflows/" + id }

type runResult struct {
	code           int
	stdout, stderr string
	dialed         bool
}

func runWith(t *testing.T, f *fake, env map[string]string, args ...string) runResult {
	t.Helper()
	var out, errOut bytes.Buffer
	a := newApp(&out, &errOut, func(k string) string { return env[k] })
	a.loc = time.UTC
	a.now = func() time.Time { return time.Date(2026, 11, 21, 10, 12, 0, 0, time.UTC) }
	a.poll = time.Millisecond
	dialed := false
	a.connect = func(_ context.Context, g globals) (releases, func(), error) {
		dialed = true
		f.dialed = g
		return f, func() {}, nil
	}
	a.loadSpec = func(path string) (*release.Spec, error) {
		if strings.Contains(path, "bad") {
			return nil, &release.Errors{List: []release.Error{
				{File: path, Line: 3, Column: 5, Field: "regions[0].name", Message: "is empty"},
				{File: path, Line: 9, Column: 3, Field: "waves[1].regions[0]", Message: `unknown region "mars"`},
			}}
		}
		return &release.Spec{Application: "demo"}, nil
	}
	a.pack = fakePack
	code := a.execute(args)
	return runResult{code: code, stdout: out.String(), stderr: errOut.String(), dialed: dialed}
}

func TestBadFileStartsNothing(t *testing.T) {
	f := &fake{}
	r := runWith(t, f, nil, "release", "start", "-f", "bad.yaml", "--version", "bad version")
	if r.code != exitUsage {
		t.Errorf("exit %d, want %d", r.code, exitUsage)
	}
	if r.dialed || len(f.calls) > 0 {
		t.Errorf("dialed=%v calls=%v: a bad file must start nothing", r.dialed, f.calls)
	}
	want := "keelson: bad.yaml:3:5: regions[0].name: is empty\n" +
		"keelson: bad.yaml:9:3: waves[1].regions[0]: unknown region \"mars\"\n" +
		"keelson: --version: version \"bad version\" contains spaces\n"
	if r.stderr != want {
		t.Errorf("stderr\n got: %q\nwant: %q", r.stderr, want)
	}
}

func TestStartPrintsIDURLAndExisting(t *testing.T) {
	f := &fake{start: control.StartResult{ReleaseID: "release-demo-1.2.0", RunID: "run-1", Existing: true, URL: "http://ui/x"}}
	r := runWith(t, f, map[string]string{"USER": "carol"}, "release", "start", "-f", "release.yaml", "--version", "1.2.0")
	if r.code != exitOK {
		t.Fatalf("exit %d, stderr %s", r.code, r.stderr)
	}
	want := "release: release-demo-1.2.0\nurl: http://ui/x\nbundle: " + fakeDigest + "\nalready running: yes (run run-1; nothing new was started)\n"
	if r.stdout != want {
		t.Errorf("stdout\n got: %q\nwant: %q", r.stdout, want)
	}
	if got := f.calls[0]; got != "start demo 1.2.0 by carol" {
		t.Errorf("call %q", got)
	}
	if f.startOpts.Bundle != fakeDigest {
		t.Errorf("started with bundle %q, want %q", f.startOpts.Bundle, fakeDigest)
	}
}

const fakeDigest = "sha256:0000000000000000000000000000000000000000000000000000000000000001"

// fakePack stands in for packing: the real one is tested in package bundle
// and on the lab (TestHermeticBundle).
func fakePack(_ context.Context, spec *release.Spec, _ string, dry bool) (*packed, error) {
	out := *spec
	out.Chart.Path = "chart"
	return &packed{Digest: fakeDigest, Spec: &out, Describe: "bundle " + fakeDigest + "\n  chart/Chart.yaml\n"}, nil
}

func TestStartDryRunStartsNothing(t *testing.T) {
	f := &fake{}
	r := runWith(t, f, nil, "release", "start", "-f", "release.yaml", "--version", "1.2.0", "--dry-run")
	if r.code != exitOK {
		t.Fatalf("exit %d, stderr %s", r.code, r.stderr)
	}
	if r.dialed || len(f.calls) > 0 {
		t.Errorf("dialed=%v calls=%v: a dry run starts nothing", r.dialed, f.calls)
	}
	if !strings.Contains(r.stdout, fakeDigest) || !strings.Contains(r.stdout, "chart/Chart.yaml") || !strings.Contains(r.stdout, "dry run") {
		t.Errorf("stdout %q: want the digest and the contents", r.stdout)
	}
}

func TestStartCommitTime(t *testing.T) {
	f := &fake{}
	r := runWith(t, f, map[string]string{"CI_COMMIT_TIMESTAMP": "2026-11-20T08:00:00+01:00"}, "release", "start", "-f", "release.yaml", "--version", "1.2.0")
	if r.code != exitOK || !f.startOpts.CommitTime.Equal(time.Date(2026, 11, 20, 7, 0, 0, 0, time.UTC)) {
		t.Errorf("CI variable: exit %d commit time %v", r.code, f.startOpts.CommitTime)
	}
	f = &fake{}
	r = runWith(t, f, map[string]string{"CI_COMMIT_TIMESTAMP": "2026-11-20T08:00:00Z"}, "release", "start", "-f", "release.yaml", "--version", "1.2.0", "--commit-time", "2026-11-21T10:00:00Z")
	if r.code != exitOK || !f.startOpts.CommitTime.Equal(time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("the flag wins: exit %d commit time %v", r.code, f.startOpts.CommitTime)
	}
	f = &fake{}
	r = runWith(t, f, nil, "release", "start", "-f", "release.yaml", "--version", "1.2.0", "--commit-time", "yesterday")
	if r.code != exitUsage || len(f.calls) != 0 || !strings.Contains(r.stderr, `--commit-time: "yesterday" is not an RFC 3339 time`) {
		t.Errorf("bad time: exit %d calls %v stderr %s", r.code, f.calls, r.stderr)
	}
}

func TestGlobalFlagsEnvAndDefaults(t *testing.T) {
	f := &fake{statuses: []*workflows.Status{{Phase: workflows.PhaseDeploying}}}
	env := map[string]string{"TEMPORAL_ADDRESS": "temporal:7233", "KEELSON_USER": "dave", "USER": "root", "HOME": "/home/dave"}
	r := runWith(t, f, env, "release", "status", "release-demo-1.0.0", "--namespace", "prod")
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	// The artifact store defaults to the worker's default (worker/config.go).
	want := globals{address: "temporal:7233", namespace: "prod", taskQueue: workflows.TaskQueue, uiURL: "http://localhost:8233", user: "dave",
		artifacts: "/home/dave/.local/share/keelson/artifacts"}
	if f.dialed != want {
		t.Errorf("globals %+v, want %+v", f.dialed, want)
	}
	r = runWith(t, f, nil, "--address", "x:1", "release", "status", "release-demo-1.0.0")
	if f.dialed.address != "x:1" || f.dialed.user != "cli" || f.dialed.namespace != "default" {
		t.Errorf("globals %+v", f.dialed)
	}
}

func TestAnswers(t *testing.T) {
	f := &fake{}
	r := runWith(t, f, nil, "approve", "release-demo-1.0.0", "--gate", "promote-to-rest", "--reason", "lgtm", "--user", "alice", "--idempotency-key", "k1")
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	want := workflows.GateAnswer{Gate: "promote-to-rest", User: "alice", Reason: "lgtm", Via: "cli"}
	if !f.approve || f.answer.Gate != want.Gate || f.answer.User != want.User || f.answer.Reason != want.Reason || f.answer.Via != want.Via {
		t.Errorf("answer approve=%v %+v", f.approve, f.answer)
	}
	if f.updateID != control.UpdateID("approve", "k1") {
		t.Errorf("update id %q: the idempotency key was not applied", f.updateID)
	}
	if r.stdout != "approved gate promote-to-rest of release-demo-1.0.0 as alice\n" {
		t.Errorf("stdout %q", r.stdout)
	}

	f = &fake{}
	r = runWith(t, f, nil, "reject", "release-demo-1.0.0")
	if r.code != exitUsage || r.dialed {
		t.Errorf("reject without --reason: exit %d dialed %v", r.code, r.dialed)
	}
	r = runWith(t, f, nil, "reject", "release-demo-1.0.0", "--reason", "too risky")
	if r.code != exitOK || f.approve || f.answer.Reason != "too risky" {
		t.Errorf("reject: exit %d approve %v %+v", r.code, f.approve, f.answer)
	}
}

func TestControls(t *testing.T) {
	f := &fake{}
	r := runWith(t, f, nil, "rollback", "release-demo-1.0.0", "--region", "eu-west-1", "--region", "us-east-1", "--reason", "errors up", "--user", "erin")
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if f.calls[0] != "rollback release-demo-1.0.0" || strings.Join(f.control.Regions, ",") != "eu-west-1,us-east-1" ||
		f.control.Reason != "errors up" || f.control.User != "erin" {
		t.Errorf("calls %v control %+v", f.calls, f.control)
	}
	for _, name := range []string{"pause", "resume", "abort", "promote"} {
		f = &fake{}
		if r := runWith(t, f, nil, name, "release-demo-1.0.0"); r.code != exitOK || f.calls[0] != name+" release-demo-1.0.0" {
			t.Errorf("%s: exit %d calls %v", name, r.code, f.calls)
		}
	}
	f = &fake{}
	if r := runWith(t, f, nil, "rollback", "release-demo-1.0.0", "--wave", "rest"); r.code != exitOK || strings.Join(f.control.Waves, ",") != "rest" {
		t.Errorf("rollback --wave: exit %d control %+v", r.code, f.control)
	}
	// Regions only mean something to promote and rollback.
	if r := runWith(t, &fake{}, nil, "pause", "release-demo-1.0.0", "--region", "x"); r.code != exitUsage {
		t.Errorf("pause --region: exit %d, want %d", r.code, exitUsage)
	}
}

func TestTrafficRestore(t *testing.T) {
	f := &fake{}
	r := runWith(t, f, nil, "traffic", "restore", "us-east-1", "--app", "demo", "--reason", "fixed the database", "--user", "erin")
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if f.restore.Region != "us-east-1" || f.restore.Application != "demo" || f.restore.User != "erin" || f.restore.Reason != "fixed the database" || f.restore.Via != "cli" {
		t.Errorf("restore options %+v", f.restore)
	}
	if !strings.Contains(r.stdout, "weight 100") || !strings.Contains(r.stdout, "eu-west-1=100 us-east-1=100") {
		t.Errorf("output %q", r.stdout)
	}
	for _, args := range [][]string{
		{"traffic", "restore", "us-east-1", "--reason", "x"},                                    // neither --app nor --release
		{"traffic", "restore", "us-east-1", "--app", "demo", "--release", "r", "--reason", "x"}, // both
		{"traffic", "restore", "us-east-1", "--app", "demo"},                                    // no reason
		{"traffic", "restore", "--app", "demo", "--reason", "x"},                                // no region
	} {
		f := &fake{}
		if r := runWith(t, f, nil, args...); r.code != exitUsage || len(f.calls) != 0 {
			t.Errorf("%v: exit %d calls %v, want %d and none", args, r.code, f.calls, exitUsage)
		}
	}
}

func TestListAttention(t *testing.T) {
	f := &fake{}
	a := newApp(&bytes.Buffer{}, &bytes.Buffer{}, func(string) string { return "" })
	a.now = func() time.Time { return time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC) }
	a.connect = func(context.Context, globals) (releases, func(), error) { return f, func() {}, nil }
	if code := a.execute([]string{"release", "list", "--attention", "--user", "erin"}); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	if len(f.calls) != 1 || !strings.Contains(f.calls[0], "KeelsonPhase IN ('awaiting-approval', 'paused', 'held')") ||
		!strings.Contains(f.calls[0], "CloseTime > '2026-11-21T09:00:00Z'") {
		t.Errorf("calls %v", f.calls)
	}
}

func TestFreezeCommands(t *testing.T) {
	f := &fake{}
	r := runWith(t, f, nil, "freeze", "--all", "--reason", "incident 4711", "--user", "sre")
	if r.code != exitOK || f.calls[0] != "freeze all=true app= by sre: incident 4711" || !strings.Contains(r.stdout, "all applications") {
		t.Errorf("freeze --all: exit %d calls %v out %q", r.code, f.calls, r.stdout)
	}
	f = &fake{}
	if r := runWith(t, f, nil, "unfreeze", "--app", "web", "--user", "sre"); r.code != exitOK || f.calls[0] != "unfreeze all=false app=web by sre" {
		t.Errorf("unfreeze --app: exit %d calls %v", r.code, f.calls)
	}
	f = &fake{}
	if r := runWith(t, f, nil, "release", "override-window", "release-web-1.0.0", "--reason", "security fix", "--user", "alice"); r.code != exitOK ||
		f.calls[0] != "override-window release-web-1.0.0 by alice: security fix" {
		t.Errorf("override-window: exit %d calls %v", r.code, f.calls)
	}
	for _, args := range [][]string{
		{"freeze", "--reason", "x"},                          // neither --all nor --app
		{"freeze", "--all", "--app", "web", "--reason", "x"}, // both
		{"freeze", "--all"},                                  // no reason
		{"release", "override-window", "release-web-1.0.0"},  // no reason
	} {
		f := &fake{}
		if r := runWith(t, f, nil, args...); r.code != exitUsage || len(f.calls) != 0 {
			t.Errorf("%v: exit %d calls %v, want %d and none", args, r.code, f.calls, exitUsage)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	cases := [][]string{
		{"frobnicate"},
		{"approve"},
		{"approve", "a", "b"},
		{"release", "start", "--version", "1.0.0"},
		{"release", "status", "x", "-o", "yaml"},
		{"release", "list", "--limit", "many"},
	}
	for _, args := range cases {
		r := runWith(t, &fake{}, nil, args...)
		if r.code != exitUsage {
			t.Errorf("%v: exit %d, want %d (stderr %q)", args, r.code, exitUsage, r.stderr)
		}
		if strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "keelson: ") {
			t.Errorf("%v: stderr is not one keelson: line: %q", args, r.stderr)
		}
	}
}

func TestFailuresAreOneLineExit1(t *testing.T) {
	refused := &control.Error{Kind: control.ErrRefused, Message: "approve release-demo-1.0.0 refused: user bob is not an approver of gate promote-to-rest (approvers: alice)"}
	r := runWith(t, &fake{err: refused}, nil, "approve", "release-demo-1.0.0", "--user", "bob")
	if r.code != exitFailure || r.stderr != "keelson: "+refused.Message+"\n" {
		t.Errorf("exit %d stderr %q", r.code, r.stderr)
	}
	notFound := &control.Error{Kind: control.ErrNotFound, Message: "release release-demo-1.0.0 not found"}
	r = runWith(t, &fake{err: notFound}, nil, "release", "status", "release-demo-1.0.0")
	if r.code != exitFailure || r.stderr != "keelson: release release-demo-1.0.0 not found\n" {
		t.Errorf("exit %d stderr %q", r.code, r.stderr)
	}
	r = runWith(t, &fake{err: errors.New("line one\nline two")}, nil, "abort", "release-demo-1.0.0")
	if r.code != exitFailure || r.stderr != "keelson: line one; line two\n" {
		t.Errorf("exit %d stderr %q", r.code, r.stderr)
	}
}

func TestStatusJSON(t *testing.T) {
	st := sampleStatus()
	r := runWith(t, &fake{statuses: []*workflows.Status{st}}, nil, "release", "status", "release-demo-1.2.0", "-o", "json")
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var got workflows.Status
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, r.stdout)
	}
	if got.Gate == nil || got.Gate.Name != "promote-to-rest" || len(got.Waves) != 2 || got.Waves[0].Regions[0].Revision != 4 {
		t.Errorf("decoded %+v", got)
	}
}

func TestWaitExitCodeByPhase(t *testing.T) {
	for _, tc := range []struct {
		phase workflows.Phase
		code  int
	}{
		{workflows.PhaseSucceeded, exitOK},
		{workflows.PhaseFailed, exitFailure},
		{workflows.PhaseRolledBack, exitFailure},
		{workflows.PhaseRejected, exitFailure},
		{workflows.PhaseAborted, exitFailure},
	} {
		t.Run(string(tc.phase), func(t *testing.T) {
			if got := exitCodeFor(tc.phase); got != tc.code {
				t.Errorf("exitCodeFor = %d, want %d", got, tc.code)
			}
			res := sampleResult()
			res.Phase = tc.phase
			f := &fake{
				start:    control.StartResult{ReleaseID: "release-demo-1.2.0", RunID: "r1", URL: "u"},
				statuses: []*workflows.Status{{Phase: workflows.PhasePlanning}, {Phase: tc.phase}},
				finished: make(chan struct{}),
				result:   res,
			}
			r := runWith(t, f, nil, "release", "start", "-f", "release.yaml", "--version", "1.2.0", "--wait")
			if r.code != tc.code {
				t.Errorf("exit %d, want %d; stderr %q", r.code, tc.code, r.stderr)
			}
			if !strings.Contains(r.stdout, "result    "+string(tc.phase)+" in 4m12s") {
				t.Errorf("no result line in:\n%s", r.stdout)
			}
			if tc.code != exitOK && !strings.Contains(r.stderr, "keelson: release release-demo-1.2.0 "+string(tc.phase)) {
				t.Errorf("stderr %q", r.stderr)
			}
			if strings.Contains(r.stdout, "\x1b[") {
				t.Errorf("ANSI escapes in non-terminal output")
			}
		})
	}
}

func TestVersion(t *testing.T) {
	r := runWith(t, &fake{}, nil, "version")
	if r.code != exitOK || !strings.HasPrefix(r.stdout, "keelson dev (go") {
		t.Errorf("exit %d stdout %q", r.code, r.stdout)
	}
}
