// Package slack posts a release's gate messages and progress log to Slack
// with github.com/slack-go/slack: a Block Kit approval message per gate
// (updated in place when the gate closes), one parent message per release
// with every step as a thread reply, reminders and escalation mentions.
//
// Every method is idempotent across activity retries: the message a method
// posted is recorded in the activity's heartbeat details straight after the
// post, and a retried attempt updates that message instead of posting again.
package slack

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/slack-go/slack"
	"go.temporal.io/sdk/activity"
)

// Error types of non-retryable failures, for the workflow's errors.As
// (temporal.ApplicationError.Type()).
const (
	// ErrInvalidAuth: the bot token is wrong, revoked or lacks a scope.
	ErrInvalidAuth = "SlackInvalidAuth"
	// ErrChannelNotFound: the channel does not exist, is archived, or the
	// bot is not in it. The release file names the channel, so only a person
	// can fix it.
	ErrChannelNotFound = "SlackChannelNotFound"
	// ErrBadInput: the input cannot make a valid message (no channel, no
	// release id, a message Slack refuses as malformed).
	ErrBadInput = "SlackBadInput"
	// ErrRateLimited is retryable; its NextRetryDelay is Slack's Retry-After.
	ErrRateLimited = "SlackRateLimited"
)

// Block and action ids of the gate message. The interaction handler
// (worker/slackhook) dispatches on the action ids and decodes the value
// with DecodeAction.
const (
	BlockGateActions = "keelson_gate_actions"
	ActionApprove    = "keelson_gate_approve"
	ActionReject     = "keelson_gate_reject"
	// CallbackRejectReason is the callback id of the modal asking why a
	// gate is rejected; its private metadata is the encoded GateAction.
	CallbackRejectReason = "keelson_gate_reject_reason"
	// BlockReason and ActionReason name the modal's reason input.
	BlockReason  = "keelson_reason"
	ActionReason = "keelson_reason_input"
)

// Gate outcomes for CloseGate.
const (
	OutcomeApproved  = "approved"
	OutcomeRejected  = "rejected"
	OutcomeTimedOut  = "timed out"
	OutcomeEscalated = "escalated"
)

// Activities posts to Slack. The worker registers one value; workflows refer
// to its methods through a nil pointer.
type Activities struct {
	API *slack.Client
	// UIBaseURL is the Temporal Web UI's namespace URL, for example
	// http://localhost:8233/namespaces/default; a release links to
	// UIBaseURL/workflows/RELEASE_ID. Empty leaves the link out.
	UIBaseURL string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// MessageRef names a posted message: its channel id and timestamp.
type MessageRef struct {
	Channel string `json:"channel"`
	TS      string `json:"ts"`
}

// Empty reports whether the ref names no message.
func (r *MessageRef) Empty() bool { return r == nil || r.Channel == "" || r.TS == "" }

// TerraformSummary is a region's plan as the approver sees it. It has the
// same fields as terraform.Summary, so the workflow converts one to the
// other with a plain conversion: slack.TerraformSummary(plan.Summary).
type TerraformSummary struct {
	Adds      int      `json:"adds"`
	Changes   int      `json:"changes"`
	Destroys  int      `json:"destroys"`
	Added     []string `json:"added,omitempty"`
	Changed   []string `json:"changed,omitempty"`
	Destroyed []string `json:"destroyed,omitempty"`
}

// RegionPlan is what the gate lets happen in one region.
type RegionPlan struct {
	Region string `json:"region"`
	// Terraform is nil when the release has no Terraform stack.
	Terraform *TerraformSummary `json:"terraform,omitempty"`
	// ChartFrom is the chart version deployed now (empty on first install),
	// ChartTo the one the release deploys.
	ChartFrom string `json:"chartFrom,omitempty"`
	ChartTo   string `json:"chartTo,omitempty"`
}

// GateMessage is everything a gate's approval message shows.
type GateMessage struct {
	// Channel is the release file's notify.slack.channel (name or id).
	Channel     string       `json:"channel"`
	ReleaseID   string       `json:"releaseId"`
	Application string       `json:"application"`
	Version     string       `json:"version"`
	Gate        string       `json:"gate"`
	Wave        string       `json:"wave"`
	Regions     []RegionPlan `json:"regions"`
	// Approvers are Slack user ids (U…/W…) or user names; ApproverGroups are
	// user group ids (S…) or handles. Both empty means anyone may answer.
	Approvers      []string  `json:"approvers,omitempty"`
	ApproverGroups []string  `json:"approverGroups,omitempty"`
	Deadline       time.Time `json:"deadline"`
	// Escalated marks a gate whose first timeout passed and that now waits
	// for the escalation group until the extended Deadline.
	Escalated  bool   `json:"escalated,omitempty"`
	Escalation string `json:"escalation,omitempty"`
	// Note, when set, says why the gate asks again: the plan changed after
	// it was approved and now does more. It is shown first.
	Note string `json:"note,omitempty"`
	// URL overrides the Web UI link built from Activities.UIBaseURL.
	URL string `json:"url,omitempty"`
	// Ref, when set, is the gate's message already posted: it is updated in
	// place (after an escalation, say) instead of posting a new one.
	Ref *MessageRef `json:"ref,omitempty"`
	// ThreadTS, when set, posts the gate message as a reply in the
	// release's thread (broadcast to the channel so nobody misses it).
	ThreadTS string `json:"threadTs,omitempty"`
}

// Destroys is the number of resources the gate lets Terraform destroy.
func (g GateMessage) Destroys() int {
	n := 0
	for _, r := range g.Regions {
		if r.Terraform != nil {
			n += r.Terraform.Destroys
		}
	}
	return n
}

// GateAction is what an Approve or Reject button carries back to the
// interaction handler: which release and which gate it answers.
type GateAction struct {
	ReleaseID string `json:"r"`
	Gate      string `json:"g"`
}

// Encode is the button value (Slack allows 2,000 characters).
func (a GateAction) Encode() string {
	b, _ := json.Marshal(a) // two strings cannot fail to marshal
	return string(b)
}

// DecodeAction reads a button value or modal metadata written by Encode.
func DecodeAction(s string) (GateAction, error) {
	var a GateAction
	if err := json.Unmarshal([]byte(s), &a); err != nil {
		return GateAction{}, fmt.Errorf("decode gate action %q: %w", s, err)
	}
	if a.ReleaseID == "" {
		return GateAction{}, fmt.Errorf("decode gate action %q: no release id", s)
	}
	return a, nil
}

// CloseGateInput closes a gate's message: who answered, how and when. The
// message is rendered again from Message without the buttons, because
// chat.update replaces the whole message.
type CloseGateInput struct {
	Ref     MessageRef  `json:"ref"`
	Message GateMessage `json:"message"`
	// Outcome is one of the Outcome constants.
	Outcome string `json:"outcome"`
	// By is who answered (a user name, or a Slack user id shown as a
	// mention when it looks like one); empty for a timeout.
	By     string    `json:"by,omitempty"`
	ByID   string    `json:"byId,omitempty"`
	Via    string    `json:"via,omitempty"` // slack, cli, ui
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}

// NotifyInput is one line of a release's progress log.
type NotifyInput struct {
	Channel string `json:"channel"`
	// ParentTS is the release's parent message; empty posts the parent
	// message itself (with Text, or a header built from the release fields)
	// and returns its ref, which the workflow keeps for the next calls.
	ParentTS    string `json:"parentTs,omitempty"`
	ReleaseID   string `json:"releaseId,omitempty"`
	Application string `json:"application,omitempty"`
	Version     string `json:"version,omitempty"`
	Text        string `json:"text"`
	// AlsoToChannel broadcasts the reply to the channel (reply_broadcast):
	// for failures and rollbacks.
	AlsoToChannel bool `json:"alsoToChannel,omitempty"`
}

// UpdateParentInput rewrites the release's parent message with its overall
// status.
type UpdateParentInput struct {
	Ref         MessageRef `json:"ref"`
	ReleaseID   string     `json:"releaseId"`
	Application string     `json:"application"`
	Version     string     `json:"version"`
	// Phase is the release's phase (workflows.Phase as a string).
	Phase string `json:"phase"`
	// Text is an optional line under the status (current wave, reason).
	Text string `json:"text,omitempty"`
	URL  string `json:"url,omitempty"`
}

// RemindInput is a reminder of an open gate, or its escalation, posted in
// the gate message's thread and broadcast to the channel.
type RemindInput struct {
	// Gate is the gate's message.
	Gate MessageRef `json:"gate"`
	// Mention are user ids (U…), group ids (S…) or group handles (@name)
	// called by name: the approvers for a reminder, the escalation group
	// for an escalation.
	Mention  []string  `json:"mention,omitempty"`
	Text     string    `json:"text"`
	Deadline time.Time `json:"deadline"`
}

func (a *Activities) logger() *slog.Logger {
	if a.Logger != nil {
		return a.Logger
	}
	return slog.Default()
}

func (a *Activities) releaseURL(releaseID, override string) string {
	if override != "" {
		return override
	}
	if a.UIBaseURL == "" || releaseID == "" {
		return ""
	}
	return strings.TrimRight(a.UIBaseURL, "/") + "/workflows/" + url.PathEscape(releaseID)
}

// PostGate posts the gate's approval message, or updates it in place when
// in.Ref is set or an earlier attempt of this activity already posted it.
// It returns the message's channel id and timestamp; the workflow keeps
// them for CloseGate and Remind.
func (a *Activities) PostGate(ctx context.Context, in GateMessage) (*MessageRef, error) {
	if in.Channel == "" && in.Ref.Empty() {
		return nil, badInput("post gate: no channel")
	}
	if in.ReleaseID == "" {
		return nil, badInput("post gate: no release id")
	}
	blocks := a.gateBlocks(ctx, in, nil)
	text := gateText(in, nil)
	ref := in.Ref
	if ref.Empty() {
		ref = recordedRef(ctx)
	}
	op := fmt.Sprintf("post gate %s of %s", in.Gate, in.ReleaseID)
	if !ref.Empty() {
		updated, err := a.update(ctx, *ref, text, blocks)
		if err == nil {
			return updated, nil
		}
		if !isSlackError(err, "message_not_found") {
			return nil, classify(op, err)
		}
		// Someone deleted the message: the gate still needs one.
		a.logger().Warn("gate message gone, posting it again", "release", in.ReleaseID, "gate", in.Gate, "channel", ref.Channel, "ts", ref.TS)
	}
	opts := []slack.MsgOption{slack.MsgOptionText(text, false), slack.MsgOptionBlocks(blocks...)}
	if in.ThreadTS != "" {
		opts = append(opts, slack.MsgOptionTS(in.ThreadTS), slack.MsgOptionBroadcast())
	}
	channel := in.Channel
	if channel == "" {
		channel = ref.Channel
	}
	posted, err := a.post(ctx, channel, opts...)
	if err != nil {
		return nil, classify(op, err)
	}
	a.logger().Info("gate message posted", "release", in.ReleaseID, "gate", in.Gate, "channel", posted.Channel, "ts", posted.TS)
	return posted, nil
}

// CloseGate rewrites the gate's message with who answered, how and when,
// without the buttons, so nobody clicks a gate that is no longer open.
func (a *Activities) CloseGate(ctx context.Context, in CloseGateInput) (*MessageRef, error) {
	if in.Ref.Empty() {
		return nil, badInput("close gate: no message ref")
	}
	switch in.Outcome {
	case OutcomeApproved, OutcomeRejected, OutcomeTimedOut, OutcomeEscalated:
	default:
		return nil, badInput(fmt.Sprintf("close gate: unknown outcome %q", in.Outcome))
	}
	blocks := a.gateBlocks(ctx, in.Message, &in)
	ref, err := a.update(ctx, in.Ref, gateText(in.Message, &in), blocks)
	if err != nil {
		return nil, classify(fmt.Sprintf("close gate %s of %s", in.Message.Gate, in.Message.ReleaseID), err)
	}
	return ref, nil
}

// Notify posts one line of the release's progress log as a reply in the
// release's thread, or, with no ParentTS, the release's parent message.
// Failures and rollbacks set AlsoToChannel so the channel sees them too.
func (a *Activities) Notify(ctx context.Context, in NotifyInput) (*MessageRef, error) {
	if in.Channel == "" {
		return nil, badInput("notify: no channel")
	}
	text := in.Text
	var opts []slack.MsgOption
	if in.ParentTS == "" {
		if text == "" {
			text = fmt.Sprintf("Release %s %s", in.Application, in.Version)
		}
		opts = append(opts, slack.MsgOptionBlocks(a.parentBlocks(in.ReleaseID, in.Application, in.Version, "pending", text, "")...))
	} else {
		opts = append(opts, slack.MsgOptionTS(in.ParentTS))
		if in.AlsoToChannel {
			opts = append(opts, slack.MsgOptionBroadcast())
		}
	}
	if text == "" {
		return nil, badInput("notify: no text")
	}
	opts = append(opts, slack.MsgOptionText(text, false))
	op := fmt.Sprintf("notify %s of %s", in.Channel, in.ReleaseID)
	if prior := recordedRef(ctx); !prior.Empty() {
		// An earlier attempt posted this line; make sure it says what it
		// should and do not post it twice.
		ref, err := a.update(ctx, *prior, text, nil)
		if err == nil || !isSlackError(err, "message_not_found") {
			return ref, classify(op, err)
		}
	}
	ref, err := a.post(ctx, in.Channel, opts...)
	if err != nil {
		return nil, classify(op, err)
	}
	return ref, nil
}

// UpdateParent rewrites the release's parent message with its overall
// status, so the channel shows where every release stands without opening
// threads.
func (a *Activities) UpdateParent(ctx context.Context, in UpdateParentInput) (*MessageRef, error) {
	if in.Ref.Empty() {
		return nil, badInput("update parent: no message ref")
	}
	text := fmt.Sprintf("%s %s %s: %s", phaseEmoji(in.Phase), in.Application, in.Version, in.Phase)
	if in.Text != "" {
		text += " - " + in.Text
	}
	blocks := a.parentBlocks(in.ReleaseID, in.Application, in.Version, in.Phase, in.Text, in.URL)
	ref, err := a.update(ctx, in.Ref, text, blocks)
	if err != nil {
		return nil, classify(fmt.Sprintf("update parent of %s", in.ReleaseID), err)
	}
	return ref, nil
}

// Remind posts a reminder of an open gate, or its escalation, in the gate
// message's thread and to the channel, calling the named people and groups.
func (a *Activities) Remind(ctx context.Context, in RemindInput) (*MessageRef, error) {
	if in.Gate.Empty() {
		return nil, badInput("remind: no gate message ref")
	}
	var mentions []string
	mention := a.mentioner(ctx, true)
	for _, m := range in.Mention {
		mentions = append(mentions, mention(m))
	}
	text := in.Text
	if len(mentions) > 0 {
		text = strings.Join(mentions, " ") + " " + text
	}
	if !in.Deadline.IsZero() {
		text += " (closes " + slackDate(in.Deadline) + ")"
	}
	op := fmt.Sprintf("remind gate %s/%s", in.Gate.Channel, in.Gate.TS)
	if prior := recordedRef(ctx); !prior.Empty() {
		ref, err := a.update(ctx, *prior, text, nil)
		if err == nil || !isSlackError(err, "message_not_found") {
			return ref, classify(op, err)
		}
	}
	ref, err := a.post(ctx, in.Gate.Channel, slack.MsgOptionText(text, false), slack.MsgOptionTS(in.Gate.TS), slack.MsgOptionBroadcast())
	if err != nil {
		return nil, classify(op, err)
	}
	return ref, nil
}

// post posts a message and records its ref in the activity's heartbeat
// details at once, so a retry of this activity finds it instead of posting
// a second message.
func (a *Activities) post(ctx context.Context, channel string, opts ...slack.MsgOption) (*MessageRef, error) {
	ch, ts, err := a.API.PostMessageContext(ctx, channel, opts...)
	if err != nil {
		return nil, err
	}
	ref := &MessageRef{Channel: ch, TS: ts}
	if activity.IsActivity(ctx) {
		activity.RecordHeartbeat(ctx, *ref)
	}
	return ref, nil
}

// update replaces a message's text and, when blocks is not nil, its blocks.
func (a *Activities) update(ctx context.Context, ref MessageRef, text string, blocks []slack.Block) (*MessageRef, error) {
	opts := []slack.MsgOption{slack.MsgOptionText(text, false)}
	if blocks != nil {
		opts = append(opts, slack.MsgOptionBlocks(blocks...))
	}
	ch, ts, _, err := a.API.UpdateMessageContext(ctx, ref.Channel, ref.TS, opts...)
	if err != nil {
		return nil, err
	}
	if ch == "" {
		ch = ref.Channel
	}
	if ts == "" {
		ts = ref.TS
	}
	return &MessageRef{Channel: ch, TS: ts}, nil
}

// recordedRef is the message an earlier attempt of this activity posted.
func recordedRef(ctx context.Context) *MessageRef {
	if !activity.IsActivity(ctx) || !activity.HasHeartbeatDetails(ctx) {
		return nil
	}
	var ref MessageRef
	if err := activity.GetHeartbeatDetails(ctx, &ref); err != nil || ref.Empty() {
		return nil
	}
	return &ref
}
