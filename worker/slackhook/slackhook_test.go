package slackhook_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	keelslack "github.com/keelson-dev/keelson/activities/slack"
	"github.com/keelson-dev/keelson/activities/slack/slackfake"
	"github.com/keelson-dev/keelson/control"
	"github.com/keelson-dev/keelson/worker/slackhook"
	"github.com/keelson-dev/keelson/workflows"
)

const (
	secret    = "8f742231b10e8888abcd99yyyzzz85a5"
	releaseID = "release-shop-1.4.2"
	gateName  = "before-prod"
	channelID = "CRELEASES"
)

type harness struct {
	ws       *slackfake.Workspace
	releases *fakeReleases
	h        *slackhook.Handler
	srv      *httptest.Server
	logs     *syncBuffer
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	ws := slackfake.New()
	t.Cleanup(ws.Close)
	ws.AddGroup("S0RELMGRS1", "release-managers", "U0GROUPIE1", "U0OTHER001")
	rel := newFakeReleases()
	rel.addGate(releaseID, gateName, []string{"U0APPROVER", "carol"}, []string{"@release-managers"})
	logs := &syncBuffer{}
	h, err := slackhook.New(slackhook.Options{
		API: ws.Client("xoxb-test"), SigningSecret: secret, Releases: rel,
		Logger: slog.New(slog.NewTextHandler(io.MultiWriter(logs, testWriter{t}), nil)),
	})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &harness{ws: ws, releases: rel, h: h, srv: srv, logs: logs}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// sign signs body exactly as Slack does: v0=hex(HMAC-SHA256(secret,
// "v0:" + timestamp + ":" + body)).
func sign(key string, ts int64, body string) http.Header {
	mac := hmac.New(sha256.New, []byte(key))
	fmt.Fprintf(mac, "v0:%d:%s", ts, body)
	h := http.Header{}
	h.Set("Content-Type", "application/x-www-form-urlencoded")
	h.Set("X-Slack-Request-Timestamp", strconv.FormatInt(ts, 10))
	h.Set("X-Slack-Signature", "v0="+hex.EncodeToString(mac.Sum(nil)))
	return h
}

func form(payload any) string {
	b, err := json.Marshal(payload)
	if err != nil {
		panic(err)
	}
	return url.Values{"payload": {string(b)}}.Encode()
}

// send posts a signed body and waits for the answer the handler runs
// after replying.
func (hs *harness) send(t *testing.T, body string, header http.Header) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, hs.srv.URL, strings.NewReader(body))
	require.NoError(t, err)
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	_, _ = io.ReadAll(resp.Body)
	hs.h.Wait()
	return resp.StatusCode
}

func (hs *harness) sendSigned(t *testing.T, payload any) int {
	t.Helper()
	body := form(payload)
	return hs.send(t, body, sign(secret, time.Now().Unix(), body))
}

// click is a block_actions payload as Slack sends it for a button.
func click(userID, userName, actionID, actionTS string, ga keelslack.GateAction) map[string]any {
	return map[string]any{
		"type":         "block_actions",
		"user":         map[string]any{"id": userID, "username": userName, "name": userName, "team_id": "T0TEAM0001"},
		"api_app_id":   "A0KEELSON1",
		"token":        "legacy-verification-token",
		"container":    map[string]any{"type": "message", "message_ts": "1700000000.000001", "channel_id": channelID, "is_ephemeral": false},
		"trigger_id":   "1337.42.trigger-" + actionTS,
		"team":         map[string]any{"id": "T0TEAM0001", "domain": "keelson"},
		"channel":      map[string]any{"id": channelID, "name": "releases"},
		"response_url": "https://hooks.slack.com/actions/T0TEAM0001/1/abc",
		"message":      map[string]any{"type": "message", "ts": "1700000000.000001", "text": "Approval needed"},
		"actions": []map[string]any{{
			"action_id": actionID, "block_id": keelslack.BlockGateActions, "type": "button",
			"text":  map[string]any{"type": "plain_text", "text": "Approve"},
			"value": ga.Encode(), "action_ts": actionTS,
		}},
	}
}

var thisGate = keelslack.GateAction{ReleaseID: releaseID, Gate: gateName}

func (hs *harness) ephemeralsTo(t *testing.T, user string) []string {
	t.Helper()
	var out []string
	for _, e := range hs.ws.Ephemerals() {
		if e.User == user {
			require.Equal(t, channelID, e.Channel, "the answer goes to the gate's channel")
			out = append(out, e.Text)
		}
	}
	return out
}

func TestApproverApproves(t *testing.T) {
	hs := newHarness(t)
	code := hs.sendSigned(t, click("U0APPROVER", "alice", keelslack.ActionApprove, "1700000100.000100", thisGate))
	require.Equal(t, http.StatusOK, code)

	calls := hs.releases.answers()
	require.Len(t, calls, 1)
	c := calls[0]
	require.Equal(t, releaseID, c.releaseID)
	require.True(t, c.approve)
	require.Equal(t, workflows.GateAnswer{Gate: gateName, User: "alice", UserID: "U0APPROVER", Via: "slack", Team: "T0TEAM0001"}, c.answer, "the team is the one Slack names, for the bridge to attest")
	require.NotEmpty(t, c.updateID, "the click's idempotency key becomes the Update id")
	require.Equal(t, workflows.PhaseDeploying, hs.releases.phase(releaseID))
	msgs := hs.ephemeralsTo(t, "U0APPROVER")
	require.Len(t, msgs, 1)
	require.Contains(t, msgs[0], "You approved gate before-prod")
}

func TestGroupMemberApproves(t *testing.T) {
	hs := newHarness(t)
	require.Equal(t, http.StatusOK, hs.sendSigned(t, click("U0GROUPIE1", "dave", keelslack.ActionApprove, "1700000100.000200", thisGate)))
	calls := hs.releases.answers()
	require.Len(t, calls, 1)
	require.Equal(t, []string{"@release-managers"}, calls[0].answer.Groups, "groups are passed as the release file writes them")
	require.Equal(t, workflows.PhaseDeploying, hs.releases.phase(releaseID))
	require.Equal(t, 1, hs.ws.Calls("usergroups.list"))
	require.Equal(t, 1, hs.ws.Calls("usergroups.users.list"))
}

func TestUnauthorisedUserIsRefusedEphemerally(t *testing.T) {
	hs := newHarness(t)
	require.Equal(t, http.StatusOK, hs.sendSigned(t, click("U0MALLORY1", "mallory", keelslack.ActionApprove, "1700000100.000300", thisGate)))

	calls := hs.releases.answers()
	require.Len(t, calls, 1)
	require.Empty(t, calls[0].answer.Groups)
	require.Equal(t, workflows.PhaseAwaitGate, hs.releases.phase(releaseID), "a refusal changes nothing")
	msgs := hs.ephemeralsTo(t, "U0MALLORY1")
	require.Len(t, msgs, 1)
	require.Contains(t, msgs[0], "was refused: refused: user mallory is not an approver of gate before-prod")
	require.Contains(t, hs.logs.String(), `msg="slack answer refused"`)
	require.Contains(t, hs.logs.String(), "userId=U0MALLORY1")

	// The group cache answers the second click without asking Slack again.
	require.Equal(t, http.StatusOK, hs.sendSigned(t, click("U0MALLORY1", "mallory", keelslack.ActionApprove, "1700000100.000301", thisGate)))
	require.Equal(t, 1, hs.ws.Calls("usergroups.users.list"))
}

func TestBadSignatureIs401(t *testing.T) {
	hs := newHarness(t)
	body := form(click("U0APPROVER", "alice", keelslack.ActionApprove, "1700000100.000400", thisGate))
	require.Equal(t, http.StatusUnauthorized, hs.send(t, body, sign("not-the-secret", time.Now().Unix(), body)))

	// A body changed after signing fails too.
	h := sign(secret, time.Now().Unix(), body)
	require.Equal(t, http.StatusUnauthorized, hs.send(t, body+"x", h))

	// No signature at all.
	require.Equal(t, http.StatusUnauthorized, hs.send(t, body, http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}))

	require.Empty(t, hs.releases.answers())
	require.Empty(t, hs.ws.Ephemerals())
	require.Equal(t, 3, strings.Count(hs.logs.String(), "slack callback refused: bad signature"))
}

func TestStaleTimestampIs401(t *testing.T) {
	hs := newHarness(t)
	body := form(click("U0APPROVER", "alice", keelslack.ActionApprove, "1700000100.000500", thisGate))
	stale := time.Now().Add(-5*time.Minute - 10*time.Second).Unix()
	require.Equal(t, http.StatusUnauthorized, hs.send(t, body, sign(secret, stale, body)))
	require.Empty(t, hs.releases.answers())
	require.Contains(t, hs.logs.String(), "slack callback refused: bad signature")

	// Just inside the window is accepted.
	fresh := time.Now().Add(-4 * time.Minute).Unix()
	require.Equal(t, http.StatusOK, hs.send(t, body, sign(secret, fresh, body)))
	require.Len(t, hs.releases.answers(), 1)
}

func TestReplayedRequestChangesNothing(t *testing.T) {
	hs := newHarness(t)
	body := form(click("U0APPROVER", "alice", keelslack.ActionApprove, "1700000100.000600", thisGate))
	h := sign(secret, time.Now().Unix(), body)
	require.Equal(t, http.StatusOK, hs.send(t, body, h))
	require.Equal(t, http.StatusOK, hs.send(t, body, h.Clone()))
	require.Len(t, hs.releases.answers(), 1, "the same signed request twice answers once")
	require.Contains(t, hs.logs.String(), "slack callback replayed: ignored")

	// Slack redelivering the click signs it anew; the click's own identity
	// still makes it a duplicate.
	later := time.Now().Unix() + 1
	require.Equal(t, http.StatusOK, hs.send(t, body, sign(secret, later, body)))
	require.Len(t, hs.releases.answers(), 1)
	require.Len(t, hs.ephemeralsTo(t, "U0APPROVER"), 1, "and the user is told once")
}

// A handler that restarted has forgotten the clicks it saw; the same click
// delivered again still changes nothing (the gate is closed, and the Update
// id derived from the click would make Temporal return the first outcome).
func TestSameClickAfterRestartChangesNothing(t *testing.T) {
	hs := newHarness(t)
	payload := click("U0APPROVER", "alice", keelslack.ActionApprove, "1700000100.000700", thisGate)
	require.Equal(t, http.StatusOK, hs.sendSigned(t, payload))

	h2, err := slackhook.New(slackhook.Options{API: hs.ws.Client("xoxb-test"), SigningSecret: secret, Releases: hs.releases})
	require.NoError(t, err)
	hs.srv.Config.Handler = h2
	hs.h = h2
	body := form(payload)
	require.Equal(t, http.StatusOK, hs.send(t, body, sign(secret, time.Now().Unix()+1, body)))

	require.Len(t, hs.releases.answers(), 1)
	require.Len(t, hs.releases.releases[releaseID].status.Approvals, 1, "one approval in the release")
	msgs := hs.ephemeralsTo(t, "U0APPROVER")
	require.Len(t, msgs, 2)
	require.Contains(t, msgs[1], "is closed: <@U0APPROVER> approved it")
}

// The Update id is derived from the click alone, so two handlers (two
// workers, or one restarted) send the same id for the same click.
func TestUpdateIDIsStableAcrossHandlers(t *testing.T) {
	hs := newHarness(t)
	payload := click("U0APPROVER", "alice", keelslack.ActionApprove, "1700000100.000701", thisGate)
	hs.releases.fail = &control.Error{Kind: control.ErrNoAnswer, Message: "no worker"}
	require.Equal(t, http.StatusOK, hs.sendSigned(t, payload))

	h2, err := slackhook.New(slackhook.Options{API: hs.ws.Client("xoxb-test"), SigningSecret: secret, Releases: hs.releases})
	require.NoError(t, err)
	hs.srv.Config.Handler = h2
	hs.h = h2
	hs.releases.fail = nil
	body := form(payload)
	require.Equal(t, http.StatusOK, hs.send(t, body, sign(secret, time.Now().Unix()+1, body)))
	calls := hs.releases.answers()
	require.Len(t, calls, 2)
	require.Equal(t, calls[0].updateID, calls[1].updateID)

	other := click("U0APPROVER", "alice", keelslack.ActionApprove, "1700000100.000702", thisGate)
	hs.releases.addGate(releaseID, gateName, []string{"U0APPROVER"}, nil)
	require.Equal(t, http.StatusOK, hs.sendSigned(t, other))
	calls = hs.releases.answers()
	require.Len(t, calls, 3)
	require.NotEqual(t, calls[0].updateID, calls[2].updateID, "another click is another Update")
}

func TestMalformedPayloadIs400(t *testing.T) {
	hs := newHarness(t)
	for name, body := range map[string]string{
		"not json":        url.Values{"payload": {"{not json"}}.Encode(),
		"no payload":      url.Values{"something": {"else"}}.Encode(),
		"no type":         form(map[string]any{"user": map[string]any{"id": "U0APPROVER"}}),
		"bad form":        "payload=%zz",
		"bad button":      form(click("U0APPROVER", "alice", keelslack.ActionApprove, "1700000100.000800", keelslack.GateAction{})),
		"no user":         form(click("", "", keelslack.ActionApprove, "1700000100.000801", thisGate)),
		"bad modal state": form(map[string]any{"type": "view_submission", "user": map[string]any{"id": "U0APPROVER"}, "view": map[string]any{"callback_id": keelslack.CallbackRejectReason, "private_metadata": "nope"}}),
	} {
		t.Run(name, func(t *testing.T) {
			require.Equal(t, http.StatusBadRequest, hs.send(t, body, sign(secret, time.Now().Unix(), body)))
		})
	}
	require.Empty(t, hs.releases.answers())
	require.Contains(t, hs.logs.String(), "slack callback refused: malformed")
}

func TestClickForUnknownOrFinishedRelease(t *testing.T) {
	hs := newHarness(t)
	unknown := keelslack.GateAction{ReleaseID: "release-gone-0.0.1", Gate: gateName}
	require.Equal(t, http.StatusOK, hs.sendSigned(t, click("U0APPROVER", "alice", keelslack.ActionApprove, "1700000100.000900", unknown)))
	msgs := hs.ephemeralsTo(t, "U0APPROVER")
	require.Len(t, msgs, 1)
	require.Contains(t, msgs[0], "Release release-gone-0.0.1 was not found")

	hs.releases.setPhase(releaseID, workflows.PhaseSucceeded)
	require.Equal(t, http.StatusOK, hs.sendSigned(t, click("U0APPROVER", "alice", keelslack.ActionApprove, "1700000100.000901", thisGate)))
	require.Equal(t, http.StatusOK, hs.sendSigned(t, click("U0APPROVER", "alice", keelslack.ActionReject, "1700000100.000902", thisGate)))
	msgs = hs.ephemeralsTo(t, "U0APPROVER")
	require.Len(t, msgs, 3)
	require.Contains(t, msgs[1], "Release release-shop-1.4.2 has already finished (succeeded)")
	require.Contains(t, msgs[2], "has already finished")
	require.Empty(t, hs.releases.answers(), "no Update is sent to a release that is gone or done")
	require.Empty(t, hs.ws.Views(), "no modal for a finished release")
	require.Contains(t, hs.logs.String(), "slack answer refused")
}

func TestClickOnClosedGate(t *testing.T) {
	hs := newHarness(t)
	require.Equal(t, http.StatusOK, hs.sendSigned(t, click("U0APPROVER", "alice", keelslack.ActionApprove, "1700000101.000100", thisGate)))
	require.Equal(t, http.StatusOK, hs.sendSigned(t, click("U0GROUPIE1", "dave", keelslack.ActionApprove, "1700000101.000200", thisGate)))
	require.Len(t, hs.releases.answers(), 1)
	msgs := hs.ephemeralsTo(t, "U0GROUPIE1")
	require.Len(t, msgs, 1)
	require.Equal(t, "Gate before-prod of release release-shop-1.4.2 is closed: <@U0APPROVER> approved it.", msgs[0])
}

func TestRejectAsksReasonThenRejects(t *testing.T) {
	hs := newHarness(t)
	require.Equal(t, http.StatusOK, hs.sendSigned(t, click("U0APPROVER", "alice", keelslack.ActionReject, "1700000102.000100", thisGate)))
	require.Empty(t, hs.releases.answers(), "a reject click only asks for the reason")
	views := hs.ws.Views()
	require.Len(t, views, 1)
	v := views[0]
	require.Equal(t, "1337.42.trigger-1700000102.000100", v.TriggerID)
	require.Equal(t, keelslack.CallbackRejectReason, v.View.CallbackID)

	submit := func(reason, viewID string) int {
		return hs.sendSigned(t, map[string]any{
			"type": "view_submission",
			"user": map[string]any{"id": "U0APPROVER", "username": "alice", "name": "alice"},
			"view": map[string]any{
				"id": viewID, "hash": "1700000102.abc", "type": "modal",
				"callback_id":      v.View.CallbackID,
				"private_metadata": v.View.PrivateMetadata,
				"state": map[string]any{"values": map[string]any{
					keelslack.BlockReason: map[string]any{keelslack.ActionReason: map[string]any{"type": "plain_text_input", "value": reason}},
				}},
			},
		})
	}
	require.Equal(t, http.StatusOK, submit("  ", "V0001"))
	require.Empty(t, hs.releases.answers(), "an empty reason is sent back to the modal")

	require.Equal(t, http.StatusOK, submit("the legacy DNS is still in use", "V0001"))
	calls := hs.releases.answers()
	require.Len(t, calls, 1)
	require.False(t, calls[0].approve)
	require.Equal(t, workflows.GateAnswer{Gate: gateName, User: "alice", UserID: "U0APPROVER", Reason: "the legacy DNS is still in use", Via: "slack"}, calls[0].answer)
	require.Equal(t, workflows.PhaseRejected, hs.releases.phase(releaseID))
	require.Equal(t, "the legacy DNS is still in use", hs.releases.releases[releaseID].status.Message)
	msgs := hs.ephemeralsTo(t, "U0APPROVER")
	require.Len(t, msgs, 1)
	require.Contains(t, msgs[0], "You rejected gate before-prod")

	// The same submission again (Slack retry) does nothing more.
	require.Equal(t, http.StatusOK, submit("the legacy DNS is still in use", "V0001"))
	require.Len(t, hs.releases.answers(), 1)
}

func TestEmptyReasonKeepsModalOpen(t *testing.T) {
	hs := newHarness(t)
	body := form(map[string]any{
		"type": "view_submission", "user": map[string]any{"id": "U0APPROVER", "name": "alice"},
		"view": map[string]any{"id": "V1", "callback_id": keelslack.CallbackRejectReason,
			"private_metadata": `{"r":"` + releaseID + `","g":"` + gateName + `","c":"` + channelID + `"}`,
			"state":            map[string]any{"values": map[string]any{}}},
	})
	req, _ := http.NewRequest(http.MethodPost, hs.srv.URL, strings.NewReader(body))
	req.Header = sign(secret, time.Now().Unix(), body)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	require.Equal(t, "errors", out["response_action"])
	require.Contains(t, out["errors"], keelslack.BlockReason)
}

func TestTemporalDownLetsTheUserClickAgain(t *testing.T) {
	hs := newHarness(t)
	hs.releases.fail = &control.Error{Kind: control.ErrUnavailable, Message: "cannot reach Temporal at localhost:7233"}
	payload := click("U0APPROVER", "alice", keelslack.ActionApprove, "1700000103.000100", thisGate)
	require.Equal(t, http.StatusOK, hs.sendSigned(t, payload))
	msgs := hs.ephemeralsTo(t, "U0APPROVER")
	require.Len(t, msgs, 1)
	require.Contains(t, msgs[0], "did not reach it: cannot reach Temporal")

	hs.releases.fail = nil
	body := form(payload) // delivered again, signed anew
	require.Equal(t, http.StatusOK, hs.send(t, body, sign(secret, time.Now().Unix()+1, body)))
	require.Len(t, hs.releases.answers(), 2, "a failed delivery is not taken for a duplicate")
	require.Equal(t, workflows.PhaseDeploying, hs.releases.phase(releaseID))
}

func TestOnlyPost(t *testing.T) {
	hs := newHarness(t)
	resp, err := http.Get(hs.srv.URL)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}
