package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keelson-dev/keelson/control"
	"github.com/keelson-dev/keelson/dora"
)

// doraGauges exports the DORA figures of every application that finished
// a release in the window, recomputed every interval from Temporal's
// visibility and the releases' results with the dora package, exactly as
// `keelson report dora --app APP --since WINDOW` computes them. Every
// worker exports the same figures; aggregate with max by (application).
type doraGauges struct {
	window time.Duration
	// gather reads the records of releases that closed since a time.
	gather func(ctx context.Context, since time.Time) (control.DoraData, error)
	now    func() time.Time
	log    *slog.Logger

	// snap is swapped whole, so a scrape never sees half a refresh, and an
	// application that leaves the window leaves the metrics with it.
	snap   atomic.Pointer[doraSnapshot]
	errors prometheus.Counter
}

type doraSnapshot struct {
	at      time.Time
	reports []dora.Report
}

func newDoraGauges(window time.Duration, gather func(context.Context, time.Time) (control.DoraData, error), log *slog.Logger) *doraGauges {
	return &doraGauges{
		window: window, gather: gather, now: time.Now, log: log,
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keelson_dora_refresh_errors_total",
			Help: "Refreshes of the DORA figures that failed (the previous figures stay).",
		}),
	}
}

// clientGather gathers through the control client, keeping closed runs'
// records between refreshes.
func clientGather(c *control.Client) func(context.Context, time.Time) (control.DoraData, error) {
	cache := &control.RecordCache{}
	return func(ctx context.Context, since time.Time) (control.DoraData, error) {
		return c.DoraRecords(ctx, control.DoraQuery{Since: since, Cache: cache})
	}
}

// run refreshes now, then every interval, until ctx ends.
func (g *doraGauges) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, max(interval, time.Minute))
		if err := g.refresh(rctx); err != nil && ctx.Err() == nil {
			g.errors.Inc()
			g.log.Warn("dora figures not refreshed", "err", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (g *doraGauges) refresh(ctx context.Context) error {
	until := g.now()
	p := dora.Period{Since: until.Add(-g.window), Until: until}
	data, err := g.gather(ctx, p.Since)
	if err != nil {
		return fmt.Errorf("gather releases of the last %s: %w", g.window, err)
	}
	if data.Truncated {
		g.log.Warn("dora figures cover only the newest releases of the window", "window", g.window, "releases", len(data.Releases))
	}
	if n := len(data.Unreadable); n > 0 {
		g.log.Warn("dora figures leave out releases encrypted with keys this worker lacks", "count", n, "first", data.Unreadable[0])
	}
	g.snap.Store(&doraSnapshot{at: until, reports: dora.ByApplication(data.Releases, p)})
	return nil
}

var (
	doraApp = []string{"application"}
	// One series per application and figure; keelson_dora_level names the
	// figure in its metric label, so one alert rule covers all of them.
	doraLevel        = prometheus.NewDesc("keelson_dora_level", "Performance level of each DORA figure against DORA's 2024 levels: 4 elite, 3 high, 2 medium, 1 low; absent without data (and for deployment_rework_rate, which has no published levels).", []string{"application", "metric"}, nil)
	doraDeployments  = prometheus.NewDesc("keelson_dora_deployments", "Deployments (releases that changed at least one region) that finished in the window.", doraApp, nil)
	doraFrequency    = prometheus.NewDesc("keelson_dora_deployment_frequency_per_day", "Deployments a day over the window.", doraApp, nil)
	doraLead         = prometheus.NewDesc("keelson_dora_change_lead_time_seconds", "Median change lead time: commit time to the end of a successful deployment.", doraApp, nil)
	doraLeadSamples  = prometheus.NewDesc("keelson_dora_change_lead_time_samples", "Successful deployments with a commit time in the window (the lead time's samples).", doraApp, nil)
	doraFailRate     = prometheus.NewDesc("keelson_dora_change_fail_rate", "Failed deployments over deployments (0 to 1).", doraApp, nil)
	doraFailed       = prometheus.NewDesc("keelson_dora_failed_deployments", "Deployments that failed, rolled back, were aborted or were undone.", doraApp, nil)
	doraRecovery     = prometheus.NewDesc("keelson_dora_failed_deployment_recovery_time_seconds", "Median time from a failed deployment's end to the end of the application's next successful deployment.", doraApp, nil)
	doraRecovered    = prometheus.NewDesc("keelson_dora_failed_deployment_recovery_time_samples", "Failed deployments recovered in the window (the recovery time's samples).", doraApp, nil)
	doraUnrecovered  = prometheus.NewDesc("keelson_dora_unrecovered_deployments", "Failed deployments not followed by a successful one in the window.", doraApp, nil)
	doraRework       = prometheus.NewDesc("keelson_dora_deployment_rework_rate", "Rework deployments (undos, and deployments made while the application was failed) over deployments (0 to 1).", doraApp, nil)
	doraReworkCount  = prometheus.NewDesc("keelson_dora_rework_deployments", "Rework deployments in the window.", doraApp, nil)
	doraWindow       = prometheus.NewDesc("keelson_dora_window_seconds", "Length of the window the DORA figures cover.", nil, nil)
	doraRefreshed    = prometheus.NewDesc("keelson_dora_last_refresh_timestamp_seconds", "When the DORA figures were last computed.", nil, nil)
	doraDescriptions = []*prometheus.Desc{doraLevel, doraDeployments, doraFrequency, doraLead, doraLeadSamples, doraFailRate, doraFailed,
		doraRecovery, doraRecovered, doraUnrecovered, doraRework, doraReworkCount, doraWindow, doraRefreshed}
)

func (g *doraGauges) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range doraDescriptions {
		ch <- d
	}
	g.errors.Describe(ch)
}

func (g *doraGauges) Collect(ch chan<- prometheus.Metric) {
	g.errors.Collect(ch)
	ch <- prometheus.MustNewConstMetric(doraWindow, prometheus.GaugeValue, g.window.Seconds())
	s := g.snap.Load()
	if s == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(doraRefreshed, prometheus.GaugeValue, float64(s.at.UnixNano())/1e9)
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, r := range s.reports {
		app := r.Application
		level := func(metric string, l dora.Level) {
			if l.Rank() > 0 {
				gauge(doraLevel, float64(l.Rank()), app, metric)
			}
		}
		gauge(doraDeployments, float64(r.Deployments), app)
		gauge(doraFrequency, r.DeploymentFrequency.PerDay, app)
		level("deployment_frequency", r.DeploymentFrequency.Level)
		gauge(doraLeadSamples, float64(r.ChangeLeadTime.Samples), app)
		if v := r.ChangeLeadTime.MedianSeconds; v != nil {
			gauge(doraLead, *v, app)
			level("change_lead_time", r.ChangeLeadTime.Level)
		}
		gauge(doraFailed, float64(r.ChangeFailRate.Count), app)
		if v := r.ChangeFailRate.Value; v != nil {
			gauge(doraFailRate, *v, app)
			level("change_fail_rate", r.ChangeFailRate.Level)
		}
		rec := r.FailedDeploymentRecoveryTime
		gauge(doraRecovered, float64(rec.Samples), app)
		gauge(doraUnrecovered, float64(rec.Unrecovered), app)
		if v := rec.MedianSeconds; v != nil {
			gauge(doraRecovery, *v, app)
			level("failed_deployment_recovery_time", rec.Level)
		}
		gauge(doraReworkCount, float64(r.DeploymentReworkRate.Count), app)
		if v := r.DeploymentReworkRate.Value; v != nil {
			gauge(doraRework, *v, app)
		}
	}
}
