// Package analysis judges a release's canary (or preview, or a finished
// region) on real signals: HTTP endpoints, Prometheus queries and
// CloudWatch alarms and metrics, sampled on an interval while traffic
// flows.
//
// Providers only read (http.go, prometheus.go, cloudwatch.go); one judge
// (judge.go) turns readings into passing, failing and no-data samples and
// decides each check. A failed or inconclusive verdict is a result, not an
// error: the workflow decides what it means for the release.
package analysis

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/keelson-dev/keelson/activities/artifacts"
	"github.com/keelson-dev/keelson/internal/heartbeat"
	"github.com/keelson-dev/keelson/release"
)

// Verdict is the outcome of a check or a run.
type Verdict string

const (
	Passed       Verdict = "passed"
	Failed       Verdict = "failed"
	Inconclusive Verdict = "inconclusive"
)

// ErrBadInput is the type of the non-retryable error Run returns for
// checks that cannot be run at all (a template that does not render, two
// providers in one check, compare on an alarm): retrying renders the same
// file the same way.
const ErrBadInput = "AnalysisBadInput"

// Config is what the activities need from the worker.
type Config struct {
	// Store keeps each run's samples; without one they are not kept.
	Store artifacts.Store
	// AWSEndpoint overrides the CloudWatch endpoint (moto); the SDK's
	// AWS_ENDPOINT_URL works as well.
	AWSEndpoint string
	HTTPClient  *http.Client // optional
}

// Activities holds the clients analysis reads through: one Prometheus API
// client per address and one CloudWatch client per AWS region, made on
// first use.
type Activities struct {
	cfg      Config
	aws      aws.Config
	http     *http.Client
	insecure *http.Client

	mu         sync.Mutex
	prometheus map[string]promv1.API
	cloudwatch map[string]*cloudwatch.Client

	// heartbeatEvery replaces the package's heartbeatEvery when set (tests).
	heartbeatEvery time.Duration
	// flushEvery replaces samplesFlushEvery when set (tests).
	flushEvery int
}

// New loads the AWS configuration from the default chain (environment,
// profile, instance role); credentials are only fetched when a CloudWatch
// check runs.
func New(ctx context.Context, cfg Config) (*Activities, error) {
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("analysis: load AWS configuration: %w", err)
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	insecureTransport := http.DefaultTransport.(*http.Transport).Clone()
	// Only for checks that ask for it: lab clusters with self-signed
	// certificates.
	insecureTransport.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // opted in per check
	return &Activities{
		cfg:        cfg,
		aws:        awsCfg,
		http:       client,
		insecure:   &http.Client{Transport: insecureTransport},
		prometheus: map[string]promv1.API{},
		cloudwatch: map[string]*cloudwatch.Client{},
	}, nil
}

// RunInput is one analysis: checks run against a region's sides for a
// while.
type RunInput struct {
	ReleaseID, Application, Region, AWSRegion string
	// Step is a label, e.g. "canary 10%": used in the samples key and
	// messages.
	Step                         string
	CanaryVersion, StableVersion string
	// Side is what checks without Compare measure: "canary" by default
	// ("stable" for failover health, "preview" for blue-green). Checks with
	// Compare measure the new side (canary, or preview when Side is
	// preview) against stable.
	Side   string
	Checks []release.AnalysisCheck
	// Duration the checks run; when 0 they run until each has MinSamples.
	Duration time.Duration
	// SamplesKey is the artifact key of this run's samples (JSON Lines);
	// "analysis/<release>/<region>/<step>.jsonl" when empty.
	SamplesKey string
}

// Sample is one measurement of one check, as judged.
type Sample struct {
	Time  time.Time `json:"time"`
	Check string    `json:"check"`
	// Value is the judged value (the ratio or difference when comparing);
	// absent when there is none, or when it is infinite (a ratio over a
	// stable side of zero).
	Value  *float64 `json:"value,omitempty"`
	Canary *float64 `json:"canary,omitempty"` // when comparing: the new side's value
	Stable *float64 `json:"stable,omitempty"` // when comparing
	NoData bool     `json:"noData,omitempty"`
	Pass   bool     `json:"pass"`
	// Reason says why it failed or had no data: "0.42 > max 2",
	// "status 500, want 200", "alarm ALARM", "no data (empty result)".
	Reason string `json:"reason,omitempty"`
}

// CheckResult is one check's part of a run.
type CheckResult struct {
	Name string `json:"name"`
	// Verdict is empty for a check still running when another check
	// decided the run.
	Verdict  Verdict `json:"verdict,omitempty"`
	Samples  int     `json:"samples"`
	Failures int     `json:"failures"`
	NoData   int     `json:"noData"`
	Reason   string  `json:"reason,omitempty"`
	// Deciding are the samples that decided the verdict: the failing (or
	// no-data) run, up to FailureLimit and at most 10, or for a passed
	// check its last max(FailureLimit, 3) (at most 10); none for a check
	// stopped undecided.
	Deciding []Sample `json:"deciding,omitempty"`
}

// RunResult is the verdict of a run and what it rests on.
type RunResult struct {
	Verdict Verdict `json:"verdict"`
	// Reason is one line naming the check that decided:
	// "errors-ratio: 3 failing samples in a row (last 4.1 > max 2)".
	Reason     string        `json:"reason"`
	Checks     []CheckResult `json:"checks"`
	SamplesKey string        `json:"samplesKey,omitempty"` // empty when no store keeps them
	Samples    int           `json:"samples"`
	Started    time.Time     `json:"started"`
	Ended      time.Time     `json:"ended"`
	// DecidedAt is the time of the deciding sample (the last of a failing
	// or no-data run); zero when passed.
	DecidedAt time.Time `json:"decidedAt,omitzero"`
}

// Progress is the heartbeat detail of Run.
type Progress struct {
	Samples  int           `json:"samples"`
	Failures int           `json:"failures"`
	Last     string        `json:"last,omitempty"` // "errors-ratio: 4.1 > max 2"
	Elapsed  time.Duration `json:"elapsed"`
}

// samplesFlushEvery is how many new samples make Run write the samples
// file again before the end, so that a run that is lost (a worker that
// died) still left most of its samples, and a person can follow a long
// run in the store.
const samplesFlushEvery = 10

// Run samples every check on its interval, all at once, until one fails
// or is inconclusive (the run ends at once, the others are stopped) or
// until Duration has passed and every check has MinSamples samples, the
// last of them passing (Passed). Errors are for the activity itself: checks that cannot run
// (ErrBadInput), samples that cannot be written, cancellation.
func (a *Activities) Run(ctx context.Context, in RunInput) (RunResult, error) {
	res := RunResult{Started: time.Now()}
	checks, err := prepare(in)
	if err != nil {
		return res, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("analysis %s in %s: %v", in.Step, in.Region, err), ErrBadInput, err)
	}
	// Resolve the AWS regions now: a check without one is a mistake in
	// the file, found before anything is measured.
	regions := make([]string, len(checks))
	for i, p := range checks {
		if cw := p.check.CloudWatch; cw != nil {
			r, err := a.cloudWatchRegion(cw, in)
			if err != nil {
				err = fmt.Errorf("check %s: %w", p.check.Name, err)
				return res, temporal.NewNonRetryableApplicationError(
					fmt.Sprintf("analysis %s in %s: %v", in.Step, in.Region, err), ErrBadInput, err)
			}
			regions[i] = r
		}
	}

	log := &sampleLog{store: a.cfg.Store}
	if log.store != nil {
		log.key = in.SamplesKey
		if log.key == "" {
			log.key = defaultSamplesKey(in)
		}
		if err := artifacts.CheckKey(log.key); err != nil {
			return res, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("analysis %s in %s: %v", in.Step, in.Region, err), ErrBadInput, err)
		}
		res.SamplesKey = log.key
	}
	flushEvery := a.flushEvery
	if flushEvery <= 0 {
		flushEvery = samplesFlushEvery
	}

	every := a.heartbeatEvery
	if every <= 0 {
		every = heartbeatEvery
	}
	hb := heartbeat.Start(ctx, every, Progress{})
	defer hb.Stop()

	states := make([]*checkState, len(checks))
	for i, p := range checks {
		states[i] = newCheckState(p.check)
	}

	// Every check samples in its own goroutine; this one judges, logs and
	// decides, so that the judge's state needs no lock.
	sctx, stopSampling := context.WithCancel(ctx)
	samples := make(chan indexedSample)
	var wg sync.WaitGroup
	for i, p := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.sampleLoop(sctx, i, p, in, regions[i], samples)
		}()
	}
	stop := func() {
		stopSampling()
		wg.Wait()
	}
	defer stop()

	durationDone := in.Duration <= 0
	var deadline <-chan time.Time
	if !durationDone {
		t := time.NewTimer(in.Duration)
		defer t.Stop()
		deadline = t.C
	}
	var progress Progress
	var decided *checkState
	for decided == nil && !(durationDone && settled(states)) {
		select {
		case <-ctx.Done():
			stop()
			// What was sampled is worth keeping for the person who
			// cancelled; the write is best effort, on a context of its own.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			_ = log.flush(fctx)
			cancel()
			return res, ctx.Err()
		case <-deadline:
			durationDone = true
		case s := <-samples:
			st := states[s.i]
			if st.add(s.Sample) {
				decided = st
			}
			log.add(s.Sample)
			progress.Samples++
			if !s.Pass {
				progress.Failures++
			}
			progress.Last = s.Check + ": " + describe(s.Sample)
			progress.Elapsed = time.Since(res.Started)
			hb.Record(progress)
			if log.unflushed >= flushEvery {
				if err := log.flush(ctx); err != nil {
					return res, err
				}
			}
		}
	}
	// Stop the other checks before the last write, so that it has every
	// sample this run took.
	stop()
	res.Ended = time.Now()
	if err := log.flush(ctx); err != nil {
		return res, err
	}
	res.Samples = log.n

	if decided != nil {
		res.Verdict, res.Reason, res.DecidedAt = decided.verdict, decided.reason, decided.decidedAt
	} else {
		for _, st := range states {
			st.pass()
		}
		res.Verdict = Passed
		res.Reason = passedReason(states, log.n)
	}
	for _, st := range states {
		stoppedBy := ""
		if decided != nil {
			stoppedBy = decided.check.Name
		}
		res.Checks = append(res.Checks, st.result(stoppedBy))
	}
	if activity.IsActivity(ctx) {
		activity.GetLogger(ctx).Info("analysis done", "step", in.Step, "region", in.Region,
			"verdict", res.Verdict, "reason", res.Reason, "samples", res.Samples)
	}
	return res, nil
}

type indexedSample struct {
	i int
	Sample
}

// sampleLoop takes the check's samples, the first at once and then one
// every Interval (counted from the start of the previous one, so a slow
// provider does not stretch the interval), until ctx ends.
func (a *Activities) sampleLoop(ctx context.Context, i int, p prepared, in RunInput, region string, out chan<- indexedSample) {
	for {
		at := time.Now()
		s := a.sample(ctx, p, in, region, at)
		if ctx.Err() != nil {
			// Cut short by the end of the run: not a measurement.
			return
		}
		select {
		case out <- indexedSample{i, s}:
		case <-ctx.Done():
			return
		}
		t := time.NewTimer(time.Until(at.Add(p.check.Interval.Duration)))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// sample reads the check's targets (both sides at once when comparing)
// and judges the readings.
func (a *Activities) sample(ctx context.Context, p prepared, in RunInput, region string, at time.Time) Sample {
	readings := make([]reading, len(p.targets))
	if len(p.targets) == 1 {
		readings[0] = a.read(ctx, p.targets[0], region, at)
	} else {
		var wg sync.WaitGroup
		for j, t := range p.targets {
			wg.Add(1)
			go func() {
				defer wg.Done()
				readings[j] = a.read(ctx, t, region, at)
			}()
		}
		wg.Wait()
	}
	if len(p.targets) == 1 {
		return judge(p.check, at, readings[0])
	}
	return judgeCompare(p.check, at, p.targets[0].side, readings[0], readings[1])
}

func (a *Activities) read(ctx context.Context, t target, region string, at time.Time) reading {
	switch {
	case t.http != nil:
		return a.readHTTP(ctx, t.http)
	case t.prometheus != nil:
		return a.readPrometheus(ctx, t.prometheus, at)
	case t.cloudwatch != nil:
		return a.readCloudWatch(ctx, t.cloudwatch, region, at)
	}
	return failReading("check has no provider")
}

// settled reports whether every check may pass: it has its minimum of
// samples, and its last sample passed. A check in the middle of a run of
// failing (or no-data) samples keeps sampling until the run reaches
// FailureLimit or a passing sample ends it, at most FailureLimit-1 more
// samples: a run never passes on a failing last sample.
func settled(states []*checkState) bool {
	for _, st := range states {
		if st.samples < st.check.MinSamples || st.failRun.n > 0 || st.noDataRun.n > 0 {
			return false
		}
	}
	return true
}

func describe(s Sample) string {
	switch {
	case s.Reason != "":
		return s.Reason
	case s.Value != nil:
		return "ok " + fmtNum(*s.Value)
	}
	return "ok"
}

func passedReason(states []*checkState, samples int) string {
	if len(states) == 0 {
		return "no checks to run"
	}
	names := make([]string, len(states))
	for i, st := range states {
		names[i] = st.check.Name
	}
	if len(states) == 1 {
		return fmt.Sprintf("%s passed (%d samples)", names[0], samples)
	}
	return fmt.Sprintf("all %d checks passed (%s; %d samples)", len(states), strings.Join(names, ", "), samples)
}

// sampleLog keeps a run's samples as JSON Lines and writes them whole to
// the store: a Store has only Put.
type sampleLog struct {
	store     artifacts.Store
	key       string
	buf       bytes.Buffer
	n         int
	unflushed int
}

func (l *sampleLog) add(s Sample) {
	l.n++
	if l.store == nil {
		return
	}
	// A Sample has no value JSON cannot write (infinities are left out).
	b, _ := json.Marshal(s)
	l.buf.Write(b)
	l.buf.WriteByte('\n')
	l.unflushed++
}

func (l *sampleLog) flush(ctx context.Context) error {
	if l.store == nil {
		return nil
	}
	if err := l.store.Put(ctx, l.key, bytes.NewReader(l.buf.Bytes())); err != nil {
		return fmt.Errorf("write analysis samples to %s: %w", l.key, err)
	}
	l.unflushed = 0
	return nil
}

var keyUnsafe = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// defaultSamplesKey is "analysis/<release>/<region>/<step>.jsonl", each
// part reduced to letters, digits, dots, dashes and underscores ("canary
// 10%" becomes "canary-10").
func defaultSamplesKey(in RunInput) string {
	part := func(s, empty string) string {
		s = strings.Trim(keyUnsafe.ReplaceAllString(s, "-"), "-.")
		if s == "" {
			return empty
		}
		return s
	}
	return fmt.Sprintf("analysis/%s/%s/%s.jsonl",
		part(in.ReleaseID, "release"), part(in.Region, "region"), part(in.Step, "analysis"))
}
