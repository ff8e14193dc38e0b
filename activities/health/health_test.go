package health

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/keelson-dev/keelson/release"
)

func run(t *testing.T, in CheckInput, heartbeat *Progress) (*CheckResult, error) {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	a := &Activities{}
	env.RegisterActivity(a)
	if heartbeat != nil {
		env.SetHeartbeatDetails(*heartbeat)
	}
	val, err := env.ExecuteActivity(a.Check, in)
	if err != nil {
		return nil, err
	}
	var res CheckResult
	if err := val.Get(&res); err != nil {
		t.Fatalf("decode result: %v", err)
	}
	return &res, nil
}

// appError returns the application error of type want, failing the test
// unless err is one and is non-retryable.
func appError(t *testing.T, err error, want string) *temporal.ApplicationError {
	t.Helper()
	var app *temporal.ApplicationError
	if !errors.As(err, &app) {
		t.Fatalf("want a %s application error, got %T: %v", want, err, err)
	}
	if app.Type() != want || !app.NonRetryable() {
		t.Fatalf("want non-retryable %s, got type %q nonRetryable=%v: %v", want, app.Type(), app.NonRetryable(), err)
	}
	return app
}

// scripted answers with the statuses and bodies given, one per request,
// repeating the last one; it counts requests.
type scripted struct {
	mu      sync.Mutex
	answers []answer
	hits    atomic.Int32
}

type answer struct {
	status int
	body   string
}

func (s *scripted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := int(s.hits.Add(1)) - 1
	s.mu.Lock()
	a := s.answers[min(n, len(s.answers)-1)]
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.status)
	fmt.Fprint(w, a.body)
}

func server(t *testing.T, answers ...answer) (*httptest.Server, *scripted) {
	t.Helper()
	h := &scripted{answers: answers}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, h
}

func check(url string) release.HealthCheck {
	return release.HealthCheck{
		Name:         "ready",
		URL:          url,
		Interval:     release.Duration{Duration: 10 * time.Millisecond},
		Timeout:      release.Duration{Duration: time.Second},
		FailureLimit: 3,
	}
}

func TestReadinessPasses(t *testing.T) {
	srv, h := server(t, answer{200, `{"status":{"ready":true,"items":[{"n":3}]}}`})
	c := check(srv.URL + "/healthz")
	c.JSONField, c.ExpectValue, c.Successes = "status.ready", "true", 3
	other := check(srv.URL + "/other")
	other.Name, other.JSONField, other.ExpectValue = "items", "status.items.0.n", "3"
	res, err := run(t, CheckInput{Region: "us-east-1", Checks: []release.HealthCheck{c, other}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// 3 successes in a row for the first check, 1 (the default) for the second.
	if res.Probes != 4 || res.Failures != 0 || int(h.hits.Load()) != 4 {
		t.Errorf("probes=%d failures=%d hits=%d, want 4, 0, 4", res.Probes, res.Failures, h.hits.Load())
	}
}

func TestStatusMismatchFailsNonRetryably(t *testing.T) {
	srv, h := server(t, answer{503, `{}`})
	res, err := run(t, CheckInput{Region: "eu-west-1", Checks: []release.HealthCheck{check(srv.URL + "/healthz")}}, nil)
	if err == nil {
		t.Fatalf("passed against a 503: %+v", res)
	}
	app := appError(t, err, ErrUnhealthy)
	for _, want := range []string{`"ready"`, srv.URL + "/healthz", "eu-west-1", "3 times in a row", "status 503, want 200"} {
		if !strings.Contains(app.Error(), want) {
			t.Errorf("error %q does not mention %q", app.Error(), want)
		}
	}
	// The failure limit stops probing: no fourth request.
	if got := h.hits.Load(); got != 3 {
		t.Errorf("server saw %d requests, want exactly the failure limit 3", got)
	}
	var details CheckResult
	if err := app.Details(&details); err != nil || details.Probes != 3 || details.Failures != 3 {
		t.Errorf("details = %+v (%v), want 3 probes and 3 failures", details, err)
	}
}

func TestJSONFieldMismatch(t *testing.T) {
	srv, _ := server(t, answer{200, `{"status":"degraded"}`})
	c := check(srv.URL)
	c.JSONField, c.ExpectValue, c.FailureLimit = "status", "ok", 1
	_, err := run(t, CheckInput{Checks: []release.HealthCheck{c}}, nil)
	app := appError(t, err, ErrUnhealthy)
	if !strings.Contains(app.Error(), `field status is "degraded", want "ok"`) {
		t.Errorf("error does not say what the field held: %v", app)
	}

	// A field that must only be present.
	c.JSONField, c.ExpectValue = "missing.field", ""
	_, err = run(t, CheckInput{Checks: []release.HealthCheck{c}}, nil)
	if app := appError(t, err, ErrUnhealthy); !strings.Contains(app.Error(), "field missing.field is missing") {
		t.Errorf("error does not name the missing field: %v", app)
	}
}

func TestFlappingBelowLimitPasses(t *testing.T) {
	srv, h := server(t,
		answer{500, ``}, answer{500, ``}, answer{200, `{}`},
		answer{500, ``}, answer{500, ``}, answer{200, `{}`}, answer{200, `{}`})
	c := check(srv.URL)
	c.Successes = 2 // the lone success between failures must not count
	res, err := run(t, CheckInput{Checks: []release.HealthCheck{c}}, nil)
	if err != nil {
		t.Fatalf("two failures in a row with a limit of 3 must pass: %v", err)
	}
	if res.Probes != 7 || res.Failures != 4 || h.hits.Load() != 7 {
		t.Errorf("probes=%d failures=%d hits=%d, want 7, 4, 7", res.Probes, res.Failures, h.hits.Load())
	}
}

func TestBakeRunsForItsDuration(t *testing.T) {
	srv, h := server(t, answer{200, `{}`})
	c := check(srv.URL)
	c.Interval.Duration = 50 * time.Millisecond
	bake := 300 * time.Millisecond
	start := time.Now()
	res, err := run(t, CheckInput{Checks: []release.HealthCheck{c}, For: bake}, nil)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if took < bake {
		t.Errorf("bake returned after %s, before its %s", took, bake)
	}
	// Probes at 0, 50, ..., 300 ms: one per interval, not one per loop.
	if res.Probes < 4 || res.Probes > 8 || int(h.hits.Load()) != res.Probes {
		t.Errorf("probes=%d hits=%d over %s every %s", res.Probes, h.hits.Load(), bake, c.Interval)
	}
}

func TestBakeFailsAtLimit(t *testing.T) {
	srv, h := server(t, answer{200, `{}`}, answer{200, `{}`}, answer{500, ``}, answer{200, `{}`}, answer{500, ``})
	c := check(srv.URL)
	c.FailureLimit = 2
	start := time.Now()
	_, err := run(t, CheckInput{Checks: []release.HealthCheck{c}, For: time.Minute}, nil)
	appError(t, err, ErrUnhealthy)
	if time.Since(start) > 30*time.Second {
		t.Errorf("bake did not stop at the failure limit")
	}
	// ok, ok, fail, ok (resets), fail, fail: the limit is consecutive failures.
	if got := h.hits.Load(); got != 6 {
		t.Errorf("server saw %d requests, want 6", got)
	}
}

func TestBakeResumesFromHeartbeat(t *testing.T) {
	srv, _ := server(t, answer{200, `{}`})
	c := check(srv.URL)
	c.Interval.Duration = time.Second
	// A previous attempt baked 59.9 of 60 seconds before its worker died.
	res, err := run(t, CheckInput{Checks: []release.HealthCheck{c}, For: time.Minute},
		&Progress{Probes: 40, Failures: 1, Baked: time.Minute - 100*time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Probes != 41 || res.Failures != 1 {
		t.Errorf("probes=%d failures=%d, want the earlier 40 and 1 plus one probe", res.Probes, res.Failures)
	}
}

func TestURLTemplateWithOutputs(t *testing.T) {
	var got atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.URL.String())
	}))
	defer srv.Close()
	c := check("{{.Outputs.base}}/healthz/{{.Region}}?v={{.Version}}&lb={{.Outputs.lb}}")
	in := CheckInput{Region: "ap-southeast-1", Version: "1.4.2",
		Outputs: map[string]any{"base": srv.URL, "lb": "web-lb"}, Checks: []release.HealthCheck{c}}
	if _, err := run(t, in, nil); err != nil {
		t.Fatal(err)
	}
	if want := "/healthz/ap-southeast-1?v=1.4.2&lb=web-lb"; got.Load() != want {
		t.Errorf("probed %v, want %s", got.Load(), want)
	}

	// A missing output is bad input, not something to retry.
	in.Outputs = map[string]any{"base": srv.URL}
	_, err := run(t, in, nil)
	if app := appError(t, err, ErrBadInput); !strings.Contains(app.Error(), "lb") {
		t.Errorf("error does not name the missing output: %v", app)
	}
}

func TestInsecureSkipVerify(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	c := check(srv.URL)
	c.FailureLimit = 1
	_, err := run(t, CheckInput{Checks: []release.HealthCheck{c}}, nil)
	if app := appError(t, err, ErrUnhealthy); !strings.Contains(app.Error(), "certificate") {
		t.Errorf("self-signed certificate should fail without insecureSkipVerify: %v", app)
	}
	c.InsecureSkipVerify = true
	if _, err := run(t, CheckInput{Checks: []release.HealthCheck{c}}, nil); err != nil {
		t.Errorf("insecureSkipVerify should accept the self-signed certificate: %v", err)
	}
}

func TestNoChecks(t *testing.T) {
	res, err := run(t, CheckInput{Region: "us-east-1", For: time.Hour}, nil)
	if err != nil || res.Probes != 0 {
		t.Errorf("no checks: %+v, %v", res, err)
	}
}

// heartbeatSpy sees every heartbeat an activity records, as the Go value
// given (the test environment's listener sees only those the SDK's
// throttling lets through to the server).
type heartbeatSpy struct {
	interceptor.WorkerInterceptorBase
	mu    sync.Mutex
	beats []Progress
}

func (h *heartbeatSpy) InterceptActivity(ctx context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	return &spyInbound{ActivityInboundInterceptorBase: interceptor.ActivityInboundInterceptorBase{Next: next}, spy: h}
}

func (h *heartbeatSpy) recorded() []Progress {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.beats)
}

type spyInbound struct {
	interceptor.ActivityInboundInterceptorBase
	spy *heartbeatSpy
}

func (i *spyInbound) Init(outbound interceptor.ActivityOutboundInterceptor) error {
	return i.Next.Init(&spyOutbound{ActivityOutboundInterceptorBase: interceptor.ActivityOutboundInterceptorBase{Next: outbound}, spy: i.spy})
}

type spyOutbound struct {
	interceptor.ActivityOutboundInterceptorBase
	spy *heartbeatSpy
}

func (o *spyOutbound) RecordHeartbeat(ctx context.Context, details ...any) {
	if len(details) == 1 {
		if p, ok := details[0].(Progress); ok {
			o.spy.mu.Lock()
			o.spy.beats = append(o.spy.beats, p)
			o.spy.mu.Unlock()
		}
	}
	o.Next.RecordHeartbeat(ctx, details...)
}

// spiedEnv is an activity environment whose heartbeats the spy sees.
func spiedEnv(a *Activities) (*testsuite.TestActivityEnvironment, *heartbeatSpy) {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	spy := &heartbeatSpy{}
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{spy}})
	env.RegisterActivity(a)
	return env, spy
}

func TestHeartbeatsCarryProgress(t *testing.T) {
	srv, _ := server(t, answer{200, `{}`})
	c := check(srv.URL)
	c.Interval.Duration = 20 * time.Millisecond
	a := &Activities{}
	env, spy := spiedEnv(a)
	var mu sync.Mutex
	var sent []Progress
	env.SetOnActivityHeartbeatListener(func(_ *activity.Info, details converter.EncodedValues) {
		var p Progress
		if err := details.Get(&p); err != nil {
			t.Errorf("heartbeat details: %v", err)
		}
		mu.Lock()
		sent = append(sent, p)
		mu.Unlock()
	})
	val, err := env.ExecuteActivity(a.Check, CheckInput{Checks: []release.HealthCheck{c}, For: 150 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var res CheckResult
	if err := val.Get(&res); err != nil {
		t.Fatal(err)
	}
	// The SDK sends the first heartbeat at once and throttles the rest (at
	// most every 30s by default): the server saw the one recorded at the
	// start, in the shape a retry reads back.
	mu.Lock()
	defer mu.Unlock()
	if len(sent) == 0 || sent[0] != (Progress{}) {
		t.Fatalf("heartbeats sent: %+v, want first the empty progress of a first attempt", sent)
	}
	// Each round's progress was recorded as it was made.
	beats := spy.recorded()
	i := slices.IndexFunc(beats, func(p Progress) bool { return p.Probes > 0 })
	if i < 0 {
		t.Fatalf("no heartbeat after a probe: %+v", beats)
	}
	if first := beats[i]; first.Probes != 1 || first.Last != "ready: ok" || first.Baked <= 0 || first.Baked > 150*time.Millisecond {
		t.Errorf("first heartbeat after a probe %+v, want one probe, its outcome and a part of the bake", first)
	}
	if res.Probes < 2 {
		t.Errorf("probes=%d, want a probe every 20ms over 150ms", res.Probes)
	}
}

// slowServer answers 200 after sleeping for delay.
func slowServer(t *testing.T, delay time.Duration) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// checkOnce runs Check as a workflow does, with a heartbeat timeout and no
// retry: an attempt that stops heartbeating fails.
func checkOnce(ctx workflow.Context, in CheckInput) (*CheckResult, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		HeartbeatTimeout:    time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	var a *Activities
	var res CheckResult
	err := workflow.ExecuteActivity(ctx, a.Check, in).Get(ctx, &res)
	return &res, err
}

// A probe that takes longer than the heartbeat timeout does not make the
// activity look lost: Check heartbeats while the probe waits, not only
// between rounds. The test environment enforces the heartbeat timeout on
// the wall clock, as the server does.
func TestSlowProbeOutlastsHeartbeatTimeout(t *testing.T) {
	srv := slowServer(t, 2500*time.Millisecond) // 2.5 heartbeat timeouts
	c := check(srv.URL)
	c.Timeout.Duration = 30 * time.Second
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterActivity(&Activities{heartbeatEvery: 100 * time.Millisecond})
	env.RegisterWorkflow(checkOnce)
	env.ExecuteWorkflow(checkOnce, CheckInput{Region: "eu-west-1", Checks: []release.HealthCheck{c}})
	if !env.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("a slow probe failed the check: %v", err)
	}
	var res CheckResult
	if err := env.GetWorkflowResult(&res); err != nil || res.Probes != 1 {
		t.Errorf("result %+v (%v), want one probe", res, err)
	}
}

// While the first probe of a retried bake waits on a slow target, the
// heartbeats carry what the earlier attempt baked, so that losing this
// attempt too loses nothing; none is recorded after Check returned.
func TestHeartbeatsDuringSlowProbeKeepResumedProgress(t *testing.T) {
	srv := slowServer(t, 600*time.Millisecond)
	c := check(srv.URL)
	c.Interval.Duration = time.Second
	a := &Activities{heartbeatEvery: 50 * time.Millisecond}
	env, spy := spiedEnv(a)
	resumed := Progress{Probes: 40, Failures: 1, Last: "ready: ok", Baked: time.Minute - 300*time.Millisecond}
	env.SetHeartbeatDetails(resumed)
	val, err := env.ExecuteActivity(a.Check, CheckInput{Checks: []release.HealthCheck{c}, For: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	beats := spy.recorded()
	var res CheckResult
	if err := val.Get(&res); err != nil || res.Probes != 41 {
		t.Fatalf("result %+v (%v), want the earlier 40 probes plus one", res, err)
	}
	// The first heartbeat, at the start, and those while the probe waited
	// (about 12 at one per 50ms over 600ms) all carry the earlier progress.
	during := 0
	for _, p := range beats {
		if p.Probes == 40 {
			if p != resumed {
				t.Errorf("heartbeat before the first probe answered %+v, want %+v", p, resumed)
			}
			during++
		}
	}
	if during < 3 {
		t.Errorf("%d heartbeats before the slow probe answered, want one at the start and more while it waited: %+v", during, beats)
	}
	if last := beats[len(beats)-1]; last.Probes != 41 || last.Baked != time.Minute {
		t.Errorf("last heartbeat %+v, want the finished bake", last)
	}
	time.Sleep(200 * time.Millisecond)
	if after := spy.recorded(); len(after) != len(beats) {
		t.Errorf("%d heartbeats recorded after Check returned", len(after)-len(beats))
	}
}
