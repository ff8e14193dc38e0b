package slack_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	keelslack "github.com/keelson-dev/keelson/activities/slack"
	"github.com/keelson-dev/keelson/activities/slack/slackfake"
)

const channel = "#releases"

func setup(t *testing.T, token string) (*slackfake.Workspace, *keelslack.Activities, func() *testsuite.TestActivityEnvironment) {
	t.Helper()
	ws := slackfake.New()
	t.Cleanup(ws.Close)
	a := &keelslack.Activities{API: ws.Client(token), UIBaseURL: "http://localhost:8233/namespaces/default"}
	var suite testsuite.WorkflowTestSuite
	newEnv := func() *testsuite.TestActivityEnvironment {
		env := suite.NewTestActivityEnvironment()
		env.RegisterActivity(a)
		return env
	}
	return ws, a, newEnv
}

func gate() keelslack.GateMessage {
	return keelslack.GateMessage{
		Channel:     channel,
		ReleaseID:   "release-shop-1.4.2",
		Application: "shop",
		Version:     "1.4.2",
		Gate:        "before-prod",
		Wave:        "prod",
		Regions: []keelslack.RegionPlan{
			{Region: "eu-west-1", ChartFrom: "shop-1.4.1", ChartTo: "shop-1.4.2",
				Terraform: &keelslack.TerraformSummary{Adds: 1, Changes: 1, Destroys: 2,
					Added: []string{"terraform_data.queue"}, Changed: []string{"terraform_data.config"},
					Destroyed: []string{"terraform_data.old_bucket", "terraform_data.legacy_dns"}}},
			{Region: "us-east-1", ChartFrom: "shop-1.4.1", ChartTo: "shop-1.4.2",
				Terraform: &keelslack.TerraformSummary{}},
		},
		Approvers:      []string{"U0APPROVER", "alice"},
		ApproverGroups: []string{"S0RELEASE"},
		Deadline:       time.Date(2026, 11, 21, 18, 0, 0, 0, time.UTC),
	}
}

func post(t *testing.T, env *testsuite.TestActivityEnvironment, a *keelslack.Activities, in keelslack.GateMessage) keelslack.MessageRef {
	t.Helper()
	v, err := env.ExecuteActivity(a.PostGate, in)
	require.NoError(t, err)
	var ref keelslack.MessageRef
	require.NoError(t, v.Get(&ref))
	require.False(t, ref.Empty())
	return ref
}

// blockText flattens a message's blocks to the text a person reads.
func blockText(t *testing.T, blocks slack.Blocks) string {
	t.Helper()
	b, err := json.Marshal(blocks)
	require.NoError(t, err)
	var raw []any
	require.NoError(t, json.Unmarshal(b, &raw))
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if s, ok := v["text"].(string); ok {
				out = append(out, s)
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(raw)
	return strings.Join(out, "\n")
}

func actions(blocks slack.Blocks) *slack.ActionBlock {
	for _, b := range blocks.BlockSet {
		if ab, ok := b.(*slack.ActionBlock); ok {
			return ab
		}
	}
	return nil
}

func TestPostGateShowsPlanDestroysFirstAndButtons(t *testing.T) {
	ws, a, newEnv := setup(t, "xoxb-good")
	ref := post(t, newEnv(), a, gate())

	msgs := ws.Messages(channel)
	require.Len(t, msgs, 1)
	m := msgs[0]
	require.Equal(t, ref.TS, m.TS)
	require.Equal(t, slackfake.ChannelID(channel), ref.Channel, "the ref must hold the channel id, which chat.update needs")
	require.True(t, strings.HasPrefix(m.Text, "WARNING: DESTROYS 2 resources"), "notification text: %q", m.Text)

	// The destroy warning is the block right under the header, naming every
	// destroyed address.
	require.GreaterOrEqual(t, len(m.Blocks.BlockSet), 4)
	_, isHeader := m.Blocks.BlockSet[0].(*slack.HeaderBlock)
	require.True(t, isHeader)
	warn, ok := m.Blocks.BlockSet[1].(*slack.SectionBlock)
	require.True(t, ok)
	require.Equal(t, "keelson_destroys", warn.BlockID)
	require.Contains(t, warn.Text.Text, "DESTROY 2 resources")
	require.Contains(t, warn.Text.Text, "`terraform_data.old_bucket`")
	require.Contains(t, warn.Text.Text, "`terraform_data.legacy_dns`")

	text := blockText(t, m.Blocks)
	for _, want := range []string{"shop", "1.4.2", "prod", "eu-west-1, us-east-1",
		"1 to add, 1 to change, 2 to destroy", "0 to add, 0 to change, 0 to destroy",
		"shop-1.4.1 → shop-1.4.2", "<@U0APPROVER>", "alice", "<!subteam^S0RELEASE>",
		"<!date^" + "1795284000", "http://localhost:8233/namespaces/default/workflows/release-shop-1.4.2"} {
		require.Contains(t, text, want)
	}

	ab := actions(m.Blocks)
	require.NotNil(t, ab, "an open gate has buttons")
	require.Equal(t, keelslack.BlockGateActions, ab.BlockID)
	require.Len(t, ab.Elements.ElementSet, 2)
	approve := ab.Elements.ElementSet[0].(*slack.ButtonBlockElement)
	reject := ab.Elements.ElementSet[1].(*slack.ButtonBlockElement)
	require.Equal(t, keelslack.ActionApprove, approve.ActionID)
	require.Equal(t, keelslack.ActionReject, reject.ActionID)
	ga, err := keelslack.DecodeAction(approve.Value)
	require.NoError(t, err)
	require.Equal(t, keelslack.GateAction{ReleaseID: "release-shop-1.4.2", Gate: "before-prod"}, ga)
}

func TestPostGateWithoutDestroysHasNoWarning(t *testing.T) {
	ws, a, newEnv := setup(t, "xoxb-good")
	g := gate()
	g.Regions[0].Terraform = &keelslack.TerraformSummary{Adds: 1}
	post(t, newEnv(), a, g)
	m := ws.Messages(channel)[0]
	require.NotContains(t, blockText(t, m.Blocks), "DESTROY")
	require.False(t, strings.HasPrefix(m.Text, "WARNING"))
}

func TestPostGateAskingAgainSaysWhyFirst(t *testing.T) {
	ws, a, newEnv := setup(t, "xoxb-good")
	g := gate()
	g.Note = "the plan changed after approval and does more than what was approved: eu-west-1: replaces terraform_data.network (the approved plan did not)"
	post(t, newEnv(), a, g)
	m := ws.Messages(channel)[0]
	note, ok := m.Blocks.BlockSet[1].(*slack.SectionBlock)
	require.True(t, ok)
	require.Equal(t, "keelson_note", note.BlockID, "why the gate asks again comes right under the header")
	require.Contains(t, note.Text.Text, "replaces terraform_data.network")
	warn, ok := m.Blocks.BlockSet[3].(*slack.SectionBlock)
	require.True(t, ok)
	require.Equal(t, "keelson_destroys", warn.BlockID, "then the destroys")
}

func TestCloseGateUpdatesInPlaceWithoutButtons(t *testing.T) {
	ws, a, newEnv := setup(t, "xoxb-good")
	g := gate()
	ref := post(t, newEnv(), a, g)

	at := time.Date(2026, 11, 21, 17, 3, 0, 0, time.UTC)
	_, err := newEnv().ExecuteActivity(a.CloseGate, keelslack.CloseGateInput{
		Ref: ref, Message: g, Outcome: keelslack.OutcomeRejected,
		By: "bob", ByID: "U0BOB00001", Via: "slack", At: at, Reason: "destroys the legacy DNS",
	})
	require.NoError(t, err)

	msgs := ws.Messages(channel)
	require.Len(t, msgs, 1, "closing updates the message, it does not post another")
	m := msgs[0]
	require.Equal(t, ref.TS, m.TS)
	require.Equal(t, 1, m.Updates)
	require.Nil(t, actions(m.Blocks), "a closed gate has no buttons")
	text := blockText(t, m.Blocks)
	require.Contains(t, text, "*Rejected* by <@U0BOB00001> via slack at <!date^1795280580")
	require.Contains(t, text, "destroys the legacy DNS")
	require.Contains(t, text, "terraform_data.old_bucket", "the closed message still shows what the gate was about")
	require.Contains(t, m.Text, "rejected by bob")
	require.Equal(t, 1, ws.Calls("chat.postMessage"))
}

func TestCloseGateRefusesUnknownOutcome(t *testing.T) {
	_, a, newEnv := setup(t, "xoxb-good")
	_, err := newEnv().ExecuteActivity(a.CloseGate, keelslack.CloseGateInput{
		Ref: keelslack.MessageRef{Channel: "C1", TS: "1.1"}, Message: gate(), Outcome: "maybe"})
	requireAppError(t, err, keelslack.ErrBadInput, true)
}

// A retried PostGate (the worker died after posting, before completing)
// finds the message in its heartbeat details and updates it.
func TestPostGateRetryUpdatesInsteadOfPostingAgain(t *testing.T) {
	ws, a, newEnv := setup(t, "xoxb-good")
	g := gate()
	first := post(t, newEnv(), a, g)

	retry := newEnv()
	retry.SetHeartbeatDetails(first)
	g.Deadline = g.Deadline.Add(time.Hour)
	second := post(t, retry, a, g)

	require.Equal(t, first, second)
	require.Equal(t, 1, ws.Calls("chat.postMessage"))
	msgs := ws.Messages(channel)
	require.Len(t, msgs, 1)
	require.Equal(t, 1, msgs[0].Updates)
	require.Contains(t, blockText(t, msgs[0].Blocks), "<!date^1795287600", "the retry wrote the new deadline")
}

// The workflow can also hand the ref back (an escalation extends the gate).
func TestPostGateWithRefUpdatesInPlace(t *testing.T) {
	ws, a, newEnv := setup(t, "xoxb-good")
	g := gate()
	ref := post(t, newEnv(), a, g)
	g.Ref, g.Escalated, g.Escalation = &ref, true, "S0ONCALL00"
	again := post(t, newEnv(), a, g)
	require.Equal(t, ref, again)
	require.Equal(t, 1, ws.Calls("chat.postMessage"))
	m, _ := ws.Message(ref.Channel, ref.TS)
	require.NotNil(t, actions(m.Blocks), "an escalated gate is still open")
	require.Contains(t, blockText(t, m.Blocks), "Escalated to <!subteam^S0ONCALL00>")
}

func TestPostGatePostsAgainWhenTheMessageWasDeleted(t *testing.T) {
	ws, a, newEnv := setup(t, "xoxb-good")
	env := newEnv()
	env.SetHeartbeatDetails(keelslack.MessageRef{Channel: slackfake.ChannelID(channel), TS: "1600000000.000001"})
	ref := post(t, env, a, gate())
	require.NotEqual(t, "1600000000.000001", ref.TS)
	require.Len(t, ws.Messages(channel), 1)
}

func TestNotifyThreadAndParentStatus(t *testing.T) {
	ws, a, newEnv := setup(t, "xoxb-good")
	var parent keelslack.MessageRef
	v, err := newEnv().ExecuteActivity(a.Notify, keelslack.NotifyInput{Channel: channel, ReleaseID: "release-shop-1.4.2",
		Application: "shop", Version: "1.4.2", Text: "Release of shop 1.4.2 started by ci"})
	require.NoError(t, err)
	require.NoError(t, v.Get(&parent))

	steps := []keelslack.NotifyInput{
		{Text: "Wave canary started"},
		{Text: "Region eu-west-1 done"},
		{Text: ":x: us-east-1: health check failed", AlsoToChannel: true},
		{Text: ":rewind: rolling back: us-east-1", AlsoToChannel: true},
	}
	for _, s := range steps {
		s.Channel, s.ParentTS, s.ReleaseID = parent.Channel, parent.TS, "release-shop-1.4.2"
		_, err := newEnv().ExecuteActivity(a.Notify, s)
		require.NoError(t, err)
	}
	_, err = newEnv().ExecuteActivity(a.UpdateParent, keelslack.UpdateParentInput{Ref: parent, ReleaseID: "release-shop-1.4.2",
		Application: "shop", Version: "1.4.2", Phase: "rolled-back", Text: "us-east-1 failed its health check"})
	require.NoError(t, err)

	msgs := ws.Messages(channel)
	require.Len(t, msgs, 1+len(steps), "one parent and one reply per step")
	require.Equal(t, parent.TS, msgs[0].TS)
	require.Empty(t, msgs[0].ThreadTS)
	for i, s := range steps {
		m := msgs[i+1]
		require.Equal(t, parent.TS, m.ThreadTS, "step %q is a reply in the release's thread", s.Text)
		require.Equal(t, s.Text, m.Text)
		require.Equal(t, s.AlsoToChannel, m.Broadcast, "only failures and rollbacks go to the channel: %q", s.Text)
	}
	require.Equal(t, 1, msgs[0].Updates)
	require.Contains(t, msgs[0].Text, "shop 1.4.2: rolled-back - us-east-1 failed its health check")
	require.Contains(t, blockText(t, msgs[0].Blocks), "/workflows/release-shop-1.4.2")
}

func TestNotifyRetryDoesNotPostTwice(t *testing.T) {
	ws, a, newEnv := setup(t, "xoxb-good")
	in := keelslack.NotifyInput{Channel: channel, Application: "shop", Version: "1.4.2", Text: "started"}
	v, err := newEnv().ExecuteActivity(a.Notify, in)
	require.NoError(t, err)
	var parent keelslack.MessageRef
	require.NoError(t, v.Get(&parent))

	reply := keelslack.NotifyInput{Channel: parent.Channel, ParentTS: parent.TS, Text: "Wave prod started"}
	v, err = newEnv().ExecuteActivity(a.Notify, reply)
	require.NoError(t, err)
	var first keelslack.MessageRef
	require.NoError(t, v.Get(&first))

	retry := newEnv()
	retry.SetHeartbeatDetails(first)
	v, err = retry.ExecuteActivity(a.Notify, reply)
	require.NoError(t, err)
	var second keelslack.MessageRef
	require.NoError(t, v.Get(&second))
	require.Equal(t, first, second)
	require.Len(t, ws.Messages(channel), 2)
}

func TestRemindMentionsInGateThread(t *testing.T) {
	ws, a, newEnv := setup(t, "xoxb-good")
	ws.AddGroup("S0ONCALL00", "oncall", "U0CAROL001")
	ref := post(t, newEnv(), a, gate())
	_, err := newEnv().ExecuteActivity(a.Remind, keelslack.RemindInput{Gate: ref,
		Mention: []string{"U0APPROVER", "@oncall", "alice"}, Text: "gate before-prod escalated",
		Deadline: time.Date(2026, 11, 21, 19, 0, 0, 0, time.UTC)})
	require.NoError(t, err)
	msgs := ws.Messages(channel)
	require.Len(t, msgs, 2)
	r := msgs[1]
	require.Equal(t, ref.TS, r.ThreadTS)
	require.True(t, r.Broadcast)
	require.True(t, strings.HasPrefix(r.Text, "<@U0APPROVER> <!subteam^S0ONCALL00> @alice gate before-prod escalated (closes <!date^1795287600"), r.Text)
	require.Equal(t, 1, ws.Calls("usergroups.list"), "user groups are listed once for all the mentions")
}

func TestErrorsAreClassified(t *testing.T) {
	t.Run("invalid auth is not retried", func(t *testing.T) {
		_, a, newEnv := setup(t, slackfake.BadToken)
		_, err := newEnv().ExecuteActivity(a.PostGate, gate())
		requireAppError(t, err, keelslack.ErrInvalidAuth, true)
	})
	t.Run("missing channel is not retried", func(t *testing.T) {
		ws, a, newEnv := setup(t, "xoxb-good")
		ws.RemoveChannel(channel)
		_, err := newEnv().ExecuteActivity(a.Notify, keelslack.NotifyInput{Channel: channel, Text: "hello"})
		requireAppError(t, err, keelslack.ErrChannelNotFound, true)
	})
	t.Run("rate limit retries after Retry-After", func(t *testing.T) {
		ws, a, newEnv := setup(t, "xoxb-good")
		ws.RateLimitNext("chat.postMessage", 7)
		_, err := newEnv().ExecuteActivity(a.PostGate, gate())
		appErr := requireAppError(t, err, keelslack.ErrRateLimited, false)
		require.Equal(t, 7*time.Second, appErr.NextRetryDelay())
		require.Empty(t, ws.Messages(channel))
	})
	t.Run("server errors are retried", func(t *testing.T) {
		ws, a, newEnv := setup(t, "xoxb-good")
		ws.FailNext("chat.postMessage", "internal_error")
		_, err := newEnv().ExecuteActivity(a.PostGate, gate())
		require.Error(t, err)
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) {
			require.False(t, appErr.NonRetryable(), "internal_error must be retried: %v", err)
		}
	})
	t.Run("no channel is bad input", func(t *testing.T) {
		_, a, newEnv := setup(t, "xoxb-good")
		g := gate()
		g.Channel = ""
		_, err := newEnv().ExecuteActivity(a.PostGate, g)
		requireAppError(t, err, keelslack.ErrBadInput, true)
	})
}

func requireAppError(t *testing.T, err error, typ string, nonRetryable bool) *temporal.ApplicationError {
	t.Helper()
	require.Error(t, err)
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(err, &appErr), "want an application error, got %T: %v", err, err)
	require.Equal(t, typ, appErr.Type(), "%v", err)
	require.Equal(t, nonRetryable, appErr.NonRetryable(), "%v", err)
	return appErr
}
