//go:build figures

// The figures of progressive delivery on the local stack are built only
// with -tags figures (make figures-progressive, which needs `make up`), so
// `make test` never compiles them. They print what they measure and never
// assert a timing: a run fails only when the release does not take the
// path being measured.

package integration

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/converter"

	"github.com/keelson-dev/keelson/activities/traffic"
	"github.com/keelson-dev/keelson/workflows"
)

// Targets the figures are read against (printed, not asserted).
const (
	figTargetTraffic = 5 * time.Second  // deciding sample -> traffic back on stable
	figTargetHelm    = 15 * time.Second // deciding sample -> side Helm release removed
	figTargetRatio   = 1.05             // canary steps' wall time / configured pauses
)

// TestFiguresAutoRollback measures, over KEELSON_FIGURES_RUNS (5) bad
// canaries, how long after the deciding sample of a failed analysis the
// traffic is back on the stable side and the side Helm release is removed
// (the region's AutoRollback record).
func TestFiguresAutoRollback(t *testing.T) {
	runs := figRuns(t)
	l := newLab(t)
	type row struct {
		run             int
		id              string
		traffic, helmed time.Duration
	}
	var rows []row
	for i := 1; i <= runs; i++ {
		t.Run(fmt.Sprintf("run%d", i), func(t *testing.T) {
			app := l.appName(t, fmt.Sprintf("fig-bad-%d", i))
			tr := sideRecords(t, app, "us-east-1")
			file := l.progressiveFile(t, app, canarySteps("error-ratio"), tr, errorRatio(app))
			// The first install has no stable side: it goes all at once.
			l.succeed(t, file, "1.0.0")
			id := l.start(t, file, "1.1.0-errors")
			res := l.result(t, id, 5*time.Minute)
			if res.Phase != workflows.PhaseRolledBack || len(res.Regions) == 0 {
				t.Errorf("bad canary %s ended %s, want %s: %s", id, res.Phase, workflows.PhaseRolledBack, writeJSON(res))
				return
			}
			rr := res.Regions[0]
			ar := rr.AutoRollback
			if ar == nil || ar.DecidedAt.IsZero() || ar.TrafficAt.IsZero() || ar.HelmAt.IsZero() {
				t.Errorf("bad canary %s: no complete automatic rollback recorded: %s", id, writeJSON(rr))
				return
			}
			r := row{run: i, id: id, traffic: ar.TrafficAt.Sub(ar.DecidedAt), helmed: ar.HelmAt.Sub(ar.DecidedAt)}
			rows = append(rows, r)
			t.Logf("run %d (%s): decided -> traffic %d ms, decided -> helm %d ms (reason: %s)",
				i, id, r.traffic.Milliseconds(), r.helmed.Milliseconds(), ar.Reason)
		})
	}

	var b strings.Builder
	fmt.Fprintf(&b, "\nFIGURES auto-rollback of a bad canary (%d runs wanted, %d measured)\n", runs, len(rows))
	fmt.Fprintf(&b, "%-4s  %-40s  %22s  %20s\n", "run", "release", "decided->traffic (ms)", "decided->helm (ms)")
	var tr, hm []time.Duration
	for _, r := range rows {
		fmt.Fprintf(&b, "%-4d  %-40s  %22d  %20d\n", r.run, r.id, r.traffic.Milliseconds(), r.helmed.Milliseconds())
		tr, hm = append(tr, r.traffic), append(hm, r.helmed)
	}
	fmt.Fprintf(&b, "decided->traffic min/median/max: %s   (target under %s)\n", figSummary(tr), figTargetTraffic)
	fmt.Fprintf(&b, "decided->helm    min/median/max: %s   (target under %s)\n", figSummary(hm), figTargetHelm)
	t.Log(b.String())
	fmt.Print(b.String())
}

// TestFiguresCanaryWallTime measures, over KEELSON_FIGURES_RUNS (5) good
// canaries of three steps (10, pause P, 50, pause P, 100; P is
// KEELSON_FIGURES_PAUSE, 20s), how close the steps' wall time comes to the
// pauses the file asks for: from the scheduling of the first SetWeights
// activity to the completion of the one that sets canary 100, read from
// the region child workflow's history.
func TestFiguresCanaryWallTime(t *testing.T) {
	runs := figRuns(t)
	pause := 20 * time.Second
	if v := os.Getenv("KEELSON_FIGURES_PAUSE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("KEELSON_FIGURES_PAUSE=%q: want a positive duration", v)
		}
		pause = d
	}
	configured := 2 * pause
	l := newLab(t)
	strategy := map[string]any{"canary": map[string]any{"values": map[string]any{"replicas": 1}, "steps": []any{
		map[string]any{"setWeight": 10},
		map[string]any{"pause": map[string]any{"duration": pause.String()}},
		map[string]any{"setWeight": 50},
		map[string]any{"pause": map[string]any{"duration": pause.String()}},
		map[string]any{"setWeight": 100},
	}}}
	type row struct {
		run    int
		id     string
		m      canaryTimes
		ratio  float64
		region time.Duration
	}
	var rows []row
	for i := 1; i <= runs; i++ {
		t.Run(fmt.Sprintf("run%d", i), func(t *testing.T) {
			app := l.appName(t, fmt.Sprintf("fig-steps-%d", i))
			tr := sideRecords(t, app, "us-east-1")
			file := l.progressiveFile(t, app, strategy, tr)
			l.succeed(t, file, "1.0.0")
			id := l.succeed(t, file, "1.1.0")
			m, err := canaryStepTimes(l.history(t, workflows.RegionID(id, "us-east-1")))
			if err != nil {
				t.Errorf("release %s: %v", id, err)
				return
			}
			r := row{run: i, id: id, m: m, ratio: float64(m.steps) / float64(configured), region: m.region}
			rows = append(rows, r)
			t.Logf("run %d (%s): steps wall %s, pauses %s, ratio %.3f; region workflow %s; SetWeights %v took %s in all, timers %s in all",
				i, id, m.steps.Round(time.Millisecond), configured, r.ratio, m.region.Round(time.Millisecond),
				m.canaries, m.setWeights.Round(time.Millisecond), m.timers.Round(time.Millisecond))
		})
	}

	var b strings.Builder
	fmt.Fprintf(&b, "\nFIGURES canary steps' wall time (10, pause %s, 50, pause %s, 100; %d runs wanted, %d measured)\n", pause, pause, runs, len(rows))
	fmt.Fprintf(&b, "%-4s  %-36s  %12s  %10s  %7s  %14s  %14s  %11s\n",
		"run", "release", "steps wall", "pauses", "ratio", "region wf", "SetWeights sum", "timers sum")
	var ratios []float64
	for _, r := range rows {
		fmt.Fprintf(&b, "%-4d  %-36s  %12s  %10s  %7.3f  %14s  %14s  %11s\n", r.run, r.id,
			r.m.steps.Round(time.Millisecond), configured, r.ratio, r.region.Round(time.Millisecond),
			r.m.setWeights.Round(time.Millisecond), r.m.timers.Round(time.Millisecond))
		ratios = append(ratios, r.ratio)
	}
	if len(ratios) > 0 {
		slices.Sort(ratios)
		fmt.Fprintf(&b, "ratio min/median/max: %.3f / %.3f / %.3f   (target under %.2f)\n",
			ratios[0], figMedian(ratios), ratios[len(ratios)-1], figTargetRatio)
	} else {
		fmt.Fprintf(&b, "ratio min/median/max: no run measured   (target under %.2f)\n", figTargetRatio)
	}
	t.Log(b.String())
	fmt.Print(b.String())
}

// canaryTimes is what a canary region's history says of its steps.
type canaryTimes struct {
	steps      time.Duration // first SetWeights scheduled -> SetWeights canary 100 completed
	region     time.Duration // the region workflow, started -> closed
	canaries   []int         // canary weight of each SetWeights, in order
	setWeights time.Duration // sum of the SetWeights activities' scheduled -> completed, within steps
	timers     time.Duration // sum of the timers' started -> fired, within steps
}

// canaryStepTimes reads a canary region's history: the traffic activities
// (type SetWeights, whose input carries the weights), the pauses' timers,
// and the workflow's start and close.
func canaryStepTimes(events []*historypb.HistoryEvent) (canaryTimes, error) {
	var m canaryTimes
	if len(events) == 0 {
		return m, fmt.Errorf("empty history")
	}
	dc := converter.GetDefaultDataConverter()
	weights := map[int64]int{} // SetWeights scheduled event id -> canary weight
	scheduledAt := map[int64]time.Time{}
	timerAt := map[int64]time.Time{}
	var first, last, started, closed time.Time
	for _, e := range events {
		at := e.GetEventTime().AsTime()
		switch {
		case e.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
			started = at
		case e.GetWorkflowExecutionCompletedEventAttributes() != nil, e.GetWorkflowExecutionFailedEventAttributes() != nil,
			e.GetWorkflowExecutionCanceledEventAttributes() != nil, e.GetWorkflowExecutionTerminatedEventAttributes() != nil,
			e.GetWorkflowExecutionTimedOutEventAttributes() != nil:
			closed = at
		case e.GetActivityTaskScheduledEventAttributes() != nil:
			a := e.GetActivityTaskScheduledEventAttributes()
			if a.GetActivityType().GetName() != "SetWeights" {
				continue
			}
			var in traffic.SetInput
			if err := dc.FromPayloads(a.GetInput(), &in); err != nil {
				return m, fmt.Errorf("SetWeights input (event %d): %w", e.GetEventId(), err)
			}
			weights[e.GetEventId()] = in.Weights[workflows.SideCanary]
			scheduledAt[e.GetEventId()] = at
			m.canaries = append(m.canaries, in.Weights[workflows.SideCanary])
			if first.IsZero() {
				first = at
			}
		case e.GetActivityTaskCompletedEventAttributes() != nil:
			id := e.GetActivityTaskCompletedEventAttributes().GetScheduledEventId()
			w, ok := weights[id]
			if !ok {
				continue
			}
			if last.IsZero() {
				m.setWeights += at.Sub(scheduledAt[id])
			}
			if w == 100 && last.IsZero() {
				last = at
			}
		case e.GetTimerStartedEventAttributes() != nil:
			timerAt[e.GetEventId()] = at
		case e.GetTimerFiredEventAttributes() != nil:
			if s, ok := timerAt[e.GetTimerFiredEventAttributes().GetStartedEventId()]; ok && !first.IsZero() && last.IsZero() {
				m.timers += at.Sub(s)
			}
		}
	}
	if first.IsZero() || last.IsZero() {
		return m, fmt.Errorf("no SetWeights activities from the first to canary 100 in the region's history (canary weights seen: %v)", m.canaries)
	}
	if fmt.Sprint(m.canaries) != "[10 50 100 0]" {
		return m, fmt.Errorf("SetWeights of canary %v, want [10 50 100 0]", m.canaries)
	}
	m.steps = last.Sub(first)
	if !started.IsZero() && !closed.IsZero() {
		m.region = closed.Sub(started)
	}
	return m, nil
}

// figRuns is KEELSON_FIGURES_RUNS, 5 when unset.
func figRuns(t *testing.T) int {
	t.Helper()
	v := os.Getenv("KEELSON_FIGURES_RUNS")
	if v == "" {
		return 5
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("KEELSON_FIGURES_RUNS=%q: want a positive number", v)
	}
	return n
}

// figSummary is "min / median / max" in milliseconds.
func figSummary(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no run measured"
	}
	ms := make([]float64, len(ds))
	for i, d := range ds {
		ms[i] = float64(d.Milliseconds())
	}
	slices.Sort(ms)
	return fmt.Sprintf("%.0f / %.0f / %.0f ms", ms[0], figMedian(ms), ms[len(ms)-1])
}

// figMedian is the median of sorted values.
func figMedian(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}
