package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/uber-go/tally/v4"
	tallyprom "github.com/uber-go/tally/v4/prometheus"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	sdktally "go.temporal.io/sdk/contrib/tally"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/keelson-dev/keelson/control"
	"github.com/keelson-dev/keelson/workflows"
)

// releaseWorkflow is the registered name of workflows.Release, the only
// workflow whose runs are releases (RegionRollout, Lane and the others
// are parts of one).
const releaseWorkflow = "Release"

// metrics is what the worker serves on /metrics, from one registry: the
// Temporal SDK's own metrics (temporal_*, through tally as the SDK
// documents), the Go runtime's and the process's, Keelson's counts and
// durations of releases and steps, and the DORA figures.
type metrics struct {
	reg *prometheus.Registry
	// sdk is the SDK's metrics handler, given to the client at dial.
	sdk      client.MetricsHandler
	sdkClose io.Closer

	releases        *prometheus.CounterVec
	releaseDuration *prometheus.HistogramVec
	steps           *prometheus.CounterVec
	stepDuration    *prometheus.HistogramVec
}

func newMetrics(log *slog.Logger) *metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reporter := tallyprom.NewReporter(tallyprom.Options{
		Registerer:       reg,
		DefaultTimerType: tallyprom.HistogramTimerType,
		OnRegisterError: func(err error) {
			log.Warn("temporal sdk metric not exported", "err", err)
		},
	})
	scope, closer := tally.NewRootScope(tally.ScopeOptions{
		CachedReporter:  reporter,
		Separator:       tallyprom.DefaultSeparator,
		SanitizeOptions: &sdktally.PrometheusSanitizeOptions,
	}, time.Second)
	m := &metrics{
		reg:      reg,
		sdk:      sdktally.NewMetricsHandler(sdktally.NewPrometheusNamingScope(scope)),
		sdkClose: closer,
		releases: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keelson_releases_total",
			Help: "Releases finished on this worker, by application and final phase (error: ended without a result).",
		}, []string{"application", "phase"}),
		releaseDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "keelson_release_duration_seconds",
			Help: "Duration of finished releases, start (queue included) to end, by application and final phase.",
			// Releases last from seconds (the lab) to days (a gate over a weekend).
			Buckets: []float64{5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 2 * 3600, 4 * 3600, 8 * 3600, 24 * 3600, 72 * 3600},
		}, []string{"application", "phase"}),
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keelson_steps_total",
			Help: "Step attempts (activity executions: plan, apply, upgrade, health, analysis, traffic...) run by this worker, by step and outcome.",
		}, []string{"step", "outcome"}),
		stepDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "keelson_step_duration_seconds",
			Help:    "Duration of step attempts run by this worker, by step and outcome.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600},
		}, []string{"step", "outcome"}),
	}
	reg.MustRegister(m.releases, m.releaseDuration, m.steps, m.stepDuration)
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

func (m *metrics) close() {
	_ = m.sdkClose.Close()
}

// interceptors record releases and steps as this worker runs them.
func (m *metrics) interceptors() []interceptor.WorkerInterceptor {
	return []interceptor.WorkerInterceptor{&metricsInterceptor{m: m}}
}

// startDora exports the DORA figures, refreshed in the background until
// ctx ends, unless --dora-interval is 0.
func (m *metrics) startDora(ctx context.Context, cfg config, tc client.Client, dc converter.DataConverter, log *slog.Logger) {
	if cfg.DoraInterval <= 0 {
		log.Info("dora figures off (--dora-interval 0)")
		return
	}
	ctl := &control.Client{T: tc, Namespace: cfg.Namespace, TaskQueue: cfg.TaskQueue, UIBaseURL: cfg.UIURL, Address: cfg.TemporalAddress, DataConverter: dc}
	g := newDoraGauges(cfg.DoraWindow, clientGather(ctl), log.With("component", "dora"))
	m.reg.MustRegister(g)
	go g.run(ctx, cfg.DoraInterval)
	log.Info("dora figures on /metrics", "window", cfg.DoraWindow, "interval", cfg.DoraInterval)
}

type metricsInterceptor struct {
	interceptor.WorkerInterceptorBase
	m *metrics
}

func (i *metricsInterceptor) InterceptActivity(_ context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	return &stepMetrics{ActivityInboundInterceptorBase: interceptor.ActivityInboundInterceptorBase{Next: next}, m: i.m}
}

func (i *metricsInterceptor) InterceptWorkflow(ctx workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	if workflow.GetInfo(ctx).WorkflowType.Name != releaseWorkflow {
		return next
	}
	return &releaseMetrics{WorkflowInboundInterceptorBase: interceptor.WorkflowInboundInterceptorBase{Next: next}, m: i.m}
}

type stepMetrics struct {
	interceptor.ActivityInboundInterceptorBase
	m *metrics
}

func (s *stepMetrics) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	start := time.Now()
	res, err := s.Next.ExecuteActivity(ctx, in)
	outcome := "ok"
	switch {
	case err == nil:
	case temporal.IsCanceledError(err) || errors.Is(err, context.Canceled):
		outcome = "canceled"
	default:
		outcome = "error"
	}
	step := activity.GetInfo(ctx).ActivityType.Name
	s.m.steps.WithLabelValues(step, outcome).Inc()
	s.m.stepDuration.WithLabelValues(step, outcome).Observe(time.Since(start).Seconds())
	return res, err
}

type releaseMetrics struct {
	interceptor.WorkflowInboundInterceptorBase
	m *metrics
}

// ExecuteWorkflow records a release when it finishes. Workflow code runs
// again on replay (a worker restart, a query of a closed release): only
// the execution that really finished the release counts, and the metric
// is a side effect that never feeds back into the workflow, so
// determinism is kept.
func (r *releaseMetrics) ExecuteWorkflow(ctx workflow.Context, in *interceptor.ExecuteWorkflowInput) (any, error) {
	out, err := r.Next.ExecuteWorkflow(ctx, in)
	if workflow.IsReplaying(ctx) || (err != nil && workflow.IsContinueAsNewError(err)) {
		return out, err
	}
	application, phase := "", "error"
	var took time.Duration
	res, ok := out.(*workflows.ReleaseResult)
	if err != nil {
		// A release that did not ship closes as Failed with its result.
		res, ok = workflows.ResultFromError(err)
	}
	if ok && res != nil {
		application, phase, took = res.Application, string(res.Phase), res.Duration()
	} else {
		if len(in.Args) > 0 {
			if ri, ok := in.Args[0].(*workflows.ReleaseInput); ok && ri != nil {
				application = ri.Spec.Application
			}
		}
		took = workflow.Now(ctx).Sub(workflow.GetInfo(ctx).WorkflowStartTime)
	}
	r.m.releases.WithLabelValues(application, phase).Inc()
	r.m.releaseDuration.WithLabelValues(application, phase).Observe(took.Seconds())
	return out, err
}
