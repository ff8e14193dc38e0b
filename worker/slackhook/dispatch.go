package slackhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/slack-go/slack"

	keelslack "github.com/keelson-dev/keelson/activities/slack"
	"github.com/keelson-dev/keelson/control"
	"github.com/keelson-dev/keelson/workflows"
)

// modalMeta is the reject modal's private metadata: the gate, and where to
// answer the user once the reason is submitted.
type modalMeta struct {
	keelslack.GateAction
	Channel     string `json:"c,omitempty"`
	ResponseURL string `json:"u,omitempty"`
}

// click is one answer to a gate, taken from a callback.
type click struct {
	action   keelslack.GateAction
	approve  bool
	userID   string
	userName string
	// team is the Slack team of userID, which the bridge attests with it.
	team        string
	channel     string
	responseURL string
	reason      string
	// key identifies this click across deliveries: Slack sends the same
	// action_ts (or view id) again when it redelivers.
	key string
}

// Dispatch handles one interaction, from HTTP or Socket Mode. It returns
// what to answer Slack at once (nil for an empty 200) or an error for a
// payload that cannot be a Keelson interaction. The answer itself (the
// Update, the reply to the user) runs after Dispatch returns, because Slack
// wants an answer within three seconds.
func (h *Handler) Dispatch(ctx context.Context, ic slack.InteractionCallback) (any, error) {
	switch ic.Type {
	case slack.InteractionTypeBlockActions:
		return nil, h.blockActions(ic)
	case slack.InteractionTypeViewSubmission:
		return h.viewSubmission(ic)
	case slack.InteractionTypeViewClosed:
		return nil, nil
	default:
		h.log.Debug("slack interaction ignored", "type", ic.Type, "user", ic.User.ID)
		return nil, nil
	}
}

func (h *Handler) blockActions(ic slack.InteractionCallback) error {
	if ic.User.ID == "" {
		return errors.New("block_actions without a user")
	}
	for _, act := range ic.ActionCallback.BlockActions {
		if act == nil || (act.ActionID != keelslack.ActionApprove && act.ActionID != keelslack.ActionReject) {
			continue // someone else's button in the same message
		}
		ga, err := keelslack.DecodeAction(act.Value)
		if err != nil {
			return err
		}
		actionTS := act.ActionTs
		if actionTS == "" {
			actionTS = ic.ActionTs
		}
		if actionTS == "" {
			actionTS = ic.TriggerID
		}
		c := click{
			action:      ga,
			approve:     act.ActionID == keelslack.ActionApprove,
			userID:      ic.User.ID,
			userName:    userName(ic.User),
			team:        teamOf(ic),
			channel:     ic.Channel.ID,
			responseURL: ic.ResponseURL,
			key:         strings.Join([]string{"slack", ic.User.ID, act.ActionID, actionTS, ga.ReleaseID, ga.Gate}, "/"),
		}
		if c.channel == "" {
			c.channel = ic.Container.ChannelID
		}
		if !h.clicks.add(c.key) {
			h.log.Info("slack click delivered again: ignored", "release", ga.ReleaseID, "gate", ga.Gate, "user", c.userID, "action", act.ActionID)
			continue
		}
		if c.approve {
			h.answerNow(c)
		} else {
			h.goAskReason(c, ic.TriggerID)
		}
	}
	return nil
}

func (h *Handler) viewSubmission(ic slack.InteractionCallback) (any, error) {
	if ic.View.CallbackID != keelslack.CallbackRejectReason {
		return nil, nil
	}
	var meta modalMeta
	if err := json.Unmarshal([]byte(ic.View.PrivateMetadata), &meta); err != nil || meta.ReleaseID == "" {
		return nil, fmt.Errorf("reject modal without its gate: %q", ic.View.PrivateMetadata)
	}
	if ic.User.ID == "" {
		return nil, errors.New("view_submission without a user")
	}
	reason := ""
	if ic.View.State != nil {
		reason = strings.TrimSpace(ic.View.State.Values[keelslack.BlockReason][keelslack.ActionReason].Value)
	}
	if reason == "" {
		// Shown under the input; the modal stays open.
		return slack.NewErrorsViewSubmissionResponse(map[string]string{keelslack.BlockReason: "Say why the gate is rejected."}), nil
	}
	c := click{
		action:      meta.GateAction,
		userID:      ic.User.ID,
		userName:    userName(ic.User),
		team:        teamOf(ic),
		channel:     meta.Channel,
		responseURL: meta.ResponseURL,
		reason:      reason,
		key:         "slack-view/" + ic.View.ID + "/" + ic.View.Hash,
	}
	if ic.View.ID == "" {
		c.key = "slack-view/" + ic.User.ID + "/" + meta.ReleaseID + "/" + meta.Gate + "/" + reason
	}
	if !h.clicks.add(c.key) {
		h.log.Info("slack reject submission delivered again: ignored", "release", c.action.ReleaseID, "gate", c.action.Gate, "user", c.userID)
		return nil, nil
	}
	h.answerNow(c)
	return nil, nil // an empty 200 closes the modal
}

// answerSlack bounds how long a click waits for its Update before Slack
// gets its 200: Slack gives up on a callback after three seconds.
const answerSlack = 2500 * time.Millisecond

// answerNow sends the Update before Slack's request is acknowledged: once
// Slack has its 200 it never sends the click again, so an answer still in
// a goroutine when the worker dies would be lost. Without a 200 (the
// worker died first), Slack retries and the next worker answers.
func (h *Handler) answerNow(c click) {
	h.wg.Add(1)
	defer h.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), min(h.timeout, answerSlack))
	defer cancel()
	h.answer(ctx, c)
}

func (h *Handler) goAskReason(c click, triggerID string) {
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
		defer cancel()
		h.askReason(ctx, c, triggerID)
	}()
}

// answer sends the approve or reject Update and tells the user how it went.
func (h *Handler) answer(ctx context.Context, c click) {
	verb := "reject"
	if c.approve {
		verb = "approve"
	}
	log := h.log.With("release", c.action.ReleaseID, "gate", c.action.Gate, "user", c.userName, "userId", c.userID, "answer", verb)

	st, err := h.releases.Status(ctx, c.action.ReleaseID)
	if err != nil && (errors.Is(err, control.ErrNotFound) || errors.Is(err, control.ErrFinished)) {
		h.refuse(ctx, log, c, err, h.explain(c, err))
		return
	}
	if err != nil {
		// The Update is the authority; a status that cannot be read only
		// means user groups cannot be resolved for it.
		log.Warn("slack answer: cannot read release status; answering without group memberships", "err", err)
	}
	if st != nil {
		if msg := closedGate(c, st); msg != "" {
			h.refuse(ctx, log, c, errors.New("gate not open"), msg)
			return
		}
	}
	a := workflows.GateAnswer{Gate: c.action.Gate, User: c.userName, UserID: c.userID, Team: c.team, Reason: c.reason, Via: "slack"}
	if st != nil {
		var groups []string
		if st.Gate != nil {
			groups = append(groups, st.Gate.Groups...)
		}
		if h.policyGroups != nil {
			for _, g := range h.policyGroups(st.Application) {
				if !slices.Contains(groups, g) {
					groups = append(groups, g)
				}
			}
		}
		a.Groups = h.groups.memberOf(ctx, log, c.userID, groups)
	}
	err = h.releases.Answer(ctx, c.action.ReleaseID, c.approve, a, control.WithIdempotencyKey(c.key))
	switch {
	case err == nil:
		log.Info("slack answer accepted", "groups", a.Groups)
		done := "approved"
		if !c.approve {
			done = "rejected"
		}
		h.tell(ctx, log, c, fmt.Sprintf(":white_check_mark: You %s gate %s of release %s.", done, gateName(c), c.action.ReleaseID))
	case errors.Is(err, control.ErrRefused), errors.Is(err, control.ErrNotFound), errors.Is(err, control.ErrFinished):
		h.refuse(ctx, log, c, err, h.explain(c, err))
	default:
		// Temporal unreachable or no worker: the user may click again, and
		// that click must not be taken for a duplicate.
		h.clicks.forget(c.key)
		log.Error("slack answer failed", "err", err)
		h.tell(ctx, log, c, fmt.Sprintf(":warning: Your answer to gate %s of release %s did not reach it: %s. Try again in a moment.", gateName(c), c.action.ReleaseID, oneLine(err)))
	}
}

// askReason opens the modal asking why the gate is rejected, unless the
// gate is no longer open.
func (h *Handler) askReason(ctx context.Context, c click, triggerID string) {
	log := h.log.With("release", c.action.ReleaseID, "gate", c.action.Gate, "user", c.userName, "userId", c.userID, "answer", "reject")
	st, err := h.releases.Status(ctx, c.action.ReleaseID)
	switch {
	case err != nil && (errors.Is(err, control.ErrNotFound) || errors.Is(err, control.ErrFinished)):
		h.refuse(ctx, log, c, err, h.explain(c, err))
		return
	case err != nil:
		log.Warn("slack reject: cannot read release status; asking for the reason anyway", "err", err)
	case st != nil:
		if msg := closedGate(c, st); msg != "" {
			h.refuse(ctx, log, c, errors.New("gate not open"), msg)
			return
		}
	}
	meta, _ := json.Marshal(modalMeta{GateAction: c.action, Channel: c.channel, ResponseURL: c.responseURL})
	if len(meta) > 3000 { // Slack's limit on private_metadata
		meta, _ = json.Marshal(modalMeta{GateAction: c.action, Channel: c.channel})
	}
	input := slack.NewPlainTextInputBlockElement(slack.NewTextBlockObject(slack.PlainTextType, "Why is it rejected?", false, false), keelslack.ActionReason)
	input.Multiline = true
	view := slack.ModalViewRequest{
		Type:            slack.VTModal,
		CallbackID:      keelslack.CallbackRejectReason,
		PrivateMetadata: string(meta),
		Title:           slack.NewTextBlockObject(slack.PlainTextType, "Reject gate", false, false),
		Submit:          slack.NewTextBlockObject(slack.PlainTextType, "Reject", false, false),
		Close:           slack.NewTextBlockObject(slack.PlainTextType, "Cancel", false, false),
		Blocks: slack.Blocks{BlockSet: []slack.Block{
			slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType,
				fmt.Sprintf("Reject gate *%s* of release `%s`? The release stops and your reason goes into its result.", gateName(c), c.action.ReleaseID), false, false), nil, nil),
			slack.NewInputBlock(keelslack.BlockReason, slack.NewTextBlockObject(slack.PlainTextType, "Reason", false, false), nil, input),
		}},
	}
	if _, err := h.api.OpenViewContext(ctx, triggerID, view); err != nil {
		// The trigger expires after three seconds; the user clicks again.
		h.clicks.forget(c.key)
		log.Error("slack reject: cannot open the reason modal", "err", err)
		h.tell(ctx, log, c, fmt.Sprintf(":warning: Could not open the rejection form (%s). Click Reject again, or run `keelson reject %s --reason ...`.", oneLine(err), c.action.ReleaseID))
		return
	}
	log.Info("slack reject: reason modal opened")
}

// closedGate explains, from the release's status, why a click cannot
// answer its gate; empty when the gate is open.
func closedGate(c click, st *workflows.Status) string {
	if st.Phase.Done() {
		return fmt.Sprintf("Release %s has already finished (%s); gate %s cannot be answered any more.", c.action.ReleaseID, st.Phase, gateName(c))
	}
	if st.Gate != nil && (c.action.Gate == "" || st.Gate.Name == c.action.Gate) {
		return ""
	}
	for i := len(st.Approvals) - 1; i >= 0; i-- {
		a := st.Approvals[i]
		if a.Gate != c.action.Gate {
			continue
		}
		switch {
		case a.TimedOut:
			return fmt.Sprintf("Gate %s of release %s is closed: it timed out.", gateName(c), c.action.ReleaseID)
		case a.Approved:
			return fmt.Sprintf("Gate %s of release %s is closed: %s approved it.", gateName(c), c.action.ReleaseID, who(a))
		default:
			return fmt.Sprintf("Gate %s of release %s is closed: %s rejected it.", gateName(c), c.action.ReleaseID, who(a))
		}
	}
	return fmt.Sprintf("Gate %s of release %s is not open (the release is %s).", gateName(c), c.action.ReleaseID, st.Phase)
}

// explain turns a release-side error into what the user reads.
func (h *Handler) explain(c click, err error) string {
	switch {
	case errors.Is(err, control.ErrNotFound):
		return fmt.Sprintf("Release %s was not found: it may have been deleted, or this message belongs to another Keelson.", c.action.ReleaseID)
	case errors.Is(err, control.ErrFinished):
		return fmt.Sprintf("Release %s has already finished; gate %s cannot be answered any more.", c.action.ReleaseID, gateName(c))
	case errors.Is(err, control.ErrRefused):
		reason := oneLine(err)
		var ce *control.Error
		if errors.As(err, &ce) && ce.Reason != "" {
			reason = ce.Reason
		}
		return fmt.Sprintf(":no_entry: Your answer to gate %s of release %s was refused: %s", gateName(c), c.action.ReleaseID, reason)
	}
	return oneLine(err)
}

// refuse logs a refused answer, the only record of it (a refused Update
// leaves no event in history), and tells the user.
func (h *Handler) refuse(ctx context.Context, log interface {
	Warn(string, ...any)
}, c click, err error, msg string) {
	log.Warn("slack answer refused", "reason", msg, "err", err)
	h.tell(ctx, h.log, c, msg)
}

// tell sends the user an ephemeral message in the gate's channel, or
// through the interaction's response_url when the channel is unknown.
func (h *Handler) tell(ctx context.Context, log interface {
	Error(string, ...any)
}, c click, text string) {
	var err error
	if c.channel != "" {
		_, err = h.api.PostEphemeralContext(ctx, c.channel, c.userID, slack.MsgOptionText(text, false))
	} else if c.responseURL != "" {
		_, _, err = h.api.PostMessageContext(ctx, "", slack.MsgOptionText(text, false),
			slack.MsgOptionResponseURL(c.responseURL, slack.ResponseTypeEphemeral))
	} else {
		err = errors.New("no channel or response_url to answer in")
	}
	if err != nil {
		log.Error("slack: cannot tell the user", "user", c.userID, "text", text, "err", err)
	}
}

func userName(u slack.User) string {
	if u.Name != "" {
		return u.Name
	}
	return u.ID
}

func who(a workflows.Approval) string {
	if a.UserID != "" {
		return "<@" + a.UserID + ">"
	}
	return a.User
}

func gateName(c click) string {
	if c.action.Gate == "" {
		return "(open gate)"
	}
	return c.action.Gate
}

func oneLine(err error) string {
	return strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
}

// teamOf is the Slack team of the user who interacted: the user's own team
// when Slack says it (Enterprise Grid), else the workspace's.
func teamOf(ic slack.InteractionCallback) string {
	if ic.User.TeamID != "" {
		return ic.User.TeamID
	}
	return ic.Team.ID
}
