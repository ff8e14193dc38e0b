package main

import (
	"testing"
	"time"
)

func TestSplitFollowsWeights(t *testing.T) {
	for _, tc := range []struct {
		name             string
		stableW, canaryW int64
		seconds          int
		wantCanary       int // over all seconds, 20 requests each
	}{
		{"all on stable", 100, 0, 10, 0},
		{"all on canary", 0, 100, 10, 200},
		{"5 percent is one a second", 95, 5, 10, 10},
		{"1 percent is one every five seconds", 99, 1, 10, 2},
		{"a quarter", 75, 25, 4, 20},
		{"weights need not add to 100", 3, 1, 4, 20},
		{"both 0 split evenly, as Route 53 does", 0, 0, 10, 100},
		{"a third carries its fractions", 2, 1, 3, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s splitter
			total := 0
			for range tc.seconds {
				stable, canary := s.split(20, tc.stableW, tc.canaryW)
				if stable+canary != 20 || stable < 0 || canary < 0 {
					t.Fatalf("split(20, %d, %d) = %d, %d", tc.stableW, tc.canaryW, stable, canary)
				}
				total += canary
			}
			if total != tc.wantCanary {
				t.Errorf("canary got %d requests over %ds, want %d", total, tc.seconds, tc.wantCanary)
			}
		})
	}
}

func TestSplitForgetsOwedRequestsAtWeightZero(t *testing.T) {
	var s splitter
	s.split(20, 99, 1) // owes the canary 0.2
	for range 10 {
		if _, canary := s.split(20, 100, 0); canary != 0 {
			t.Fatalf("canary at weight 0 got %d requests", canary)
		}
	}
}

func TestRespond(t *testing.T) {
	ready := func(version string) Side { return Side{Name: sideCanary, Version: version, Ready: true} }
	for _, tc := range []struct {
		name       string
		side       Side
		wantCodes  [4]int // of requests 0..3
		minLatency time.Duration
		maxLatency time.Duration
	}{
		{"healthy", ready("1.1.0"), [4]int{200, 200, 200, 200}, 15 * time.Millisecond, 25 * time.Millisecond},
		{"build metadata", ready("1.1.0+abc"), [4]int{200, 200, 200, 200}, 15 * time.Millisecond, 25 * time.Millisecond},
		{"errors: every other fails", ready("1.2.0-errors"), [4]int{200, 500, 200, 500}, 15 * time.Millisecond, 25 * time.Millisecond},
		{"slow", ready("1.2.0-slow"), [4]int{200, 200, 200, 200}, 1500 * time.Millisecond, 1600 * time.Millisecond},
		{"slow and failing", ready("1.2.0-slow-errors"), [4]int{200, 500, 200, 500}, 1500 * time.Millisecond, 1600 * time.Millisecond},
		{"no ready pods", Side{Version: "1.1.0"}, [4]int{503, 503, 503, 503}, 0, 10 * time.Millisecond},
		{"no deployment", Side{}, [4]int{503, 503, 503, 503}, 0, 10 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for seq := range 4 {
				for _, jitter := range []float64{0, 0.5, 0.999} {
					o := respond(tc.side, uint64(seq), jitter)
					if o.Code != tc.wantCodes[seq] {
						t.Errorf("request %d: code %d, want %d", seq, o.Code, tc.wantCodes[seq])
					}
					if o.Latency < tc.minLatency || o.Latency > tc.maxLatency {
						t.Errorf("request %d, jitter %v: latency %s, want %s..%s", seq, jitter, o.Latency, tc.minLatency, tc.maxLatency)
					}
				}
			}
		})
	}
}

func TestVersionFromLabel(t *testing.T) {
	for label, want := range map[string]string{
		"1.0.0":          "1.0.0",
		"1.1.0_sha.abc":  "1.1.0+sha.abc",
		"1.2.0-errors":   "1.2.0-errors",
		"1.2.0-rc.1_b.7": "1.2.0-rc.1+b.7",
		"":               "",
	} {
		if got := versionFromLabel(label); got != want {
			t.Errorf("versionFromLabel(%q) = %q, want %q", label, got, want)
		}
	}
}

// TestTickSendsNothingToAnAbsentSide: a side whose cluster holds no
// Deployment of its release gets no requests, where one whose pods are not
// ready, or whose cluster cannot be asked, gets 503s; a release's first
// install must not find failures from before it existed in its checks.
func TestTickSendsNothingToAnAbsentSide(t *testing.T) {
	side := func(s Side) Side { s.Name, s.Weight = sideStable, 100; return s }
	targets := map[string]Side{
		"absent":      side(Side{Absent: true, Problem: "no Deployment labelled app.kubernetes.io/instance=absent in us-east-1/absent"}),
		"unready":     side(Side{Version: "1.1.0", Problem: "no ready pods"}),
		"unreachable": side(Side{Problem: "list deployments of unreachable in us-east-1/unreachable: connection refused"}),
		"healthy":     side(Side{Version: "1.1.0", Ready: true}),
	}
	g := &generator{metrics: newMetrics(), rps: 20, targets: map[string]*targetState{}}
	for app, s := range targets {
		tg := Target{Application: app, Region: "us-east-1", Stable: s, Canary: Side{Name: sideCanary}}
		g.targets[tg.Key()] = &targetState{Target: tg, seq: map[string]uint64{}, probes: map[string]uint64{}}
	}
	g.tick()
	period := g.metrics.takePeriod()
	for app, want := range map[string]cwSums{
		"absent":      {},
		"unready":     {requests: 20, errors: 20},
		"unreachable": {requests: 20, errors: 20},
		"healthy":     {requests: 20},
	} {
		got := period[cwKey{app, "us-east-1", sideStable}]
		if got == nil {
			got = &cwSums{}
		}
		if got.requests != want.requests || got.errors != want.errors {
			t.Errorf("%s: %d requests, %d failed; want %d, %d", app, got.requests, got.errors, want.requests, want.errors)
		}
	}
}
