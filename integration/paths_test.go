package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/keelson-dev/keelson/workflows"
)

// TestGateAndControlPaths takes releases down every path a person steers
// from the CLI, each of which the replay corpus must hold (issue 7): a gate
// that times out, one that escalates and is then approved, a pause and a
// resume, an abort, a manual rollback (and a refused one for a region the
// release does not have).
func TestGateAndControlPaths(t *testing.T) {
	l := newLab(t)
	gateWith := func(extra map[string]any) func(doc map[string]any) {
		return func(doc map[string]any) {
			g := wave(doc, "rest")["gate"].(map[string]any)
			for k, v := range extra {
				g[k] = v
			}
		}
	}
	baking := func(t *testing.T, id string) {
		waitUntil(t, 2*time.Minute, 200*time.Millisecond, id+" baking in us-east-1", func() bool {
			st, err := l.ctl.Status(t.Context(), id)
			return err == nil && st.Waves[0].Regions[0].Phase == workflows.PhaseBaking
		})
	}
	cli := func(t *testing.T, want int, args ...string) string {
		out, code := l.keelson(t, args...)
		if code != want {
			t.Fatalf("keelson %s: exit %d, want %d\n%s", strings.Join(args, " "), code, want, out)
		}
		return out
	}

	t.Run("gate-timed-out", func(t *testing.T) {
		t.Parallel()
		app := l.appName(t, "itgto")
		id := l.start(t, l.releaseFile(t, app, gateWith(map[string]any{"timeout": "3s", "onTimeout": "reject"})), runVersion(1))
		res := l.result(t, id, 3*time.Minute)
		if res.Phase != workflows.PhaseRejected || len(res.Approvals) != 1 || !res.Approvals[0].TimedOut {
			t.Fatalf("gate timeout: %s", writeJSON(res))
		}
		l.record(t, id, "release-gate-timed-out")
	})
	t.Run("gate-escalated", func(t *testing.T) {
		t.Parallel()
		app := l.appName(t, "itgesc")
		id := l.start(t, l.releaseFile(t, app, gateWith(map[string]any{"timeout": "3s", "onTimeout": "escalate",
			"escalation": map[string]any{"mention": "@release-managers", "extend": "2m"}})), runVersion(1))
		waitUntil(t, 2*time.Minute, 200*time.Millisecond, "the gate to escalate", func() bool {
			st, err := l.ctl.Status(t.Context(), id)
			return err == nil && st.Gate != nil && st.Gate.Escalated
		})
		cli(t, 0, "approve", id, "--user", "demo-approver")
		if res := l.result(t, id, 3*time.Minute); res.Phase != workflows.PhaseSucceeded {
			t.Fatalf("escalated then approved: %s", writeJSON(res))
		}
		l.record(t, id, "release-gate-escalated")
	})
	t.Run("pause-resume", func(t *testing.T) {
		t.Parallel()
		app := l.appName(t, "itpause")
		id := l.start(t, l.releaseFile(t, app, noGate("8s")), runVersion(1))
		baking(t, id)
		cli(t, 0, "pause", id, "--user", "oncall", "--reason", "looking at a graph")
		waitUntil(t, time.Minute, 200*time.Millisecond, "the release to pause between steps", func() bool {
			st, err := l.ctl.Status(t.Context(), id)
			return err == nil && st.Paused && st.Waves[1].Regions[0].Phase == workflows.PhasePending && st.Waves[0].Phase == workflows.PhaseSucceeded
		})
		time.Sleep(2 * time.Second)
		if st, _ := l.ctl.Status(t.Context(), id); st.Waves[1].Regions[0].Phase != workflows.PhasePending {
			t.Fatalf("a paused release started the next wave: %+v", st.Waves[1])
		}
		cli(t, 0, "resume", id, "--user", "oncall")
		if res := l.result(t, id, 3*time.Minute); res.Phase != workflows.PhaseSucceeded {
			t.Fatalf("resumed: %s", writeJSON(res))
		}
		l.record(t, id, "release-pause-resume")
	})
	t.Run("abort", func(t *testing.T) {
		t.Parallel()
		app := l.appName(t, "itabort")
		file := l.releaseFile(t, app, noGate("2s"))
		l.succeed(t, file, runVersion(1))
		id := l.start(t, l.releaseFile(t, app, noGate("90s")), runVersion(2))
		baking(t, id)
		cli(t, 0, "abort", id, "--user", "oncall", "--reason", "error rate")
		res := l.result(t, id, 3*time.Minute)
		if res.Phase != workflows.PhaseAborted || res.Regions[0].RolledBackTo == 0 {
			t.Fatalf("abort: %s", writeJSON(res))
		}
		l.record(t, id, "release-aborted")
	})
	t.Run("manual-rollback", func(t *testing.T) {
		t.Parallel()
		app := l.appName(t, "itmanual")
		file := l.releaseFile(t, app, noGate("2s"))
		l.succeed(t, file, runVersion(1))
		id := l.start(t, l.releaseFile(t, app, noGate("90s")), runVersion(2))
		baking(t, id)
		out := cli(t, 1, "rollback", id, "--user", "oncall", "--region", "eu-west-9", "--reason", "typo")
		if !strings.Contains(out, "no region eu-west-9") {
			t.Errorf("rollback of an unknown region: want a refusal naming it, got:\n%s", out)
		}
		cli(t, 0, "rollback", id, "--user", "oncall", "--reason", "latency")
		res := l.result(t, id, 3*time.Minute)
		if res.Phase != workflows.PhaseRolledBack || res.Regions[0].RolledBackTo == 0 || !strings.Contains(res.Reason, "latency") {
			t.Fatalf("manual rollback: %s", writeJSON(res))
		}
		l.record(t, id, "release-manual-rollback")
	})
}
