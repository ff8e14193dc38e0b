// Package slackfake is a Slack workspace for tests: slack-go's slacktest
// server with the Web API methods Keelson uses that slacktest does not
// serve (chat.update, views.open, usergroups.*) or serves without keeping
// what was posted (chat.postMessage, chat.postEphemeral). Messages are kept
// per channel and timestamp so tests can read what a person would see.
package slackfake

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slacktest"
)

// BadToken is a token the workspace answers invalid_auth to.
const BadToken = "xoxb-revoked"

// Message is a message as the workspace holds it.
type Message struct {
	Channel   string
	TS        string
	ThreadTS  string
	Broadcast bool
	Text      string
	Blocks    slack.Blocks
	// Updates counts chat.update calls on the message.
	Updates int
}

// Ephemeral is a message only User saw.
type Ephemeral struct {
	Channel, User, Text string
}

// View is a modal opened with views.open.
type View struct {
	TriggerID string
	View      slack.ModalViewRequest
}

// Workspace is the fake Slack. Create it with New; Close it after.
type Workspace struct {
	Server *slacktest.Server

	mu         sync.Mutex
	seq        int
	messages   []*Message
	ephemerals []Ephemeral
	views      []View
	calls      map[string]int
	groups     []slack.UserGroup
	members    map[string][]string
	missing    map[string]bool
	failNext   map[string][]string // method -> error codes to answer, in order
	rateLimit  map[string]int      // method -> Retry-After seconds of the next call
}

// New starts a workspace. Extra binders register more endpoints (they win
// over the workspace's own for the same path).
func New(extra ...slacktest.Binder) *Workspace {
	w := &Workspace{
		calls:     map[string]int{},
		members:   map[string][]string{},
		missing:   map[string]bool{},
		failNext:  map[string][]string{},
		rateLimit: map[string]int{},
	}
	binders := append(extra, func(c slacktest.Customize) {
		c.Handle("/chat.postMessage", w.method("chat.postMessage", w.postMessage))
		c.Handle("/chat.update", w.method("chat.update", w.update))
		c.Handle("/chat.postEphemeral", w.method("chat.postEphemeral", w.postEphemeral))
		c.Handle("/views.open", w.method("views.open", w.openView))
		c.Handle("/usergroups.list", w.method("usergroups.list", w.listGroups))
		c.Handle("/usergroups.users.list", w.method("usergroups.users.list", w.groupMembers))
	})
	w.Server = slacktest.NewTestServer(binders...)
	w.Server.Start()
	return w
}

// Close stops the server.
func (w *Workspace) Close() { w.Server.Stop() }

// URL is the API URL to give slack.OptionAPIURL.
func (w *Workspace) URL() string { return w.Server.GetAPIURL() }

// Client is a bot client of this workspace.
func (w *Workspace) Client(token string) *slack.Client {
	return slack.New(token, slack.OptionAPIURL(w.URL()))
}

// AddGroup creates a user group with members.
func (w *Workspace) AddGroup(id, handle string, members ...string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.groups = append(w.groups, slack.UserGroup{ID: id, Handle: handle, Name: handle})
	w.members[id] = members
}

// RemoveChannel makes a channel answer channel_not_found.
func (w *Workspace) RemoveChannel(channel string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.missing[ChannelID(channel)] = true
}

// FailNext makes the next call of method answer the Slack error code.
func (w *Workspace) FailNext(method, code string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failNext[method] = append(w.failNext[method], code)
}

// RateLimitNext makes the next call of method answer 429 with Retry-After.
func (w *Workspace) RateLimitNext(method string, seconds int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.rateLimit[method] = seconds
}

// Calls is how many times method was called.
func (w *Workspace) Calls(method string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.calls[method]
}

// Messages are the channel's messages (thread replies included), oldest first.
func (w *Workspace) Messages(channel string) []Message {
	w.mu.Lock()
	defer w.mu.Unlock()
	id := ChannelID(channel)
	var out []Message
	for _, m := range w.messages {
		if m.Channel == id {
			out = append(out, *m)
		}
	}
	return out
}

// Message is one message, or false.
func (w *Workspace) Message(channel, ts string) (Message, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if m := w.find(ChannelID(channel), ts); m != nil {
		return *m, true
	}
	return Message{}, false
}

// Ephemerals are the ephemeral messages sent so far.
func (w *Workspace) Ephemerals() []Ephemeral {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.ephemerals)
}

// Views are the modals opened so far.
func (w *Workspace) Views() []View {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.views)
}

// ChannelID is the id the workspace gives a channel name: "#releases" and
// "releases" are CRELEASES; an id is itself.
func ChannelID(channel string) string {
	channel = strings.TrimPrefix(channel, "#")
	if channel == "" || (channel[0] == 'C' && strings.ToUpper(channel) == channel) {
		return channel
	}
	return "C" + strings.ToUpper(strings.NewReplacer("-", "", "_", "").Replace(channel))
}

func (w *Workspace) find(channel, ts string) *Message {
	for _, m := range w.messages {
		if m.Channel == channel && m.TS == ts {
			return m
		}
	}
	return nil
}

type handlerFunc func(token string, form url.Values, body []byte) (any, string)

// method wraps a handler with what every Slack method does: count the
// call, read the form or JSON body, check the token, answer injected
// failures and rate limits, and write {"ok":…} JSON.
func (w *Workspace) method(name string, h handlerFunc) http.HandlerFunc {
	return func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(body))
		for k, v := range r.URL.Query() {
			form[k] = append(form[k], v...)
		}
		token := form.Get("token")
		if token == "" {
			token = strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		}
		w.mu.Lock()
		w.calls[name]++
		if secs, ok := w.rateLimit[name]; ok {
			delete(w.rateLimit, name)
			w.mu.Unlock()
			rw.Header().Set("Retry-After", fmt.Sprint(secs))
			rw.WriteHeader(http.StatusTooManyRequests)
			return
		}
		var code string
		if q := w.failNext[name]; len(q) > 0 {
			code, w.failNext[name] = q[0], q[1:]
		}
		w.mu.Unlock()
		if code == "" && token == BadToken {
			code = "invalid_auth"
		}
		var resp any
		if code == "" {
			resp, code = h(token, form, body)
		}
		rw.Header().Set("Content-Type", "application/json")
		if code != "" {
			_ = json.NewEncoder(rw).Encode(map[string]any{"ok": false, "error": code})
			return
		}
		out := map[string]any{"ok": true}
		if m, ok := resp.(map[string]any); ok {
			for k, v := range m {
				out[k] = v
			}
		}
		_ = json.NewEncoder(rw).Encode(out)
	}
}

func decodeBlocks(s string) (slack.Blocks, string) {
	var b slack.Blocks
	if s == "" {
		return b, ""
	}
	if err := json.Unmarshal([]byte(s), &b); err != nil {
		return b, "invalid_blocks"
	}
	return b, ""
}

func (w *Workspace) postMessage(_ string, form url.Values, _ []byte) (any, string) {
	channel := ChannelID(form.Get("channel"))
	if channel == "" {
		return nil, "channel_not_found"
	}
	blocks, code := decodeBlocks(form.Get("blocks"))
	if code != "" {
		return nil, code
	}
	if form.Get("text") == "" && len(blocks.BlockSet) == 0 {
		return nil, "no_text"
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.missing[channel] {
		return nil, "channel_not_found"
	}
	thread := form.Get("thread_ts")
	if thread != "" && w.find(channel, thread) == nil {
		return nil, "thread_not_found"
	}
	w.seq++
	m := &Message{
		Channel:   channel,
		TS:        fmt.Sprintf("1700000000.%06d", w.seq),
		ThreadTS:  thread,
		Broadcast: form.Get("reply_broadcast") == "true",
		Text:      form.Get("text"),
		Blocks:    blocks,
	}
	w.messages = append(w.messages, m)
	return map[string]any{"channel": m.Channel, "ts": m.TS}, ""
}

func (w *Workspace) update(_ string, form url.Values, _ []byte) (any, string) {
	channel, ts := form.Get("channel"), form.Get("ts")
	blocks, code := decodeBlocks(form.Get("blocks"))
	if code != "" {
		return nil, code
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.missing[channel] {
		return nil, "channel_not_found"
	}
	m := w.find(channel, ts) // chat.update takes ids only, like Slack
	if m == nil {
		return nil, "message_not_found"
	}
	m.Text = form.Get("text")
	if form.Has("blocks") {
		m.Blocks = blocks
	}
	m.Updates++
	return map[string]any{"channel": m.Channel, "ts": m.TS, "text": m.Text}, ""
}

func (w *Workspace) postEphemeral(_ string, form url.Values, _ []byte) (any, string) {
	channel, user := ChannelID(form.Get("channel")), form.Get("user")
	if channel == "" || user == "" {
		return nil, "invalid_arguments"
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seq++
	w.ephemerals = append(w.ephemerals, Ephemeral{Channel: channel, User: user, Text: form.Get("text")})
	return map[string]any{"message_ts": fmt.Sprintf("1700000000.%06d", w.seq)}, ""
}

func (w *Workspace) openView(_ string, _ url.Values, body []byte) (any, string) {
	var req struct {
		TriggerID string                 `json:"trigger_id"`
		View      slack.ModalViewRequest `json:"view"`
	}
	if err := json.Unmarshal(body, &req); err != nil || req.TriggerID == "" {
		return nil, "invalid_arguments"
	}
	if req.TriggerID == "expired" {
		return nil, "expired_trigger_id"
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.views = append(w.views, View{TriggerID: req.TriggerID, View: req.View})
	return map[string]any{"view": map[string]any{"id": fmt.Sprintf("V%04d", len(w.views)), "callback_id": req.View.CallbackID, "private_metadata": req.View.PrivateMetadata}}, ""
}

func (w *Workspace) listGroups(_ string, _ url.Values, _ []byte) (any, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return map[string]any{"usergroups": slices.Clone(w.groups)}, ""
}

func (w *Workspace) groupMembers(_ string, form url.Values, _ []byte) (any, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	users, ok := w.members[form.Get("usergroup")]
	if !ok {
		return nil, "no_such_subteam"
	}
	return map[string]any{"users": slices.Clone(users)}, ""
}
