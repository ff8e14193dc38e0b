package main

// The simulation: the demo application's users, rps requests a second per
// application and region, split between the stable and the canary side by
// the weights of their Route 53 records, each answered as the version that
// serves the side would. No request leaves the process: the answers follow
// from the version's name (see respond).

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"
)

// Latencies of the simulated versions.
const (
	latencyNormal      = 20 * time.Millisecond // ±5ms of jitter
	latencySlow        = 1500 * time.Millisecond
	latencyUnavailable = 2 * time.Millisecond
)

// splitter divides requests between the two sides in proportion to their
// weights. The fraction a side is owed is carried to the next call, so a
// small weight still gets its exact share over time (5% of 20 requests a
// second is one a second; 1% is one every five seconds).
type splitter struct {
	carry float64 // canary requests owed, below one
}

// split divides n requests: canary gets n*canaryW/(stableW+canaryW) plus
// what it was owed, rounded down. When both weights are 0, Route 53 answers
// with every record alike, so the split is even.
func (s *splitter) split(n int, stableW, canaryW int64) (stable, canary int) {
	if stableW < 0 {
		stableW = 0
	}
	if canaryW < 0 {
		canaryW = 0
	}
	if stableW+canaryW == 0 {
		stableW, canaryW = 1, 1
	}
	owed := float64(n)*float64(canaryW)/float64(stableW+canaryW) + s.carry
	// The epsilon keeps five owed fifths from summing to 0.99999….
	canary = min(int(owed+1e-9), n)
	s.carry = max(owed-float64(canary), 0)
	if canaryW == 0 {
		s.carry = 0
	}
	return n - canary, canary
}

// outcome is one simulated request's answer.
type outcome struct {
	Code    int
	Latency time.Duration
}

// behaviour is how a version answers, from its name: "-errors" fails half
// of its requests with 500, "-slow" answers in 1.5s.
type behaviour struct {
	Errors bool
	Slow   bool
}

func behaviourOf(version string) behaviour {
	return behaviour{Errors: strings.Contains(version, "-errors"), Slow: strings.Contains(version, "-slow")}
}

// respond answers the seq-th request (from 0) to a side: 503 when nothing
// serves it, otherwise as its version behaves. Every other request of an
// "-errors" version fails, so that its error rate is one half even over a
// few requests. jitter in [0,1) spreads the latency.
func respond(s Side, seq uint64, jitter float64) outcome {
	if !s.Ready {
		return outcome{Code: 503, Latency: latencyUnavailable}
	}
	b := behaviourOf(s.Version)
	o := outcome{Code: 200, Latency: latencyNormal + time.Duration((jitter-0.5)*float64(10*time.Millisecond))}
	if b.Slow {
		o.Latency = latencySlow + time.Duration(jitter*float64(100*time.Millisecond))
	}
	if b.Errors && seq%2 == 1 {
		o.Code = 500
	}
	return o
}

// generator runs the simulation over the targets that discovery finds.
type generator struct {
	zone     *r53
	clusters *clusters
	metrics  *metrics
	rps      int
	log      *slog.Logger

	mu      sync.Mutex
	targets map[string]*targetState // by Target.Key
}

// targetState is a target with what the simulation keeps across cycles.
type targetState struct {
	Target
	split  splitter
	seq    map[string]uint64 // simulated requests sent, by side name
	probes map[string]uint64 // real requests answered (server.go), by side name
}

// discover reads the zone and the clusters once and replaces the targets,
// keeping each one's carry and request counts.
func (g *generator) discover(ctx context.Context) {
	found, err := g.zone.discover(ctx)
	if err != nil {
		g.log.Warn("discovery failed; keeping the last targets", "err", err)
		return
	}
	var wg sync.WaitGroup
	for i := range found {
		for _, s := range found[i].Sides() {
			wg.Go(func() { g.clusters.observe(ctx, found[i].Region, s) })
		}
	}
	wg.Wait()

	g.mu.Lock()
	defer g.mu.Unlock()
	next := map[string]*targetState{}
	for _, t := range found {
		st := g.targets[t.Key()]
		if st == nil {
			st = &targetState{seq: map[string]uint64{}, probes: map[string]uint64{}}
			g.log.Info("target found", "target", t.Key(),
				"stable", describe(t.Stable), "canary", describe(t.Canary))
		} else {
			for i, s := range t.Sides() {
				if old := st.Sides()[i]; old.Weight != s.Weight || old.Version != s.Version || old.Ready != s.Ready {
					g.log.Info("side changed", "target", t.Key(), "side", s.Name, "was", describe(*old), "now", describe(*s))
				}
			}
		}
		for _, s := range t.Sides() {
			g.metrics.seen(t, *s)
		}
		st.Target = t
		next[t.Key()] = st
	}
	for k := range g.targets {
		if next[k] == nil {
			g.log.Info("target gone", "target", k)
		}
	}
	g.targets = next
}

// describe is a side in one line for the log.
func describe(s Side) string {
	state := "ready"
	if !s.Ready {
		state = "unavailable: " + s.Problem
	}
	return fmt.Sprintf("weight %d, %s/%s %s, %s", s.Weight, s.Namespace, s.Release, orNone(s.Version), state)
}

// tick sends one second's requests of every target.
func (g *generator) tick() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, st := range g.targets {
		stable, canary := st.split.split(g.rps, st.Stable.Weight, st.Canary.Weight)
		for _, c := range []struct {
			side *Side
			n    int
		}{{&st.Stable, stable}, {&st.Canary, canary}} {
			if c.side.Absent {
				// The lab's records exist before anything is installed:
				// requests to an application nobody deployed would be
				// failures no release caused, and a release's first
				// install would find them in its checks' rate window.
				continue
			}
			for range c.n {
				o := respond(*c.side, st.seq[c.side.Name], rand.Float64())
				st.seq[c.side.Name]++
				g.metrics.observe(st.Target, *c.side, o)
			}
		}
	}
}

// probe is one real request to a side, for the HTTP endpoint: the side as
// last seen, and the request's number among that side's probes (so that
// an "-errors" version fails every other probe of its own).
func (g *generator) probe(app, region, name string) (Side, uint64, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.targets[app+"/"+region]
	if st == nil || (name != sideStable && name != sideCanary) {
		return Side{}, 0, false
	}
	s := st.Stable
	if name == sideCanary {
		s = st.Canary
	}
	seq := st.probes[name]
	st.probes[name]++
	return s, seq, true
}

// snapshot is every target, for /targets.
func (g *generator) snapshot() []Target {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]Target, 0, len(g.targets))
	for _, st := range g.targets {
		out = append(out, st.Target)
	}
	slices.SortFunc(out, func(a, b Target) int { return strings.Compare(a.Key(), b.Key()) })
	return out
}

// run discovers every discoverEvery and sends requests every second until
// ctx ends. Discovery runs apart, so that a slow cluster or zone never
// delays the requests: they go to the sides as last seen.
func (g *generator) run(ctx context.Context, discoverEvery time.Duration) {
	g.discover(ctx)
	go func() {
		t := time.NewTicker(discoverEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				g.discover(ctx)
			}
		}
	}()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.tick()
		}
	}
}
