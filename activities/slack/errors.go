package slack

import (
	"errors"
	"fmt"
	"net"

	"github.com/slack-go/slack"
	"go.temporal.io/sdk/temporal"
)

// Slack error codes that retrying cannot fix, by the type the workflow sees.
var permanent = map[string]string{
	"invalid_auth":           ErrInvalidAuth,
	"not_authed":             ErrInvalidAuth,
	"account_inactive":       ErrInvalidAuth,
	"token_revoked":          ErrInvalidAuth,
	"token_expired":          ErrInvalidAuth,
	"missing_scope":          ErrInvalidAuth,
	"not_allowed_token_type": ErrInvalidAuth,
	"channel_not_found":      ErrChannelNotFound,
	"not_in_channel":         ErrChannelNotFound,
	"is_archived":            ErrChannelNotFound,
	"cant_update_message":    ErrBadInput,
	"edit_window_closed":     ErrBadInput,
	"msg_too_long":           ErrBadInput,
	"no_text":                ErrBadInput,
	"invalid_blocks":         ErrBadInput,
	"invalid_blocks_format":  ErrBadInput,
	"too_many_attachments":   ErrBadInput,
	"invalid_arguments":      ErrBadInput,
}

// classify wraps a Slack client error with what was being done and decides
// whether Temporal retries it: rate limits retry after Slack's Retry-After,
// network and server errors retry with the activity's backoff, and errors a
// person must fix (token, channel, message shape) do not retry.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	msg := fmt.Sprintf("%s: %v", op, err)
	var limited *slack.RateLimitedError
	if errors.As(err, &limited) {
		return temporal.NewApplicationErrorWithOptions(msg, ErrRateLimited, temporal.ApplicationErrorOptions{
			Cause:          err,
			NextRetryDelay: limited.RetryAfter,
		})
	}
	var resp slack.SlackErrorResponse
	if errors.As(err, &resp) {
		if typ, ok := permanent[resp.Err]; ok {
			return temporal.NewNonRetryableApplicationError(msg, typ, err)
		}
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return temporal.NewApplicationError(msg, "SlackNetwork", err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func badInput(msg string) error {
	return temporal.NewNonRetryableApplicationError(msg, ErrBadInput, nil)
}

// isSlackError reports whether err is the Slack API error code.
func isSlackError(err error, code string) bool {
	var resp slack.SlackErrorResponse
	return errors.As(err, &resp) && resp.Err == code
}
