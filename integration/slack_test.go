package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keelson-dev/keelson/activities/slack/slackfake"
	"github.com/keelson-dev/keelson/workflows"
)

// TestSlackGateFromSlack runs a two-wave release whose second wave is gated,
// on a worker of its own with Slack pointed at a fake workspace. While the
// gate is open, every kind of bad callback is sent to the worker's real
// endpoint and must get its answer and change nothing; then the approver's
// signed click moves the release on, the gate message is closed in place,
// and the release's thread tells the story.
func TestSlackGateFromSlack(t *testing.T) {
	e := newSlackEnv(t)
	const channel = "CSLACKGATE"
	app := slackApp("gate")
	file := slackReleaseFile(t, e.lab, app, channel, []slackWave{
		{Name: "canary", Region: "us-east-1", KubeContext: "us-east-1"},
		{Name: "rest", Region: "eu-west-1", KubeContext: "eu-west-1", Gate: true},
	})
	version := slackVersion()
	id := e.slackStart(t, file, version)
	const gate = "before-rest"

	var msg slackfake.Message
	slackWaitFor(t, 3*time.Minute, "the gate message in "+channel, func() bool {
		m, open, found := slackGateMessage(e.ws, channel, id, gate)
		msg = m
		return found && open
	})
	text := slackBlockText(msg.Blocks)
	for _, want := range []string{app, version, "eu-west-1", slackApprover, "rest"} {
		if !strings.Contains(text, want) {
			t.Errorf("gate message does not show %q:\n%s", want, text)
		}
	}
	st := e.status(t, id)
	if st.Phase != workflows.PhaseAwaitGate || st.Gate == nil || st.Gate.Name != gate {
		t.Fatalf("release is not waiting at gate %s: %s", gate, writeJSON(st))
	}

	// unchanged checks that the release still waits at the gate with no
	// answer, in its status and in its history.
	unchanged := func(t *testing.T, after string) {
		t.Helper()
		st := e.status(t, id)
		if st.Phase != workflows.PhaseAwaitGate || st.Gate == nil || st.Gate.Name != gate || len(st.Approvals) != 0 {
			t.Fatalf("after %s the release changed: %s", after, writeJSON(st))
		}
		if n := slackApprovalsIn(e.lab.history(t, id)); n != 0 {
			t.Fatalf("after %s the history holds %d accepted answers", after, n)
		}
		if m, open, _ := slackGateMessage(e.ws, channel, id, gate); !open || m.Updates != msg.Updates {
			t.Fatalf("after %s the gate message changed (open %v, updates %d -> %d)", after, open, msg.Updates, m.Updates)
		}
	}
	approve := slackClick(slackApprover, channel, msg.TS, id, gate, true)

	t.Run("bad signature", func(t *testing.T) {
		req := slackSigned(approve, "not-the-secret", time.Now())
		if code, body := slackPost(t, e.worker.url(), req); code != http.StatusUnauthorized {
			t.Fatalf("signed with another secret: %d %q, want 401", code, body)
		}
		// Slack's signature over another body.
		other := slackSigned(slackClick(slackStranger, channel, msg.TS, id, gate, true), slackSecret, time.Now())
		req = slackSigned(approve, slackSecret, time.Now())
		req.signature = other.signature
		if code, body := slackPost(t, e.worker.url(), req); code != http.StatusUnauthorized {
			t.Fatalf("body swapped under a valid signature: %d %q, want 401", code, body)
		}
		req = slackSigned(approve, slackSecret, time.Now())
		req.signature, req.timestamp = "", ""
		if code, body := slackPost(t, e.worker.url(), req); code != http.StatusUnauthorized {
			t.Fatalf("no signature headers: %d %q, want 401", code, body)
		}
		unchanged(t, "badly signed callbacks")
	})

	t.Run("stale timestamp", func(t *testing.T) {
		for _, at := range []time.Time{time.Now().Add(-6 * time.Minute), time.Now().Add(6 * time.Minute)} {
			req := slackSigned(approve, slackSecret, at)
			if code, body := slackPost(t, e.worker.url(), req); code != http.StatusUnauthorized {
				t.Fatalf("correctly signed at %s: %d %q, want 401", at.Format(time.RFC3339), code, body)
			}
		}
		unchanged(t, "stale callbacks")
	})

	t.Run("malformed payload", func(t *testing.T) {
		bad := map[string]any{
			"payload is not JSON":     "{not json",
			"payload has no type":     `{"user":{"id":"U0APPROVER"}}`,
			"button value not a gate": strings.Replace(slackJSON(t, approve), `\"r\"`, `\"x\"`, 1),
		}
		for name, payload := range bad {
			req := slackSigned(payload, slackSecret, time.Now())
			if code, body := slackPost(t, e.worker.url(), req); code != http.StatusBadRequest {
				t.Errorf("%s: %d %q, want 400", name, code, body)
			}
		}
		// A signed body that is not a form with a payload at all.
		req := slackSigned("", slackSecret, time.Now())
		req.body = []byte("hello=world")
		req.signature = slackSign(slackSecret, req.timestamp, req.body)
		if code, body := slackPost(t, e.worker.url(), req); code != http.StatusBadRequest {
			t.Errorf("no payload field: %d %q, want 400", code, body)
		}
		unchanged(t, "malformed callbacks")
	})

	t.Run("unauthorised user", func(t *testing.T) {
		req := slackSigned(slackClick(slackStranger, channel, msg.TS, id, gate, true), slackSecret, time.Now())
		if code, body := slackPost(t, e.worker.url(), req); code != http.StatusOK || body != "" {
			t.Fatalf("stranger's click: %d %q, want an empty 200 (the refusal comes as an ephemeral message)", code, body)
		}
		var eph []slackfake.Ephemeral
		slackWaitFor(t, 20*time.Second, "the ephemeral refusal to "+slackStranger, func() bool {
			eph = slackEphemeralsTo(e.ws, slackStranger)
			return len(eph) > 0
		})
		if len(eph) != 1 || eph[0].Channel != channel || !strings.Contains(eph[0].Text, "refused") || !strings.Contains(eph[0].Text, "not an approver") {
			t.Fatalf("stranger was told %+v, want one refusal naming the approver rule in %s", eph, channel)
		}
		unchanged(t, "an unauthorised click")

		// The same request again, byte for byte: nothing new happens.
		if code, _ := slackPost(t, e.worker.url(), req); code != http.StatusOK {
			t.Fatalf("replayed request: %d, want 200", code)
		}
		time.Sleep(time.Second)
		if n := len(slackEphemeralsTo(e.ws, slackStranger)); n != 1 {
			t.Fatalf("a replayed request was handled again: %d ephemeral messages", n)
		}
		unchanged(t, "a replayed unauthorised click")
	})

	t.Run("unknown release", func(t *testing.T) {
		const ghost = "release-slackit-ghost-0.0.1"
		req := slackSigned(slackClick(slackApprover, channel, msg.TS, ghost, gate, true), slackSecret, time.Now())
		if code, body := slackPost(t, e.worker.url(), req); code != http.StatusOK {
			t.Fatalf("click for an unknown release: %d %q, want 200", code, body)
		}
		slackWaitFor(t, 20*time.Second, "the ephemeral answer about the unknown release", func() bool {
			for _, m := range slackEphemeralsTo(e.ws, slackApprover) {
				if strings.Contains(m.Text, ghost) && strings.Contains(m.Text, "not found") {
					return true
				}
			}
			return false
		})
		unchanged(t, "a click for an unknown release")
	})

	// The approver's click.
	approveReq := slackSigned(approve, slackSecret, time.Now())
	sent := time.Now()
	if code, body := slackPost(t, e.worker.url(), approveReq); code != http.StatusOK || body != "" {
		t.Fatalf("approver's click: %d %q, want an empty 200", code, body)
	}
	if d := time.Since(sent); d > 3*time.Second {
		t.Errorf("the callback was answered after %s; Slack gives up after 3s", d)
	}
	slackWaitFor(t, 30*time.Second, "the approver's confirmation", func() bool {
		for _, m := range slackEphemeralsTo(e.ws, slackApprover) {
			if strings.Contains(m.Text, "You approved gate "+gate) {
				return true
			}
		}
		return false
	})
	var closed slackfake.Message
	slackWaitFor(t, 30*time.Second, "the gate message closed in place", func() bool {
		m, open, found := slackGateMessage(e.ws, channel, id, gate)
		closed = m
		return found && !open
	})
	if closed.TS != msg.TS || closed.Updates < 1 {
		t.Errorf("gate message not updated in place: posted %s, closed %s after %d updates", msg.TS, closed.TS, closed.Updates)
	}
	ctext := slackBlockText(closed.Blocks)
	if !strings.Contains(closed.Text, "approved by approver") || !strings.Contains(ctext, "<@"+slackApprover+">") || !strings.Contains(ctext, "via slack") {
		t.Errorf("closed gate message does not say who approved how: %q\n%s", closed.Text, ctext)
	}

	t.Run("replayed and redelivered approval", func(t *testing.T) {
		// The same bytes again (a replay), then the same click signed anew
		// with Slack's retry header (a redelivery).
		if code, _ := slackPost(t, e.worker.url(), approveReq); code != http.StatusOK {
			t.Fatalf("replayed approval: %d, want 200", code)
		}
		again := slackSigned(approve, slackSecret, time.Now().Add(time.Second))
		if code, _ := slackPost(t, e.worker.url(), again); code != http.StatusOK {
			t.Fatalf("redelivered approval: %d, want 200", code)
		}
		time.Sleep(time.Second)
		st := e.status(t, id)
		if len(st.Approvals) != 1 {
			t.Fatalf("after a replay the release has %d approvals: %s", len(st.Approvals), writeJSON(st.Approvals))
		}
		confirmations := 0
		for _, m := range slackEphemeralsTo(e.ws, slackApprover) {
			if strings.Contains(m.Text, "approved gate") || strings.Contains(m.Text, "refused") {
				confirmations++
			}
		}
		if confirmations != 1 {
			t.Fatalf("the approver got %d answers to one click: %+v", confirmations, slackEphemeralsTo(e.ws, slackApprover))
		}
	})

	res := e.result(t, id, 4*time.Minute)
	if res.Phase != workflows.PhaseSucceeded {
		t.Fatalf("release ended %s (%s), want succeeded", res.Phase, res.Reason)
	}
	e.lab.record(t, id, "release-slack-gate")
	if len(res.Approvals) != 1 || !res.Approvals[0].Approved || res.Approvals[0].UserID != slackApprover || res.Approvals[0].Via != "slack" || res.Approvals[0].Gate != gate {
		t.Errorf("result approvals %s, want one approval of %s by %s via slack", writeJSON(res.Approvals), gate, slackApprover)
	}
	for _, r := range res.Regions {
		if r.Phase != workflows.PhaseSucceeded || r.Revision == 0 {
			t.Errorf("region %s", r)
		}
	}
	if n := slackApprovalsIn(e.lab.history(t, id)); n != 1 {
		t.Errorf("history holds %d accepted answers, want 1", n)
	}

	t.Run("thread of notifications", func(t *testing.T) {
		var parent slackfake.Message
		var replies []slackfake.Message
		want := []string{"Wave canary started", "Region us-east-1 done", "Wave rest started", "Region eu-west-1 done", "Release finished: succeeded"}
		slackWaitFor(t, 40*time.Second, "the release's thread", func() bool {
			parent, replies = slackThread(e.ws, channel, id)
			return parent.TS != "" && slackInOrder(replies, want) && strings.Contains(parent.Text, "succeeded")
		})
		if parent.Updates < 1 || !strings.Contains(slackBlockText(parent.Blocks), "succeeded") {
			t.Errorf("parent message not updated with the final status: %d updates, %q", parent.Updates, slackBlockText(parent.Blocks))
		}
		var texts []string
		for _, r := range replies {
			texts = append(texts, r.Text)
		}
		t.Logf("thread: %q\n  %s", parent.Text, strings.Join(texts, "\n  "))
		if _, _, found := slackGateMessage(e.ws, channel, id, gate); !found {
			t.Error("gate message not found")
		} else if closed.ThreadTS != parent.TS || !closed.Broadcast {
			t.Errorf("gate message is not a broadcast reply in the release's thread (thread %q, parent %q)", closed.ThreadTS, parent.TS)
		}
		for _, r := range replies {
			if r.Broadcast && strings.HasPrefix(r.Text, "Region") {
				t.Errorf("a success %q was broadcast to the channel", r.Text)
			}
		}
	})

	t.Run("finished release", func(t *testing.T) {
		before := len(slackEphemeralsTo(e.ws, slackApprover))
		req := slackSigned(slackClick(slackApprover, channel, msg.TS, id, gate, true), slackSecret, time.Now())
		if code, body := slackPost(t, e.worker.url(), req); code != http.StatusOK {
			t.Fatalf("click on a finished release: %d %q, want 200", code, body)
		}
		slackWaitFor(t, 20*time.Second, "the ephemeral answer about the finished release", func() bool {
			eph := slackEphemeralsTo(e.ws, slackApprover)
			return len(eph) > before && strings.Contains(eph[len(eph)-1].Text, "already finished")
		})
		if res2 := e.result(t, id, 10*time.Second); res2.Phase != workflows.PhaseSucceeded || len(res2.Approvals) != 1 {
			t.Fatalf("a click changed the finished release: %s", writeJSON(res2))
		}
	})
}

// TestSlackRejectWithReason rejects the first wave's gate from Slack: the
// Reject button opens the reason modal, the submitted reason ends the
// release as rejected with that reason in its result.
func TestSlackRejectWithReason(t *testing.T) {
	e := newSlackEnv(t)
	const channel = "CSLACKREJECT"
	file := slackReleaseFile(t, e.lab, slackApp("reject"), channel, []slackWave{
		{Name: "canary", Region: "us-east-1", KubeContext: "us-east-1", Gate: true},
	})
	id := e.slackStart(t, file, slackVersion())
	const gate = "before-canary"
	var msg slackfake.Message
	slackWaitFor(t, time.Minute, "the gate message", func() bool {
		m, open, found := slackGateMessage(e.ws, channel, id, gate)
		msg = m
		return found && open
	})

	click := slackClick(slackApprover, channel, msg.TS, id, gate, false)
	if code, body := slackPost(t, e.worker.url(), slackSigned(click, slackSecret, time.Now())); code != http.StatusOK || body != "" {
		t.Fatalf("reject click: %d %q, want an empty 200", code, body)
	}
	var view slackfake.View
	slackWaitFor(t, 20*time.Second, "the reason modal", func() bool {
		vs := e.ws.Views()
		if len(vs) == 0 {
			return false
		}
		view = vs[0]
		return true
	})
	if view.TriggerID != click["trigger_id"] || view.View.CallbackID != "keelson_gate_reject_reason" || !strings.Contains(view.View.PrivateMetadata, id) {
		t.Fatalf("modal opened with trigger %q, callback %q, metadata %q", view.TriggerID, view.View.CallbackID, view.View.PrivateMetadata)
	}
	if st := e.status(t, id); st.Phase != workflows.PhaseAwaitGate || len(st.Approvals) != 0 {
		t.Fatalf("the click alone answered the gate: %s", writeJSON(st))
	}

	// An empty reason keeps the modal open with an error under the input.
	code, body := slackPost(t, e.worker.url(), slackSigned(slackSubmit(slackApprover, view, "V0001", "  "), slackSecret, time.Now()))
	if code != http.StatusOK || !strings.Contains(body, `"response_action":"errors"`) || !strings.Contains(body, "keelson_reason") {
		t.Fatalf("empty reason: %d %q, want 200 with response_action errors on the reason block", code, body)
	}
	if st := e.status(t, id); st.Phase != workflows.PhaseAwaitGate || len(st.Approvals) != 0 {
		t.Fatalf("an empty reason answered the gate: %s", writeJSON(st))
	}

	const reason = "error budget of checkout is exhausted"
	code, body = slackPost(t, e.worker.url(), slackSigned(slackSubmit(slackApprover, view, "V0001", reason), slackSecret, time.Now()))
	if code != http.StatusOK || body != "" {
		t.Fatalf("reason submitted: %d %q, want an empty 200 (closes the modal)", code, body)
	}
	res := e.result(t, id, time.Minute)
	if res.Phase != workflows.PhaseRejected || !strings.Contains(res.Reason, reason) || !strings.Contains(res.Reason, gate) {
		t.Fatalf("release ended %s (%q), want rejected with the reason", res.Phase, res.Reason)
	}
	e.lab.record(t, id, "release-slack-rejected")
	if len(res.Approvals) != 1 || res.Approvals[0].Approved || res.Approvals[0].Reason != reason || res.Approvals[0].UserID != slackApprover {
		t.Errorf("result approvals %s", writeJSON(res.Approvals))
	}
	for _, r := range res.Regions {
		if r.Revision != 0 {
			t.Errorf("region %s was deployed after a rejection", r)
		}
	}
	slackWaitFor(t, 30*time.Second, "the gate message closed as rejected with the reason", func() bool {
		m, open, _ := slackGateMessage(e.ws, channel, id, gate)
		return !open && strings.Contains(m.Text, "rejected by approver") && strings.Contains(slackBlockText(m.Blocks), reason)
	})
}

// TestSlackApprovalSurvivesWorkerRestart answers a gate from Slack and
// kills the worker with SIGKILL between the click and the next step, then
// starts it again: the release must complete with the Slack approval.
func TestSlackApprovalSurvivesWorkerRestart(t *testing.T) {
	e := newSlackEnv(t)

	// run releases a one-wave gated app, clicks Approve, and calls kill
	// once the worker answered the callback.
	run := func(t *testing.T, name, region string, kill func(t *testing.T)) (string, *slackfake.Message) {
		channel := "CSLACKRESTART" + strings.ToUpper(name)
		file := slackReleaseFile(t, e.lab, slackApp("restart-"+name), channel, []slackWave{
			{Name: "canary", Region: region, KubeContext: region, Gate: true},
		})
		id := e.slackStart(t, file, slackVersion())
		var msg slackfake.Message
		slackWaitFor(t, time.Minute, "the gate message", func() bool {
			m, open, found := slackGateMessage(e.ws, channel, id, "before-canary")
			msg = m
			return found && open
		})
		click := slackClick(slackApprover, channel, msg.TS, id, "before-canary", true)
		if code, body := slackPost(t, e.worker.url(), slackSigned(click, slackSecret, time.Now())); code != http.StatusOK {
			t.Fatalf("approver's click: %d %q", code, body)
		}
		kill(t)
		e.worker.start()
		return id, &msg
	}
	check := func(t *testing.T, id string) {
		res := e.result(t, id, 3*time.Minute)
		if res.Phase != workflows.PhaseSucceeded || len(res.Approvals) != 1 || res.Approvals[0].UserID != slackApprover {
			t.Fatalf("release ended %s (%q) with approvals %s, want succeeded with the Slack approval", res.Phase, res.Reason, writeJSON(res.Approvals))
		}
		if len(res.Regions) != 1 || res.Regions[0].Phase != workflows.PhaseSucceeded || res.Regions[0].Revision == 0 {
			t.Fatalf("regions %s", writeJSON(res.Regions))
		}
	}

	t.Run("killed once the answer was accepted", func(t *testing.T) {
		id, _ := run(t, "accepted", "eu-west-1", func(t *testing.T) {
			slackWaitFor(t, 20*time.Second, "the approver's confirmation", func() bool {
				for _, m := range slackEphemeralsTo(e.ws, slackApprover) {
					if strings.Contains(m.Text, "You approved") && strings.Contains(m.Text, slackApp("restart-accepted")) {
						return true
					}
				}
				return false
			})
			e.worker.kill9()
			t.Log("worker killed (SIGKILL) right after confirming the approval to the approver")
		})
		check(t, id)
	})

	t.Run("killed right after acknowledging the click", func(t *testing.T) {
		id, _ := run(t, "acked", "ap-southeast-1", func(t *testing.T) {
			e.worker.kill9()
			t.Log("worker killed (SIGKILL) as soon as it answered 200 to the click")
		})
		// The approval either reached the release before the kill or it
		// is lost: the button was acknowledged, so Slack will not send it
		// again, and the approver was told nothing.
		deadline := time.Now().Add(30 * time.Second)
		for {
			// Right after a SIGKILL a query may time out (the workflow's
			// sticky queue belonged to the dead worker): ask again.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			st, err := e.ctl.Status(ctx, id)
			cancel()
			if err == nil && (len(st.Approvals) > 0 || st.Phase != workflows.PhaseAwaitGate) {
				break
			}
			if time.Now().After(deadline) {
				if err != nil {
					t.Fatalf("status of %s after the restart: %v", id, err)
				}
				t.Fatalf("the approval was lost: the worker answered 200 to the signed click and was killed before it "+
					"sent the approve Update; 30s after the restart the release still waits at its gate (%s). "+
					"worker/slackhook answers Slack before the Update is accepted (Handler.blockActions -> goAnswer).", st.Message)
			}
			time.Sleep(200 * time.Millisecond)
		}
		check(t, id)
	})
}

// slackThread is a release's parent message in channel and its replies,
// oldest first.
func slackThread(ws *slackfake.Workspace, channel, releaseID string) (slackfake.Message, []slackfake.Message) {
	var parent slackfake.Message
	for _, m := range ws.Messages(channel) {
		if m.ThreadTS == "" && strings.Contains(slackBlockText(m.Blocks), releaseID) {
			parent = m
			break
		}
	}
	if parent.TS == "" {
		return parent, nil
	}
	var replies []slackfake.Message
	for _, m := range ws.Messages(channel) {
		if m.ThreadTS == parent.TS {
			replies = append(replies, m)
		}
	}
	return parent, replies
}

// slackInOrder reports whether replies hold a reply starting with each of
// want, in that order.
func slackInOrder(replies []slackfake.Message, want []string) bool {
	i := 0
	for _, r := range replies {
		if i < len(want) && strings.HasPrefix(r.Text, want[i]) {
			i++
		}
	}
	return i == len(want)
}

func slackJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
