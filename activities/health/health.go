// Package health probes an application over HTTP after it is ready and
// while it bakes.
package health

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/keelson-dev/keelson/internal/heartbeat"
	"github.com/keelson-dev/keelson/release"
)

// ErrUnhealthy is the type of the non-retryable error returned when a check
// reached its failure limit: the workflow rolls back instead of retrying.
const ErrUnhealthy = "Unhealthy"

// ErrBadInput is the type of the non-retryable error returned when a check
// cannot be probed at all (its URL template does not render to an http or
// https URL): retrying renders the same template with the same outputs.
const ErrBadInput = "HealthBadInput"

// maxBody bounds how much of a response is read: health endpoints answer
// in bytes, and a misrouted probe must not pull a large page into memory.
const maxBody = 1 << 20

// heartbeatEvery is how often Check heartbeats whatever it is doing: between
// rounds, and while a probe waits on a slow target (a round of probes can
// take as long as the sum of their timeouts). Well inside the workflows'
// 10 s heartbeat timeout, so that a live attempt is never taken for a lost
// one and retried while it still runs, and a lost worker is noticed within
// seconds.
const heartbeatEvery = 2 * time.Second

// Activities probes with an HTTP client.
type Activities struct {
	// heartbeatEvery replaces the package's heartbeatEvery when set (tests).
	heartbeatEvery time.Duration
}

// CheckInput runs Checks for a region. URLs are templates rendered with
// Region, Version and Outputs. With For zero, each check must pass
// Successes times in a row (readiness of the application); with For set,
// the checks keep running for that long and fail at FailureLimit
// consecutive failures (bake).
type CheckInput struct {
	Region  string                `json:"region"`
	Version string                `json:"version"`
	Outputs map[string]any        `json:"outputs,omitempty"`
	Checks  []release.HealthCheck `json:"checks"`
	For     time.Duration         `json:"for,omitempty"`
}

// CheckResult counts what was probed.
type CheckResult struct {
	Probes   int    `json:"probes"`
	Failures int    `json:"failures"`
	Last     string `json:"last,omitempty"` // last outcome, for the details table
}

// Progress is the heartbeat detail of Check: what was probed so far and,
// while baking, how much of the bake is done. A retry after a lost worker
// continues the bake from Baked instead of starting it again.
type Progress struct {
	Probes   int           `json:"probes"`
	Failures int           `json:"failures"`
	Last     string        `json:"last,omitempty"`
	Baked    time.Duration `json:"baked,omitempty"`
}

// probeState is one check's running state.
type probeState struct {
	check     release.HealthCheck
	url       string
	next      time.Time
	successes int // in a row
	failures  int // in a row
	last      string
	passed    bool // readiness: reached Successes in a row
}

// Check runs the checks, heartbeating from its start until it returns.
func (a *Activities) Check(ctx context.Context, in CheckInput) (*CheckResult, error) {
	// What an earlier attempt baked, read first so that this attempt's
	// heartbeats carry it from the start: an attempt lost during its first
	// round must not lose the bake of the one before.
	res := &CheckResult{}
	var baked time.Duration
	if in.For > 0 && activity.HasHeartbeatDetails(ctx) {
		var p Progress
		if err := activity.GetHeartbeatDetails(ctx, &p); err == nil {
			baked = min(p.Baked, in.For)
			res.Probes, res.Failures, res.Last = p.Probes, p.Failures, p.Last
		}
	}
	every := a.heartbeatEvery
	if every <= 0 {
		every = heartbeatEvery
	}
	hb := heartbeat.Start(ctx, every, Progress{Probes: res.Probes, Failures: res.Failures, Last: res.Last, Baked: baked})
	defer hb.Stop()

	states := make([]*probeState, len(in.Checks))
	for i, c := range in.Checks {
		c = c.WithDefaults()
		u, err := release.RenderURL(c.URL, release.URLData{Region: in.Region, Version: in.Version, Outputs: in.Outputs})
		if err != nil {
			return nil, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("health check %q in %s: %v", c.Name, in.Region, err), ErrBadInput, err)
		}
		states[i] = &probeState{check: c, url: u}
	}
	if len(states) == 0 {
		res.Last = "no health checks"
		return res, nil
	}

	secure := &http.Client{Transport: newTransport(false)}
	insecure := &http.Client{Transport: newTransport(true)}
	defer secure.CloseIdleConnections()
	defer insecure.CloseIdleConnections()

	start := time.Now().Add(-baked)
	deadline := start.Add(in.For)
	logger := activity.GetLogger(ctx)

	for {
		now := time.Now()
		// Probe every check that is due; a round's probes run one after the
		// other, each bounded by its own timeout.
		for _, s := range states {
			if s.passed || now.Before(s.next) {
				continue
			}
			client := secure
			if s.check.InsecureSkipVerify {
				client = insecure
			}
			err := probe(ctx, client, s.url, s.check)
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			res.Probes++
			s.next = time.Now().Add(s.check.Interval.Duration)
			if err != nil {
				res.Failures++
				s.failures++
				s.successes = 0
				s.last = err.Error()
				res.Last = fmt.Sprintf("%s: %s", s.check.Name, s.last)
				logger.Info("health probe failed", "check", s.check.Name, "url", s.url, "inARow", s.failures, "error", err)
				if s.failures >= s.check.FailureLimit {
					msg := fmt.Sprintf("health check %q (%s) in %s failed %d times in a row: %s",
						s.check.Name, s.url, in.Region, s.failures, s.last)
					return res, temporal.NewNonRetryableApplicationError(msg, ErrUnhealthy, nil, *res)
				}
				continue
			}
			s.failures = 0
			s.successes++
			s.last = "ok"
			res.Last = s.check.Name + ": ok"
			if in.For == 0 && s.successes >= s.check.Successes {
				s.passed = true
			}
		}
		// Baked counts only up to the end of a round: time spent in a
		// probe that has not answered yet is not time known healthy.
		elapsed := time.Since(start)
		hb.Record(Progress{Probes: res.Probes, Failures: res.Failures, Last: res.Last, Baked: min(elapsed, in.For)})

		if in.For == 0 {
			if allPassed(states) {
				res.Last = fmt.Sprintf("%d checks passed", len(states))
				return res, nil
			}
		} else if !time.Now().Before(deadline) {
			res.Last = fmt.Sprintf("%d checks healthy for %s", len(states), in.For)
			return res, nil
		}

		// The heartbeat goroutine keeps the activity alive however long
		// this waits.
		wake := nextDue(states)
		if in.For > 0 && deadline.Before(wake) {
			wake = deadline
		}
		timer := time.NewTimer(time.Until(wake))
		select {
		case <-ctx.Done():
			timer.Stop()
			return res, ctx.Err()
		case <-timer.C:
		}
	}
}

func allPassed(states []*probeState) bool {
	for _, s := range states {
		if !s.passed {
			return false
		}
	}
	return true
}

// nextDue is the earliest time a check that still runs is due.
func nextDue(states []*probeState) time.Time {
	var next time.Time
	for _, s := range states {
		if s.passed {
			continue
		}
		if next.IsZero() || s.next.Before(next) {
			next = s.next
		}
	}
	return next
}

func newTransport(insecure bool) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if insecure {
		// Only for checks that ask for it: lab clusters with self-signed
		// certificates.
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // opted in per check
	}
	return t
}

// probe makes one request and says why it failed, in words fit for an
// approver or an on-call engineer.
func probe(ctx context.Context, client *http.Client, url string, c release.HealthCheck) error {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout.Duration)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("User-Agent", "keelson-health")
	if c.JSONField != "" {
		req.Header.Set("Accept", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("get %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("read body of %s: %w", url, err)
	}
	if resp.StatusCode != c.ExpectStatus {
		return fmt.Errorf("status %d, want %d", resp.StatusCode, c.ExpectStatus)
	}
	if c.JSONField == "" {
		return nil
	}
	got, err := jsonField(body, c.JSONField)
	if err != nil {
		return err
	}
	if c.ExpectValue != "" && got != c.ExpectValue {
		return fmt.Errorf("field %s is %q, want %q", c.JSONField, got, c.ExpectValue)
	}
	return nil
}

// jsonField finds a dotted path in a JSON body and returns its value as
// text: strings as they are, other values as JSON (true, 3, null). A number
// segment indexes a list.
func jsonField(body []byte, path string) (string, error) {
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "", fmt.Errorf("body is not JSON: %w", err)
	}
	for _, seg := range strings.Split(path, ".") {
		switch node := v.(type) {
		case map[string]any:
			next, ok := node[seg]
			if !ok {
				return "", fmt.Errorf("field %s is missing", path)
			}
			v = next
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(node) {
				return "", fmt.Errorf("field %s is missing", path)
			}
			v = node[i]
		default:
			return "", fmt.Errorf("field %s is missing", path)
		}
	}
	switch v := v.(type) {
	case string:
		return v, nil
	case json.Number:
		return v.String(), nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("field %s: %w", path, err)
	}
	return string(b), nil
}
