package slackhook_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/slack-go/slack/slacktest"
	"github.com/stretchr/testify/require"

	keelslack "github.com/keelson-dev/keelson/activities/slack"
	"github.com/keelson-dev/keelson/activities/slack/slackfake"
	"github.com/keelson-dev/keelson/worker/slackhook"
	"github.com/keelson-dev/keelson/workflows"
)

// socketServer plays Slack's side of Socket Mode on the slacktest server:
// apps.connections.open hands out a WebSocket URL, and the test pushes
// envelopes through it and reads the acknowledgements.
type socketServer struct {
	conns chan *websocket.Conn
}

func (s *socketServer) bind(c slacktest.Customize) {
	c.Handle("/apps.connections.open", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer xapp-1-test" {
			_ = json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": "invalid_auth"})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "url": "ws://" + r.Host + "/socket"})
	})
	c.Handle("/socket", func(w http.ResponseWriter, r *http.Request) {
		up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		_ = conn.WriteJSON(map[string]any{"type": "hello", "num_connections": 1,
			"connection_info": map[string]any{"app_id": "A0KEELSON1"}})
		s.conns <- conn
	})
}

// runSocket starts the handler's Socket Mode against a slacktest server and
// returns the server's end of the connection; cleanup stops it.
func runSocket(t *testing.T, rel *fakeReleases) (*slackhook.Handler, *websocket.Conn, *slackfake.Workspace) {
	t.Helper()
	ss := &socketServer{conns: make(chan *websocket.Conn, 1)}
	ws := slackfake.New(ss.bind)
	t.Cleanup(ws.Close)
	cfg := slackhook.Config{BotToken: "xoxb-test", AppToken: "xapp-1-test", APIURL: ws.URL()}
	h, err := slackhook.New(slackhook.Options{API: cfg.Client(), Releases: rel,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.RunSocketMode(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("RunSocketMode did not return after cancel")
		}
	})
	select {
	case conn := <-ss.conns:
		t.Cleanup(func() { conn.Close() })
		return h, conn, ws
	case <-time.After(10 * time.Second):
		t.Fatal("socket mode never connected")
	}
	return nil, nil, nil
}

// send writes an interactive envelope; acks reads acknowledgements until
// it has seen envelope's, returning the ones seen on the way.
func send(t *testing.T, conn *websocket.Conn, envelope string, attempt int, payload any) {
	t.Helper()
	require.NoError(t, conn.WriteJSON(map[string]any{"envelope_id": envelope, "type": "interactive",
		"accepts_response_payload": false, "retry_attempt": attempt, "payload": payload}))
}

func awaitAck(t *testing.T, conn *websocket.Conn, envelope string, within time.Duration) []string {
	t.Helper()
	var seen []string
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(within)))
	for {
		_, msg, err := conn.ReadMessage()
		require.NoError(t, err, "waiting for the ack of %s (seen %v)", envelope, seen)
		var ack struct {
			EnvelopeID string `json:"envelope_id"`
		}
		if json.Unmarshal(msg, &ack) == nil && ack.EnvelopeID != "" {
			seen = append(seen, ack.EnvelopeID)
			if ack.EnvelopeID == envelope {
				return seen
			}
		}
	}
}

func TestSocketModeFeedsTheSameDispatcher(t *testing.T) {
	rel := newFakeReleases()
	rel.addGate(releaseID, gateName, []string{"U0APPROVER"}, nil)
	h, conn, ws := runSocket(t, rel)

	payload := click("U0APPROVER", "alice", keelslack.ActionApprove, "1700000200.000100", thisGate)
	send(t, conn, "env-1", 0, payload)
	awaitAck(t, conn, "env-1", 10*time.Second)
	send(t, conn, "env-2", 1, payload) // Slack delivers the same click again
	awaitAck(t, conn, "env-2", 10*time.Second)
	h.Wait()

	calls := rel.answers()
	require.Len(t, calls, 1)
	require.True(t, calls[0].approve)
	require.Equal(t, "U0APPROVER", calls[0].answer.UserID)
	require.Equal(t, workflows.PhaseDeploying, rel.phase(releaseID))
	require.Len(t, ws.Ephemerals(), 1)
}

// One click stuck in a slow Update does not hold up the clicks behind it:
// Slack wants each acknowledged within three seconds.
func TestSocketModeAnswersClicksConcurrently(t *testing.T) {
	rel := newFakeReleases()
	other := "release-shop-1.4.3"
	rel.addGate(releaseID, gateName, []string{"U0APPROVER"}, nil)
	rel.addGate(other, gateName, []string{"U0APPROVER"}, nil)
	release := make(chan struct{})
	var mu sync.Mutex
	calls := 0
	rel.onAnswer = func() {
		mu.Lock()
		calls++
		first := calls == 1
		mu.Unlock()
		if first {
			<-release // the first Update hangs until the test lets it go
		}
	}
	h, conn, _ := runSocket(t, rel)

	send(t, conn, "env-slow", 0, click("U0APPROVER", "alice", keelslack.ActionApprove, "1700000300.000100", thisGate))
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return calls == 1 }, 10*time.Second, 10*time.Millisecond,
		"the first click never reached its Update")
	send(t, conn, "env-fast", 0, click("U0APPROVER", "alice", keelslack.ActionApprove, "1700000300.000200",
		keelslack.GateAction{ReleaseID: other, Gate: gateName}))
	seen := awaitAck(t, conn, "env-fast", 5*time.Second)
	require.NotContains(t, seen, "env-slow", "the stuck click was acknowledged before its Update returned")
	require.Equal(t, workflows.PhaseDeploying, rel.phase(other), "the second click was answered while the first waited")
	require.Equal(t, workflows.PhaseAwaitGate, rel.phase(releaseID))

	close(release)
	awaitAck(t, conn, "env-slow", 10*time.Second)
	h.Wait()
	require.Equal(t, workflows.PhaseDeploying, rel.phase(releaseID))
}
