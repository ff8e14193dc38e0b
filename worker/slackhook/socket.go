package slackhook

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"
)

// Client builds the Slack client the worker shares between the activities
// and the handler. It carries the app-level token too, which Socket Mode
// uses to open its connection.
func (c Config) Client() *slack.Client {
	var opts []slack.Option
	if c.APIURL != "" {
		opts = append(opts, slack.OptionAPIURL(c.APIURL))
	}
	if c.AppToken != "" {
		opts = append(opts, slack.OptionAppLevelToken(c.AppToken))
	}
	return slack.New(c.BotToken, opts...)
}

// RunSocketMode receives interactions over Socket Mode until ctx ends, for
// workspaces that cannot reach the worker's HTTP endpoint. The Handler's
// API client must carry the app-level token (Config.Client does). Slack
// authenticates the connection itself, so no signature is checked; a click
// delivered twice is still recognised by its action.
func (h *Handler) RunSocketMode(ctx context.Context) error {
	sm := socketmode.New(h.api, socketmode.OptionLog(slog.NewLogLogger(h.log.Handler(), slog.LevelDebug)))
	errc := make(chan error, 1)
	go func() { errc <- sm.RunContext(ctx) }()
	// Interactions are handled concurrently, a bounded number at once: one
	// approval waiting on a slow Temporal Update must not hold up the
	// clicks behind it (Slack wants each acknowledged within 3 s).
	sem := make(chan struct{}, socketConcurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case err := <-errc:
			if errors.Is(err, context.Canceled) && ctx.Err() != nil {
				return nil
			}
			return err
		case evt := <-sm.Events:
			if evt.Type != socketmode.EventTypeInteractive {
				h.socketEvent(ctx, sm, evt)
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return nil
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				h.socketEvent(ctx, sm, evt)
			}()
		}
	}
}

// socketConcurrency bounds the interactions handled at once over Socket
// Mode.
const socketConcurrency = 16

func (h *Handler) socketEvent(ctx context.Context, sm *socketmode.Client, evt socketmode.Event) {
	switch evt.Type {
	case socketmode.EventTypeConnecting:
		h.log.Info("slack socket mode: connecting")
	case socketmode.EventTypeConnected:
		h.log.Info("slack socket mode: connected")
	case socketmode.EventTypeConnectionError, socketmode.EventTypeInvalidAuth, socketmode.EventTypeIncomingError, socketmode.EventTypeErrorBadMessage:
		h.log.Warn("slack socket mode: error", "type", evt.Type, "data", evt.Data)
	case socketmode.EventTypeInteractive:
		if evt.Request == nil {
			return
		}
		ic, ok := evt.Data.(slack.InteractionCallback)
		if !ok {
			h.log.Warn("slack socket mode: malformed interaction", "data", evt.Data)
			_ = sm.Ack(*evt.Request)
			return
		}
		resp, err := h.Dispatch(ctx, ic)
		if err != nil {
			// Acknowledged all the same: Slack would only deliver it again.
			h.log.Warn("slack socket mode: malformed interaction", "type", ic.Type, "user", ic.User.ID, "err", err)
			resp = nil
		}
		if resp != nil {
			err = sm.Ack(*evt.Request, resp)
		} else {
			err = sm.Ack(*evt.Request)
		}
		if err != nil {
			h.log.Warn("slack socket mode: cannot acknowledge", "err", err)
		}
	default:
		if evt.Request != nil {
			// Events and slash commands are not Keelson's; acknowledge so
			// Slack does not redeliver them.
			_ = sm.Ack(*evt.Request)
		}
	}
}
