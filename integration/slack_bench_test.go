//go:build bench

// The approval-latency measurement is built only with -tags bench
// (bench/slack-approval.sh), so `make test` never runs it.

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/slack-go/slack"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"

	keelslack "github.com/keelson-dev/keelson/activities/slack"
	"github.com/keelson-dev/keelson/activities/slack/slackfake"
	"github.com/keelson-dev/keelson/internal/benchfig"
	"github.com/keelson-dev/keelson/workflows"
)

// TestSlackBenchApprovalLatency measures, over many approvals, the time from
// a signed Slack callback arriving at the worker to the release's next step:
// the approve Update accepted in the release's history, the region's child
// workflow started, and its first activity (the Helm upgrade) scheduled and
// started. Releases have many small waves, one region each (no Terraform,
// no health checks, one replica), each behind a gate approved from Slack.
//
// It is a measurement, not a test of the product, and runs only with
// KEELSON_BENCH=1 (bench/slack-approval.sh sets it):
//
//	KEELSON_BENCH_RELEASES (5) releases in parallel of KEELSON_BENCH_WAVES (20) gated waves.
func TestSlackBenchApprovalLatency(t *testing.T) {
	releases := slackEnvInt(t, "KEELSON_BENCH_RELEASES", 5)
	waves := slackEnvInt(t, "KEELSON_BENCH_WAVES", 20)
	e := newSlackEnv(t)
	waitQuiet(t, e.lab, 2*time.Minute)
	const channel = "CSLACKBENCH"
	contexts := []string{"us-east-1", "eu-west-1", "ap-southeast-1"}

	type release struct {
		id, app string
		regions map[string]string // gate -> region
	}
	var rels []release
	for i := range releases {
		app := slackApp(fmt.Sprintf("bench%d", i))
		var ws []slackWave
		regions := map[string]string{}
		for w := range waves {
			name := fmt.Sprintf("w%03d", w)
			region := fmt.Sprintf("r%03d", w)
			ws = append(ws, slackWave{Name: name, Region: region, KubeContext: contexts[(i+w)%len(contexts)], Gate: true})
			regions["before-"+name] = region
		}
		file := slackReleaseFile(t, e.lab, app, channel, ws)
		rels = append(rels, release{id: e.slackStart(t, file, slackVersion()), app: app, regions: regions})
	}

	// Click Approve on every open gate message as soon as it appears, and
	// note when each signed callback was sent.
	total := releases * waves
	byID := map[string]release{}
	for _, r := range rels {
		byID[r.id] = r
	}
	sent := map[string]time.Time{} // release/gate -> callback sent
	var acks []time.Duration
	started := time.Now()
	deadline := started.Add(time.Duration(total) * 20 * time.Second)
	for len(sent) < total {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d gates answered by %s", len(sent), total, deadline.Format(time.RFC3339))
		}
		// One pass over the channel per round, not one per gate: the
		// harness shares the machine's two cores with the worker and the
		// server it measures, and should cost as little as it can.
		for _, m := range slackOpenGates(e.ws, channel) {
			r, ok := byID[m.action.ReleaseID]
			key := m.action.ReleaseID + "/" + m.action.Gate
			if _, done := sent[key]; !ok || done {
				continue
			}
			if _, ours := r.regions[m.action.Gate]; !ours {
				continue
			}
			req := slackSigned(slackClick(slackApprover, channel, m.msg.TS, r.id, m.action.Gate, true), slackSecret, time.Now())
			t0 := time.Now()
			code, body := slackPost(t, e.worker.url(), req)
			if code != http.StatusOK {
				t.Fatalf("approve %s: %d %q", key, code, body)
			}
			sent[key] = t0
			acks = append(acks, time.Since(t0))
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, r := range rels {
		if res := e.result(t, r.id, 5*time.Minute); res.Phase != workflows.PhaseSucceeded || len(res.Approvals) != waves {
			t.Fatalf("release %s ended %s (%s) with %d approvals", r.id, res.Phase, res.Reason, len(res.Approvals))
		}
	}
	wall := time.Since(started)

	var accepted, childStarted, scheduled, actStarted []time.Duration
	for _, r := range rels {
		for _, ev := range e.lab.history(t, r.id) {
			a := ev.GetWorkflowExecutionUpdateAcceptedEventAttributes()
			if a == nil || a.GetAcceptedRequest().GetInput().GetName() != workflows.UpdateApprove {
				continue
			}
			var ans workflows.GateAnswer
			if args := a.GetAcceptedRequest().GetInput().GetArgs().GetPayloads(); len(args) == 1 {
				_ = json.Unmarshal(args[0].GetData(), &ans)
			}
			t0, ok := sent[r.id+"/"+ans.Gate]
			if !ok {
				t.Fatalf("approval of %q in %s matches no callback", ans.Gate, r.id)
			}
			accepted = append(accepted, ev.GetEventTime().AsTime().Sub(t0))
			child := e.lab.history(t, workflows.RegionID(r.id, r.regions[ans.Gate]))
			childStarted = append(childStarted, child[0].GetEventTime().AsTime().Sub(t0))
			if s, st := slackFirstActivity(child); s != nil {
				scheduled = append(scheduled, s.GetEventTime().AsTime().Sub(t0))
				if st != nil {
					actStarted = append(actStarted, st.GetEventTime().AsTime().Sub(t0))
				}
			}
		}
	}
	if len(accepted) != total || len(actStarted) != total {
		t.Fatalf("measured %d accepted Updates and %d started activities, want %d", len(accepted), len(actStarted), total)
	}
	t.Logf("%d approvals from Slack (%d releases x %d gated waves) in %s, one worker, task queue %s", total, releases, waves, wall.Round(time.Second), slackTaskQueue)
	t.Logf("%-58s %s", "from the signed callback sent to", "p50 / p95 / max")
	for _, row := range []struct {
		name string
		ds   []time.Duration
	}{
		{"the worker's HTTP answer (200) received", acks},
		{"approve Update accepted in the release's history", accepted},
		{"region child workflow started", childStarted},
		{"next activity (helm Upgrade) scheduled", scheduled},
		{"next activity (helm Upgrade) started", actStarted},
	} {
		p50, p95, worst := slackPercentiles(row.ds)
		t.Logf("%-58s %s / %s / %s", row.name, p50, p95, worst)
	}
	p50, p95, worst := slackPercentiles(actStarted)
	benchfig.Report(t, benchfig.Figure{Name: "approval.callback_to_next_activity.p50", Value: benchfig.Millis(p50), Unit: "ms",
		Max: benchfig.AtMost(300), Detail: fmt.Sprintf("signed Slack callback to the next activity started, %d approvals; p95 %s, max %s", total, p95, worst)})
	p50, _, _ = slackPercentiles(accepted)
	benchfig.Report(t, benchfig.Figure{Name: "approval.callback_to_update_accepted.p50", Value: benchfig.Millis(p50), Unit: "ms",
		Detail: "signed Slack callback to the approve Update accepted in history"})
}

type slackOpenGate struct {
	msg    slackfake.Message
	action keelslack.GateAction
}

// slackOpenGates are the gate messages of a channel that still carry their
// buttons, with the gate each one answers.
func slackOpenGates(ws *slackfake.Workspace, channel string) []slackOpenGate {
	var out []slackOpenGate
	for _, msg := range ws.Messages(channel) {
		for _, b := range msg.Blocks.BlockSet {
			ab, ok := b.(*slack.ActionBlock)
			if !ok || ab.BlockID != keelslack.BlockGateActions {
				continue
			}
			for _, el := range ab.Elements.ElementSet {
				if btn, ok := el.(*slack.ButtonBlockElement); ok {
					if a, err := keelslack.DecodeAction(btn.Value); err == nil {
						out = append(out, slackOpenGate{msg: msg, action: a})
						break
					}
				}
			}
		}
	}
	return out
}

// slackFirstActivity is the first ActivityTaskScheduled event of a history
// and its ActivityTaskStarted event (whose time is when a worker took it).
func slackFirstActivity(events []*historypb.HistoryEvent) (scheduled, started *historypb.HistoryEvent) {
	for _, ev := range events {
		if scheduled == nil && ev.GetActivityTaskScheduledEventAttributes() != nil {
			scheduled = ev
			continue
		}
		if a := ev.GetActivityTaskStartedEventAttributes(); scheduled != nil && a != nil && a.GetScheduledEventId() == scheduled.GetEventId() {
			return scheduled, ev
		}
	}
	return scheduled, nil
}

func slackPercentiles(ds []time.Duration) (p50, p95, worst time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(q float64) time.Duration {
		i := int(q*float64(len(s))+0.5) - 1
		return s[min(max(i, 0), len(s)-1)].Round(100 * time.Microsecond)
	}
	return at(0.50), at(0.95), s[len(s)-1].Round(100 * time.Microsecond)
}

func slackEnvInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

// waitQuiet waits, up to max, until the lab runs no release, region or
// train: a measurement of latency started while the tests before it still
// end their releases (a terminated release's activities stop at their next
// heartbeat) would count their load as Keelson's. Idle lanes are left: they
// wait on a timer for ten minutes and cost nothing meanwhile. It says how
// long it waited, or what still ran when it gave up.
func waitQuiet(t *testing.T, l *lab, max time.Duration) {
	t.Helper()
	const query = "ExecutionStatus = 'Running' AND WorkflowType IN ('Release', 'RegionRollout', 'Train')"
	start := time.Now()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res, err := l.tc.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: query})
		cancel()
		if err != nil {
			t.Fatalf("count running workflows: %v", err)
		}
		if res.GetCount() == 0 {
			t.Logf("lab quiet after %s", time.Since(start).Round(100*time.Millisecond))
			return
		}
		if time.Since(start) > max {
			t.Logf("lab still runs %d releases, regions or trains after %s; measuring anyway", res.GetCount(), max)
			return
		}
		time.Sleep(time.Second)
	}
}
