package health

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

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

func TestHeartbeatsCarryProgress(t *testing.T) {
	srv, _ := server(t, answer{200, `{}`})
	c := check(srv.URL)
	c.Interval.Duration = 20 * time.Millisecond
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	a := &Activities{}
	env.RegisterActivity(a)
	var mu sync.Mutex
	var beats []Progress
	env.SetOnActivityHeartbeatListener(func(_ *activity.Info, details converter.EncodedValues) {
		var p Progress
		if err := details.Get(&p); err != nil {
			t.Errorf("heartbeat details: %v", err)
		}
		mu.Lock()
		beats = append(beats, p)
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
	// The SDK throttles heartbeats (the first goes out at once, later ones
	// at most every 30s by default), so a short bake shows the first one:
	// it must already carry the first round's progress, in the shape a
	// retry reads back.
	mu.Lock()
	defer mu.Unlock()
	if len(beats) == 0 {
		t.Fatal("no heartbeat")
	}
	if first := beats[0]; first.Probes != 1 || first.Last != "ready: ok" || first.Baked <= 0 || first.Baked > 150*time.Millisecond {
		t.Errorf("first heartbeat %+v, want one probe, its outcome and a part of the bake", first)
	}
	if res.Probes < 2 {
		t.Errorf("probes=%d, want a probe every 20ms over 150ms", res.Probes)
	}
}
