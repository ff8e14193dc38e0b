package slackhook_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
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

func TestSocketModeFeedsTheSameDispatcher(t *testing.T) {
	ss := &socketServer{conns: make(chan *websocket.Conn, 1)}
	ws := slackfake.New(ss.bind)
	t.Cleanup(ws.Close)
	rel := newFakeReleases()
	rel.addGate(releaseID, gateName, []string{"U0APPROVER"}, nil)
	cfg := slackhook.Config{BotToken: "xoxb-test", AppToken: "xapp-1-test", APIURL: ws.URL()}
	h, err := slackhook.New(slackhook.Options{API: cfg.Client(), Releases: rel,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.RunSocketMode(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("RunSocketMode did not return after cancel")
		}
	}()

	var conn *websocket.Conn
	select {
	case conn = <-ss.conns:
	case <-time.After(10 * time.Second):
		t.Fatal("socket mode never connected")
	}
	defer conn.Close()

	payload := click("U0APPROVER", "alice", keelslack.ActionApprove, "1700000200.000100", thisGate)
	deliver := func(envelope string, attempt int) {
		require.NoError(t, conn.WriteJSON(map[string]any{"envelope_id": envelope, "type": "interactive",
			"accepts_response_payload": false, "retry_attempt": attempt, "payload": payload}))
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
		for {
			_, msg, err := conn.ReadMessage()
			require.NoError(t, err, "waiting for the ack of %s", envelope)
			var ack struct {
				EnvelopeID string `json:"envelope_id"`
			}
			if json.Unmarshal(msg, &ack) == nil && ack.EnvelopeID == envelope {
				return
			}
		}
	}
	deliver("env-1", 0)
	deliver("env-2", 1) // Slack delivers the same click again
	h.Wait()

	calls := rel.answers()
	require.Len(t, calls, 1)
	require.True(t, calls[0].approve)
	require.Equal(t, "U0APPROVER", calls[0].answer.UserID)
	require.Equal(t, workflows.PhaseDeploying, rel.phase(releaseID))
	require.Len(t, ws.Ephemerals(), 1)
}
