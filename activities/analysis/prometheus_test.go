package analysis

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/keelson-dev/keelson/activities/artifacts"
	"github.com/keelson-dev/keelson/internal/labtest"
	"github.com/keelson-dev/keelson/release"
)

// errorsQuery is one side's errors in one test's series; the test's name
// is the label test.
const errorsQuery = `sum(keelson_test_errors_total{app="{{.Application}}",test="%s",side="{{.Side}}",version="{{.Version}}"})`

func errorsCheck(name, test string) release.AnalysisCheck {
	return release.AnalysisCheck{
		Name:     name,
		Interval: release.Duration{Duration: 100 * time.Millisecond},
		Compare:  release.CompareRatio,
		Max:      f(2),
		Prometheus: &release.PrometheusAnalysis{
			Query: strings.Replace(errorsQuery, "%s", test, 1),
		},
	}
}

// TestPrometheus runs analyses against a real Prometheus that scrapes the
// test's own metrics every second: per-side error counters and a gauge,
// set before the first scrape.
func TestPrometheus(t *testing.T) {
	reg := prometheus.NewRegistry()
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keelson_test_errors_total"},
		[]string{"app", "test", "side", "version"})
	latency := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "keelson_test_latency_seconds"}, []string{"test"})
	reg.MustRegister(errs, latency)
	errs.WithLabelValues("web", "ratio", "canary", "2.0.0").Add(10)
	errs.WithLabelValues("web", "ratio", "stable", "1.0.0").Add(2)
	errs.WithLabelValues("web", "healthy", "canary", "2.0.0").Add(2)
	errs.WithLabelValues("web", "healthy", "stable", "1.0.0").Add(2)
	latency.WithLabelValues("range").Set(0.7)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)

	addr := labtest.StartPrometheus(t, []string{srv.URL + "/metrics"}, time.Second)
	scrapeStart := time.Now()
	waitForScrape(t, addr, `count(keelson_test_errors_total) + count(keelson_test_latency_seconds)`, 5)
	t.Logf("first scrape after %s", time.Since(scrapeStart))

	a, err := New(context.Background(), Config{})
	require.NoError(t, err)
	input := func(checks ...release.AnalysisCheck) RunInput {
		for i := range checks {
			if checks[i].Prometheus != nil {
				checks[i].Prometheus.Address = addr
			}
		}
		return RunInput{
			ReleaseID: "rel-1", Application: "web", Region: "eu", Step: "canary 10%",
			CanaryVersion: "2.0.0", StableVersion: "1.0.0", Checks: checks,
		}
	}

	t.Run("ratio over max fails", func(t *testing.T) {
		t.Parallel()
		store, err := artifacts.Open("file://" + t.TempDir())
		require.NoError(t, err)
		a, err := New(context.Background(), Config{Store: store})
		require.NoError(t, err)
		a.flushEvery = 2

		bad := errorsCheck("errors-ratio", "ratio")
		bad.FailureLimit = 3
		// Healthy, and slower: the run must not wait for it.
		other := errorsCheck("errors-ratio-loose", "ratio")
		other.Max = f(100)
		other.Interval.Duration = time.Second
		in := input(bad, other)
		in.Duration = time.Minute

		start := time.Now()
		res, err := a.Run(context.Background(), in)
		require.NoError(t, err)
		require.Less(t, time.Since(start), 10*time.Second, "a failed check ends the run at once")

		require.Equal(t, Failed, res.Verdict)
		require.Equal(t, "errors-ratio: 3 failing samples in a row (last 5 > max 2)", res.Reason)
		require.Len(t, res.Checks, 2)
		c := res.Checks[0]
		require.Equal(t, Failed, c.Verdict)
		require.Equal(t, 3, c.Failures)
		require.Len(t, c.Deciding, 3)
		for _, s := range c.Deciding {
			require.False(t, s.Pass)
			require.Equal(t, 5.0, *s.Value)
			require.Equal(t, 10.0, *s.Canary)
			require.Equal(t, 2.0, *s.Stable)
		}
		require.Equal(t, c.Deciding[2].Time, res.DecidedAt)
		require.Empty(t, res.Checks[1].Verdict, "the other check was stopped undecided")
		require.False(t, res.Started.IsZero())
		require.False(t, res.Ended.Before(res.DecidedAt))

		// Every sample is in the store, one JSON object a line.
		require.Equal(t, "analysis/rel-1/eu/canary-10.jsonl", res.SamplesKey)
		rc, err := store.Get(context.Background(), res.SamplesKey)
		require.NoError(t, err)
		defer rc.Close()
		var lines []Sample
		sc := bufio.NewScanner(rc)
		for sc.Scan() {
			var s Sample
			require.NoError(t, json.Unmarshal(sc.Bytes(), &s), sc.Text())
			lines = append(lines, s)
		}
		require.NoError(t, sc.Err())
		require.Len(t, lines, res.Samples)
		require.Equal(t, res.Checks[0].Samples+res.Checks[1].Samples, res.Samples)
		require.Equal(t, "5 > max 2", lines[len(lines)-1].Reason)
	})

	t.Run("healthy canary passes with min samples", func(t *testing.T) {
		t.Parallel()
		c := errorsCheck("errors-ratio", "healthy")
		c.MinSamples = 3
		res, err := a.Run(context.Background(), input(c))
		require.NoError(t, err)
		require.Equal(t, Passed, res.Verdict, res.Reason)
		require.Equal(t, "errors-ratio passed (3 samples)", res.Reason)
		require.Equal(t, 3, res.Checks[0].Samples)
		require.Equal(t, 1.0, *res.Checks[0].Deciding[2].Value)
		require.True(t, res.DecidedAt.IsZero())
		require.Empty(t, res.SamplesKey, "no store, no samples kept")
	})

	for _, tc := range []struct {
		rule    release.NoData
		verdict Verdict
	}{
		{release.NoDataFail, Failed},
		{release.NoDataPass, Passed},
		{"", Inconclusive},
	} {
		t.Run("no data "+string(tc.rule), func(t *testing.T) {
			t.Parallel()
			c := errorsCheck("absent", "absent")
			c.Compare = ""
			c.FailureLimit, c.MinSamples = 2, 2
			c.NoData = tc.rule
			c.Interval.Duration = 50 * time.Millisecond
			res, err := a.Run(context.Background(), input(c))
			require.NoError(t, err)
			require.Equal(t, tc.verdict, res.Verdict, res.Reason)
			require.Equal(t, 2, res.Checks[0].NoData)
			if tc.verdict != Passed {
				require.Contains(t, res.Reason, "absent: 2 ")
				require.Contains(t, res.Reason, "(last no data (empty result))")
			}
		})
	}

	t.Run("range query", func(t *testing.T) {
		t.Parallel()
		res, err := a.Run(context.Background(), input(release.AnalysisCheck{
			Name: "latency", Max: f(0.5),
			Prometheus: &release.PrometheusAnalysis{
				Query: `max(keelson_test_latency_seconds{test="range"})`,
				Range: release.Duration{Duration: 3 * time.Second},
				Step:  release.Duration{Duration: time.Second},
			},
		}))
		require.NoError(t, err)
		require.Equal(t, Failed, res.Verdict)
		require.Equal(t, "latency: 0.7 > max 0.5", res.Reason)
	})

	t.Run("several series fail", func(t *testing.T) {
		t.Parallel()
		res, err := a.Run(context.Background(), input(release.AnalysisCheck{
			Name: "unaggregated", Max: f(100),
			Prometheus: &release.PrometheusAnalysis{Query: `keelson_test_errors_total{test="ratio"}`},
		}))
		require.NoError(t, err)
		require.Equal(t, Failed, res.Verdict)
		require.Contains(t, res.Reason, "unaggregated: query returned 2 series")
		require.False(t, res.Checks[0].Deciding[0].NoData)
	})

	t.Run("unreachable prometheus fails", func(t *testing.T) {
		t.Parallel()
		in := input(errorsCheck("down", "ratio"))
		// Port 1 on loopback: nothing listens, the connection is refused.
		in.Checks[0].Prometheus.Address = "http://127.0.0.1:1"
		res, err := a.Run(context.Background(), in)
		require.NoError(t, err)
		require.Equal(t, Failed, res.Verdict)
		require.Contains(t, res.Reason, "down: canary: prometheus query:")
	})
}

// waitForScrape waits until query (a count of the test's series) reaches
// want: the first scrape happens up to an interval after Prometheus is
// ready, and a sample taken before it would have no data.
func waitForScrape(t *testing.T, addr, query string, want float64) {
	t.Helper()
	client, err := api.NewClient(api.Config{Address: addr})
	require.NoError(t, err)
	prom := promv1.NewAPI(client)
	deadline := time.Now().Add(15 * time.Second)
	for {
		v, _, _, err := prom.Query(context.Background(), query, time.Now())
		if err == nil {
			if vec, ok := v.(model.Vector); ok && len(vec) == 1 && float64(vec[0].Value) == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus has not scraped the test's metrics after 15s: %v %v", v, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestPromReading(t *testing.T) {
	now := model.Now()
	require.Equal(t, valueReading(2), promReading(&model.Scalar{Value: 2, Timestamp: now}))
	require.Equal(t, noDataReading("empty result"), promReading(model.Vector{}))
	require.Equal(t, valueReading(3), promReading(model.Vector{{Value: 3}}))
	require.Contains(t, promReading(model.Vector{{Value: 3}, {Value: 4}}).fail, "2 series")
	// A range's points are averaged; NaN points (0/0) are left out.
	require.Equal(t, valueReading(2), promReading(model.Matrix{{Values: []model.SamplePair{{Value: 1}, {Value: model.SampleValue(nan())}, {Value: 3}}}}))
	require.Equal(t, noDataReading("no points in range"), promReading(model.Matrix{{Values: []model.SamplePair{{Value: model.SampleValue(nan())}}}}))
	require.Contains(t, promReading(&model.String{Value: "x"}).fail, "want a number")
}
