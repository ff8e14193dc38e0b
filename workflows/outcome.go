package workflows

import (
	"errors"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// A release that did not ship (failed, rolled back, rejected, aborted)
// closes as Failed, so that the Web UI's workflow list and `temporal
// workflow list` show it apart from the ones that shipped. The failure is
// an application error of type ErrTypeNotShipped whose message is the
// outcome and reason, and whose details are the whole ReleaseResult:
// ResultFromError reads it back, so every reader of results (the CLI,
// undo, trains, DORA) gets the same result whichever way the run closed.
// Runs from before changeOutcome keep completing with their result.

// ErrTypeNotShipped is the type of the failure a release that did not ship
// closes with.
const ErrTypeNotShipped = "ReleaseNotShipped"

// closeWith returns what the release workflow returns: the result for a
// release that shipped (or a run from before changeOutcome), or the
// not-shipped failure carrying it.
func closeWith(ctx workflow.Context, res *ReleaseResult) (*ReleaseResult, error) {
	if res.Phase == PhaseSucceeded || workflow.GetVersion(ctx, changeOutcome, workflow.DefaultVersion, 1) < 1 {
		return res, nil
	}
	msg := string(res.Phase)
	if res.Reason != "" {
		msg += ": " + res.Reason
	}
	// The details hold the result by value: read back in this process
	// (an interceptor) they are assigned as they are, not decoded.
	return nil, temporal.NewNonRetryableApplicationError(msg, ErrTypeNotShipped, nil, *res)
}

// ResultFromError reads the ReleaseResult out of a release's not-shipped
// failure (as returned by a run's Get, or a child's). ok is false when err
// is another error.
func ResultFromError(err error) (res *ReleaseResult, ok bool) {
	defer func() {
		// Details of another shape (a release from other code) are not a
		// result; reading them must never take the caller down.
		if recover() != nil {
			res, ok = nil, false
		}
	}()
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Type() != ErrTypeNotShipped || !app.HasDetails() {
		return nil, false
	}
	var r ReleaseResult
	if derr := app.Details(&r); derr != nil {
		return nil, false
	}
	return &r, true
}
