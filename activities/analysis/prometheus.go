package analysis

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/keelson-dev/keelson/release"
)

const (
	// queryTimeout bounds one query to Prometheus or CloudWatch: a server
	// that hangs makes a failing sample, not a stuck check.
	queryTimeout = 30 * time.Second
	// defaultMinStep is the step of a range query whose Range/10 is
	// shorter: Prometheus' own default scrape interval, below which a
	// range query only repeats the same points.
	defaultMinStep = 15 * time.Second
)

// prometheusAPI is the client for a Prometheus address, made on first use
// and kept: the HTTP client under it pools connections.
func (a *Activities) prometheusAPI(address string) (promv1.API, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c, ok := a.prometheus[address]; ok {
		return c, nil
	}
	client, err := api.NewClient(api.Config{Address: address, Client: a.http})
	if err != nil {
		return nil, fmt.Errorf("prometheus client for %s: %w", address, err)
	}
	c := promv1.NewAPI(client)
	a.prometheus[address] = c
	return c, nil
}

// readPrometheus runs the query: an instant query, or with a Range a
// range query over the last Range whose points are averaged. The result
// must be one number. An unreachable server or a query Prometheus rejects
// is a failing reading: the check cannot see the canary, which is not a
// reason to keep going.
func (a *Activities) readPrometheus(ctx context.Context, p *release.PrometheusAnalysis, now time.Time) reading {
	c, err := a.prometheusAPI(p.Address)
	if err != nil {
		return failReading("%v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	var v model.Value
	if p.Range.Duration > 0 {
		step := p.Step.Duration
		if step <= 0 {
			step = max(p.Range.Duration/10, defaultMinStep)
			step = min(step, p.Range.Duration)
		}
		v, _, _, err = c.QueryRange(ctx, p.Query, promv1.Range{Start: now.Add(-p.Range.Duration), End: now, Step: step})
	} else {
		v, _, _, err = c.Query(ctx, p.Query, now)
	}
	if err != nil {
		return failReading("prometheus query: %v", err)
	}
	return promReading(v)
}

// promReading turns a query result into a reading: a scalar, or a vector
// or matrix of exactly one series (a matrix's points averaged). No series
// is no data; several are a failing reading, because which one to judge
// is a guess the query must make instead.
func promReading(v model.Value) reading {
	switch v := v.(type) {
	case *model.Scalar:
		return valueReading(float64(v.Value))
	case model.Vector:
		switch len(v) {
		case 0:
			return noDataReading("empty result")
		case 1:
			return valueReading(float64(v[0].Value))
		}
		return failReading("query returned %d series, want one number (aggregate it, e.g. sum(...))", len(v))
	case model.Matrix:
		switch len(v) {
		case 0:
			return noDataReading("empty result")
		case 1:
			return averageReading(v[0].Values)
		}
		return failReading("query returned %d series, want one (aggregate it, e.g. sum(...))", len(v))
	case nil:
		return noDataReading("empty result")
	}
	return failReading("query returned a %s, want a number", v.Type())
}

// averageReading averages a series' points; NaN points (0/0 in a ratio at
// a moment without traffic) are left out rather than making the whole
// average NaN.
func averageReading(points []model.SamplePair) reading {
	var sum float64
	n := 0
	for _, p := range points {
		f := float64(p.Value)
		if math.IsNaN(f) {
			continue
		}
		sum += f
		n++
	}
	if n == 0 {
		return noDataReading("no points in range")
	}
	return valueReading(sum / float64(n))
}
