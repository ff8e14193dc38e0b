// Package slackhook turns Slack interactions on Keelson's gate messages into
// the release's approve and reject Updates. Interactions arrive either as
// signed HTTP callbacks (Handler is an http.Handler) or over Socket Mode
// (Handler.RunSocketMode); both feed the same dispatcher.
//
// The workflow's validator decides who may answer; this package resolves
// the clicking user's Slack user groups for it, shows refusals to that user
// as ephemeral messages and logs them, because a refused Update leaves no
// event in the release's history.
//
// Mounting it in the worker:
//
//	cfg, err := slackhook.ConfigFromEnv()      // KEELSON_SLACK_* and their _FILE twins
//	slog.Info(cfg.String())                    // says "slack: off" when no bot token
//	if cfg.Enabled() {
//		api := cfg.Client()
//		w.RegisterActivity(&slack.Activities{API: api, UIBaseURL: ui + "/namespaces/" + ns})
//		h, _ := slackhook.New(slackhook.Options{API: api, SigningSecret: cfg.SigningSecret, Releases: ctl})
//		if cfg.HTTPEnabled() { mux.Handle("POST /slack/interactions", h) }
//		if cfg.SocketModeEnabled() { go h.RunSocketMode(ctx) }
//		defer h.Wait() // after the HTTP server and Socket Mode stopped
//	}
package slackhook

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/slack-go/slack"

	"github.com/keelson-dev/keelson/control"
	"github.com/keelson-dev/keelson/workflows"
)

// Releases is what the handler needs of the release side; *control.Client
// implements it. Errors are matched with errors.Is against control.ErrNotFound,
// control.ErrFinished and control.ErrRefused (whose *control.Error carries
// the validator's Reason).
type Releases interface {
	Answer(ctx context.Context, releaseID string, approve bool, a workflows.GateAnswer, opts ...control.UpdateOption) error
	Status(ctx context.Context, releaseID string) (*workflows.Status, error)
}

// The worker passes its control client as is.
var _ Releases = (*control.Client)(nil)

// Options configures a Handler.
type Options struct {
	// API is the bot's Slack client: ephemeral replies, modals, user groups.
	API *slack.Client
	// SigningSecret verifies HTTP callbacks. Without it ServeHTTP refuses
	// every request (Socket Mode does not need it).
	SigningSecret string
	Releases      Releases
	Logger        *slog.Logger
	// GroupTTL is how long user group memberships are cached; 1 minute by
	// default, so a person added to a group can approve soon after.
	GroupTTL time.Duration
	// AnswerTimeout bounds one answer (status, groups, Update, reply);
	// 30 seconds by default.
	AnswerTimeout time.Duration
	// PolicyGroups returns the Slack user groups ("@handle") that the
	// worker's access policy names for an application, so that the
	// handler resolves the clicking user's membership of them as well as
	// of the gate's own groups. Nil without a policy.
	PolicyGroups func(application string) []string
}

// Handler receives Slack interactions. Create it with New.
type Handler struct {
	api      *slack.Client
	secret   string
	releases Releases
	log      *slog.Logger
	groups   *groupCache
	timeout  time.Duration
	// policyGroups: Options.PolicyGroups.
	policyGroups func(string) []string

	// signatures are the signed requests already seen in the last minutes:
	// a replay of one is recognised and changes nothing.
	signatures *seenSet
	// clicks are the button clicks and modal submissions already handled:
	// Slack may deliver one twice (a retry, or both HTTP and Socket Mode).
	clicks *seenSet

	wg sync.WaitGroup
}

// maxBody bounds a callback's body; Slack's payloads are a few KB.
const maxBody = 1 << 20

// signatureWindow is how long a signed request can be valid (Slack's five
// minutes either way), and so how long its signature must be remembered.
const signatureWindow = 11 * time.Minute

// New builds the handler.
func New(o Options) (*Handler, error) {
	if o.API == nil {
		return nil, errors.New("slackhook: no Slack API client")
	}
	if o.Releases == nil {
		return nil, errors.New("slackhook: no release client")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.GroupTTL <= 0 {
		o.GroupTTL = time.Minute
	}
	if o.AnswerTimeout <= 0 {
		o.AnswerTimeout = 30 * time.Second
	}
	log := o.Logger.With("component", "slackhook")
	return &Handler{
		api:          o.API,
		secret:       o.SigningSecret,
		releases:     o.Releases,
		log:          log,
		groups:       newGroupCache(o.API, o.GroupTTL),
		timeout:      o.AnswerTimeout,
		policyGroups: o.PolicyGroups,
		signatures:   newSeenSet(signatureWindow),
		clicks:       newSeenSet(time.Hour),
	}, nil
}

// ServeHTTP is Slack's interaction endpoint (the app's Request URL).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		h.log.Warn("slack callback refused: cannot read body", "remote", r.RemoteAddr, "err", err)
		http.Error(w, "cannot read body", http.StatusBadRequest)
		return
	}
	if err := h.verify(r.Header, body); err != nil {
		h.log.Warn("slack callback refused: bad signature", "remote", r.RemoteAddr,
			"timestamp", r.Header.Get("X-Slack-Request-Timestamp"), "err", err)
		http.Error(w, "invalid signature", http.StatusUnauthorized)
		return
	}
	if !h.signatures.add(r.Header.Get("X-Slack-Signature")) {
		// Verified, so it is Slack's (or a copy of Slack's) request, already
		// handled once. 200 stops Slack retrying; nothing is done again.
		h.log.Warn("slack callback replayed: ignored", "remote", r.RemoteAddr,
			"timestamp", r.Header.Get("X-Slack-Request-Timestamp"), "retry", r.Header.Get("X-Slack-Retry-Num"))
		w.WriteHeader(http.StatusOK)
		return
	}
	ic, err := parse(body)
	if err != nil {
		h.log.Warn("slack callback refused: malformed payload", "remote", r.RemoteAddr, "err", err)
		http.Error(w, "malformed payload", http.StatusBadRequest)
		return
	}
	resp, err := h.Dispatch(r.Context(), ic)
	if err != nil {
		h.log.Warn("slack callback refused: malformed interaction", "remote", r.RemoteAddr, "type", ic.Type, "user", ic.User.ID, "err", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if resp == nil {
		w.WriteHeader(http.StatusOK)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

// verify checks Slack's v0 signature over "v0:timestamp:body" and that the
// timestamp is within five minutes.
func (h *Handler) verify(header http.Header, body []byte) error {
	if h.secret == "" {
		return errors.New("no signing secret configured")
	}
	sv, err := slack.NewSecretsVerifier(header, h.secret)
	if err != nil {
		return err
	}
	if _, err := sv.Write(body); err != nil {
		return err
	}
	return sv.Ensure()
}

// parse reads the form-encoded body Slack posts: payload=<JSON>.
func parse(body []byte) (slack.InteractionCallback, error) {
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return slack.InteractionCallback{}, err
	}
	payload := form.Get("payload")
	if payload == "" {
		return slack.InteractionCallback{}, errors.New("no payload")
	}
	var ic slack.InteractionCallback
	if err := json.Unmarshal([]byte(payload), &ic); err != nil {
		return slack.InteractionCallback{}, err
	}
	if ic.Type == "" {
		return slack.InteractionCallback{}, errors.New("payload has no type")
	}
	return ic, nil
}

// Wait blocks until the answers in progress are done; the worker calls it
// on shutdown after the HTTP server and Socket Mode stopped.
func (h *Handler) Wait() { h.wg.Wait() }

// seenSet remembers keys for a while.
type seenSet struct {
	mu   sync.Mutex
	ttl  time.Duration
	keys map[string]time.Time
}

func newSeenSet(ttl time.Duration) *seenSet {
	return &seenSet{ttl: ttl, keys: map[string]time.Time{}}
}

// add records key and reports whether it was new.
func (s *seenSet) add(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for k, exp := range s.keys {
		if now.After(exp) {
			delete(s.keys, k)
		}
	}
	if _, ok := s.keys[key]; ok {
		return false
	}
	s.keys[key] = now.Add(s.ttl)
	return true
}

// forget lets key be handled again: the first attempt failed in a way a
// retry may fix.
func (s *seenSet) forget(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.keys, key)
}
