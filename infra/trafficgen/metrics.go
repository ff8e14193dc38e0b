package main

// What the simulated requests leave behind, where Keelson's analysis looks:
// Prometheus metrics on /metrics (scraped by the lab's Prometheus) and
// CloudWatch metrics in namespace Keelson/Demo of the region's AWS region
// (moto), the latter published every 10s.

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/prometheus/client_golang/prometheus"
)

const cloudWatchNamespace = "Keelson/Demo"

// versionNone is the version label of a side nothing serves.
const versionNone = "none"

func orNone(version string) string {
	if version == "" {
		return versionNone
	}
	return version
}

// metrics records every simulated request.
type metrics struct {
	registry *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec

	mu     sync.Mutex
	period map[cwKey]*cwSums // since the last CloudWatch publication
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keelson_demo_requests_total",
			Help: "Simulated requests to the demo application's users, by the side and version that answered and the status code.",
		}, []string{"application", "region", "side", "version", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "keelson_demo_request_duration_seconds",
			Help:    "Latency of the simulated requests.",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5},
		}, []string{"application", "region", "side", "version"}),
		period: map[cwKey]*cwSums{},
	}
	m.registry.MustRegister(m.requests, m.duration)
	return m
}

// seen makes the side's series exist before its first request: a healthy
// side has a 500 counter at 0, so that an error ratio over it is 0 rather
// than no data; and it is published to CloudWatch (as zeros) while it
// gets no requests.
func (m *metrics) seen(t Target, s Side) {
	v := orNone(s.Version)
	for _, code := range []string{"200", "500"} {
		m.requests.WithLabelValues(t.Application, t.Region, s.Name, v, code)
	}
	m.duration.WithLabelValues(t.Application, t.Region, s.Name, v)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sums(cwKey{t.Application, t.Region, s.Name})
}

// observe counts one request.
func (m *metrics) observe(t Target, s Side, o outcome) {
	v := orNone(s.Version)
	m.requests.WithLabelValues(t.Application, t.Region, s.Name, v, strconv.Itoa(o.Code)).Inc()
	m.duration.WithLabelValues(t.Application, t.Region, s.Name, v).Observe(o.Latency.Seconds())
	m.mu.Lock()
	defer m.mu.Unlock()
	sums := m.sums(cwKey{t.Application, t.Region, s.Name})
	sums.requests++
	if o.Code >= 500 {
		sums.errors++
	}
	sums.latency += o.Latency
}

// cwKey is the dimensions of the CloudWatch metrics.
type cwKey struct{ application, region, side string }

type cwSums struct {
	requests, errors int
	latency          time.Duration
}

func (m *metrics) sums(k cwKey) *cwSums {
	s := m.period[k]
	if s == nil {
		s = &cwSums{}
		m.period[k] = s
	}
	return s
}

// takePeriod returns the sums since the last call and starts a new period
// with the same sides at zero.
func (m *metrics) takePeriod() map[cwKey]*cwSums {
	m.mu.Lock()
	defer m.mu.Unlock()
	taken := m.period
	m.period = map[cwKey]*cwSums{}
	for k := range taken {
		m.period[k] = &cwSums{}
	}
	return taken
}

// cloudWatch publishes the periods' sums to each region's CloudWatch.
type cloudWatch struct {
	client func(region string) *cloudwatch.Client
	log    *slog.Logger
}

// publish puts one period: Requests and Errors (Count) and, when there
// were requests, Latency (Milliseconds, their average), with dimensions
// Application, Region and Side, at one-second storage resolution (the lab
// reads periods of 10s).
func (c *cloudWatch) publish(ctx context.Context, period map[cwKey]*cwSums, at time.Time) {
	byRegion := map[string][]cwtypes.MetricDatum{}
	for k, s := range period {
		dims := []cwtypes.Dimension{
			{Name: aws.String("Application"), Value: aws.String(k.application)},
			{Name: aws.String("Region"), Value: aws.String(k.region)},
			{Name: aws.String("Side"), Value: aws.String(k.side)},
		}
		datum := func(name string, v float64, unit cwtypes.StandardUnit) cwtypes.MetricDatum {
			return cwtypes.MetricDatum{
				MetricName: aws.String(name), Dimensions: dims, Timestamp: aws.Time(at),
				Value: aws.Float64(v), Unit: unit, StorageResolution: aws.Int32(1),
			}
		}
		data := []cwtypes.MetricDatum{
			datum("Requests", float64(s.requests), cwtypes.StandardUnitCount),
			datum("Errors", float64(s.errors), cwtypes.StandardUnitCount),
		}
		if s.requests > 0 {
			avg := float64(s.latency) / float64(s.requests) / float64(time.Millisecond)
			data = append(data, datum("Latency", avg, cwtypes.StandardUnitMilliseconds))
		}
		byRegion[k.region] = append(byRegion[k.region], data...)
	}
	for region, data := range byRegion {
		// PutMetricData takes at most 1000 data a call.
		for chunk := range slices.Chunk(data, 1000) {
			_, err := c.client(region).PutMetricData(ctx, &cloudwatch.PutMetricDataInput{
				Namespace: aws.String(cloudWatchNamespace), MetricData: chunk,
			})
			if err != nil {
				c.log.Warn("cloudwatch: put metric data failed", "region", region, "err", err)
			}
		}
	}
}

// run publishes every interval until ctx ends.
func (c *cloudWatch) run(ctx context.Context, m *metrics, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c.publish(ctx, m.takePeriod(), now)
		}
	}
}
