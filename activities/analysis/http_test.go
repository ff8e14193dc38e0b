package analysis

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/keelson-dev/keelson/release"
)

// appServer answers per path: /status/N with status N, /slow after 200ms,
// /json/<side> with the side's body, /version/<side>/<version> with 200
// and the path seen recorded.
func appServer(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/status/{code}", func(w http.ResponseWriter, r *http.Request) {
		var code int
		fmt.Sscan(r.PathValue("code"), &code)
		w.WriteHeader(code)
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(200 * time.Millisecond)
	})
	mux.HandleFunc("/json/{side}", func(w http.ResponseWriter, r *http.Request) {
		rate := map[string]string{"canary": "0.2", "stable": "0.1", "preview": `"0.3"`}[r.PathValue("side")]
		fmt.Fprintf(w, `{"status":"up","errors":{"rate":%s},"name":"x"}`, rate)
	})
	mux.HandleFunc("/version/{side}/{version}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("side") != "stable" || r.PathValue("version") != "1.0.0" {
			w.WriteHeader(http.StatusNotFound)
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func httpCheck(name, url string) release.AnalysisCheck {
	return release.AnalysisCheck{
		Name: name, Interval: release.Duration{Duration: 20 * time.Millisecond},
		HTTP: &release.HTTPAnalysis{URL: url},
	}
}

func httpInput(checks ...release.AnalysisCheck) RunInput {
	return RunInput{
		ReleaseID: "rel-1", Application: "web", Region: "eu", Step: "canary 10%",
		CanaryVersion: "2.0.0", StableVersion: "1.0.0", Checks: checks,
	}
}

func TestHTTP(t *testing.T) {
	srv := appServer(t)
	a, err := New(context.Background(), Config{})
	require.NoError(t, err)

	for _, tc := range []struct {
		name    string
		check   func(release.AnalysisCheck) release.AnalysisCheck
		path    string
		verdict Verdict
		reason  string
	}{
		{"status", nil, "/status/500", Failed, "c: status 500, want 200"},
		{"expected status", func(c release.AnalysisCheck) release.AnalysisCheck {
			c.HTTP.ExpectStatus = 204
			return c
		}, "/status/204", Passed, "c passed (1 samples)"},
		{"latency", func(c release.AnalysisCheck) release.AnalysisCheck {
			c.HTTP.MaxLatency.Duration = 50 * time.Millisecond
			return c
		}, "/slow", Failed, "c: latency 2"},
		{"timeout", func(c release.AnalysisCheck) release.AnalysisCheck {
			c.HTTP.Timeout.Duration = 50 * time.Millisecond
			return c
		}, "/slow", Failed, "context deadline exceeded"},
		{"json field expected", func(c release.AnalysisCheck) release.AnalysisCheck {
			c.HTTP.JSONField, c.HTTP.ExpectValue = "status", "up"
			return c
		}, "/json/canary", Passed, ""},
		{"json field differs", func(c release.AnalysisCheck) release.AnalysisCheck {
			c.HTTP.JSONField, c.HTTP.ExpectValue = "name", "y"
			return c
		}, "/json/canary", Failed, `c: field name is "x", want "y"`},
		{"json field missing", func(c release.AnalysisCheck) release.AnalysisCheck {
			c.HTTP.JSONField, c.HTTP.ExpectValue = "nope", "y"
			return c
		}, "/json/canary", Failed, "c: field nope is missing"},
		{"json number over max", func(c release.AnalysisCheck) release.AnalysisCheck {
			c.HTTP.JSONField, c.Max = "errors.rate", f(0.1)
			return c
		}, "/json/canary", Failed, "c: 0.2 > max 0.1"},
		{"json number, quoted", func(c release.AnalysisCheck) release.AnalysisCheck {
			c.HTTP.JSONField, c.Max = "errors.rate", f(0.5)
			return c
		}, "/json/preview", Passed, ""},
		{"json not a number", func(c release.AnalysisCheck) release.AnalysisCheck {
			c.HTTP.JSONField, c.Max = "status", f(0.1)
			return c
		}, "/json/canary", Failed, `c: field status is "up", not a number`},
		{"compare sides", func(c release.AnalysisCheck) release.AnalysisCheck {
			c.HTTP.JSONField, c.Compare, c.Max = "errors.rate", release.CompareRatio, f(1.5)
			return c
		}, "/json/{{.Side}}", Failed, "c: 2 > max 1.5"},
		{"unreachable", func(c release.AnalysisCheck) release.AnalysisCheck {
			c.HTTP.URL = "http://127.0.0.1:1/"
			return c
		}, "", Failed, "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := httpCheck("c", srv.URL+tc.path)
			if tc.check != nil {
				c = tc.check(c)
			}
			res, err := a.Run(context.Background(), httpInput(c))
			require.NoError(t, err)
			require.Equal(t, tc.verdict, res.Verdict, res.Reason)
			require.Contains(t, res.Reason, tc.reason)
		})
	}

	t.Run("stable side", func(t *testing.T) {
		t.Parallel()
		in := httpInput(httpCheck("c", srv.URL+"/version/{{.Side}}/{{.Version}}"))
		in.Side = SideStable
		res, err := a.Run(context.Background(), in)
		require.NoError(t, err)
		require.Equal(t, Passed, res.Verdict, res.Reason)
	})

	t.Run("duration", func(t *testing.T) {
		t.Parallel()
		c := httpCheck("c", srv.URL+"/status/200")
		c.Interval.Duration = 50 * time.Millisecond
		in := httpInput(c)
		in.Duration = 300 * time.Millisecond
		start := time.Now()
		res, err := a.Run(context.Background(), in)
		require.NoError(t, err)
		require.Equal(t, Passed, res.Verdict, res.Reason)
		require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)
		require.GreaterOrEqual(t, res.Samples, 5)
		require.Len(t, res.Checks[0].Deciding, 3, "a passed check shows its last samples")
	})
}

// A run does not pass on a failing last sample: with MinSamples reached
// and the duration over, a check in the middle of a failing run keeps
// sampling until the run ends one way or the other.
func TestNoPassOnAFailingSample(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	a, err := New(context.Background(), Config{})
	require.NoError(t, err)
	c := httpCheck("c", srv.URL)
	c.FailureLimit = 3
	res, err := a.Run(context.Background(), httpInput(c))
	require.NoError(t, err)
	require.Equal(t, Passed, res.Verdict, res.Reason)
	require.Equal(t, 2, res.Samples)
	require.Equal(t, 1, res.Checks[0].Failures)
}

func TestBadInput(t *testing.T) {
	a, err := New(context.Background(), Config{})
	require.NoError(t, err)
	for name, c := range map[string]release.AnalysisCheck{
		"bad template":     httpCheck("c", "http://x/{{.Nope}}"),
		"unparsable":       httpCheck("c", "http://x/{{"),
		"not http":         httpCheck("c", "ftp://x/"),
		"two providers":    {Name: "c", HTTP: &release.HTTPAnalysis{URL: "http://x"}, Prometheus: &release.PrometheusAnalysis{Address: "http://p", Query: "up"}},
		"compare an alarm": {Name: "c", Compare: release.CompareRatio, CloudWatch: &release.CloudWatchAnalysis{Alarm: "a", AWSRegion: "us-east-1"}},
		"max on a status":  {Name: "c", Max: f(1), HTTP: &release.HTTPAnalysis{URL: "http://x"}},
		"bad no data":      {Name: "c", NoData: "maybe", HTTP: &release.HTTPAnalysis{URL: "http://x"}},
		"no name":          {HTTP: &release.HTTPAnalysis{URL: "http://x"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := a.Run(context.Background(), httpInput(c))
			var app *temporal.ApplicationError
			require.True(t, errors.As(err, &app), "%T: %v", err, err)
			require.Equal(t, ErrBadInput, app.Type())
			require.True(t, app.NonRetryable())
		})
	}
}

func TestCancel(t *testing.T) {
	srv := appServer(t)
	a, err := New(context.Background(), Config{})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	in := httpInput(httpCheck("c", srv.URL+"/status/200"))
	in.Duration = time.Minute
	_, err = a.Run(ctx, in)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

// In an activity, Run heartbeats its progress and its result (with an
// infinite ratio, which JSON cannot hold) goes through Temporal's data
// converter.
func TestRunAsActivity(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "stable") {
			fmt.Fprint(w, `{"errors":0}`)
			return
		}
		fmt.Fprint(w, `{"errors":3}`)
	}))
	t.Cleanup(srv.Close)
	a, err := New(context.Background(), Config{})
	require.NoError(t, err)
	a.heartbeatEvery = 10 * time.Millisecond

	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(a)
	c := httpCheck("errors", srv.URL+"/{{.Side}}")
	c.HTTP.JSONField, c.Compare, c.Max, c.FailureLimit = "errors", release.CompareRatio, f(2), 2
	val, err := env.ExecuteActivity(a.Run, httpInput(c))
	require.NoError(t, err)
	var res RunResult
	require.NoError(t, val.Get(&res))
	require.Equal(t, Failed, res.Verdict)
	require.Equal(t, "errors: 2 failing samples in a row (last +Inf > max 2 (canary 3, stable 0))", res.Reason)
	require.Nil(t, res.Checks[0].Deciding[1].Value)
	require.Equal(t, 3.0, *res.Checks[0].Deciding[1].Canary)
}
