package control

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keelson-dev/keelson/workflows"
)

// Kinds of failure a caller may want to tell apart, for errors.Is. Every
// error this package returns is an *Error whose message is one line a person
// understands; its Kind is one of these or nil.
var (
	// ErrNotFound: the release does not exist (in this namespace).
	ErrNotFound = errors.New("release not found")
	// ErrFinished: the release already finished, so updates cannot reach it.
	ErrFinished = errors.New("release already finished")
	// ErrRefused: the workflow's validator refused the request; Reason
	// carries its message.
	ErrRefused = errors.New("refused")
	// ErrUnavailable: Temporal cannot be reached.
	ErrUnavailable = errors.New("temporal unavailable")
	// ErrNoAnswer: Temporal is up but nothing answered in time, which in
	// practice means no worker polls the task queue.
	ErrNoAnswer = errors.New("no answer from a worker")
)

// Error is a failure translated for people. Message is the whole line;
// Reason, for ErrRefused, is the validator's own words, which a Slack
// handler shows as is.
type Error struct {
	Kind    error
	Message string
	Reason  string
	Err     error
}

func (e *Error) Error() string { return e.Message }

// Unwrap gives both the kind and the original error to errors.Is/As.
func (e *Error) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// op describes what was being done, for messages: "approve", "status"...
type op struct {
	name      string // verb as a person would say it
	releaseID string
	update    bool // an Update: application errors are refusals
}

// translate turns an SDK or service error into an *Error. It is a method of
// the client only for the address and task queue that go into messages.
func (c *Client) translate(o op, err error) error {
	if err == nil {
		return nil
	}
	var already *Error
	if errors.As(err, &already) {
		return err
	}
	id := o.releaseID
	mk := func(kind error, msg string) error {
		return &Error{Kind: kind, Message: oneLine(msg), Err: err}
	}

	var (
		notFound    *serviceerror.NotFound
		nsNotFound  *serviceerror.NamespaceNotFound
		unavailable *serviceerror.Unavailable
		deadline    *serviceerror.DeadlineExceeded
		invalid     *serviceerror.InvalidArgument
		queryFailed *serviceerror.QueryFailed
		updTimeout  *client.WorkflowUpdateServiceTimeoutOrCanceledError
		appErr      *temporal.ApplicationError
	)
	switch {
	case errors.As(err, &nsNotFound):
		return mk(ErrNotFound, fmt.Sprintf("namespace %s not found on Temporal at %s", c.Namespace, c.Address))
	case errors.As(err, &notFound):
		// The service says NotFound both for an unknown workflow and for an
		// update sent to one that completed; only the message tells them apart.
		if strings.Contains(strings.ToLower(notFound.Message), "completed") {
			return mk(ErrFinished, fmt.Sprintf("release %s already finished: %s is no longer possible", id, o.name))
		}
		return mk(ErrNotFound, fmt.Sprintf("release %s not found", id))
	case isUnavailable(err, &unavailable):
		return mk(ErrUnavailable, fmt.Sprintf("cannot reach Temporal at %s: is it running? try `make up`", c.Address))
	case errors.As(err, &updTimeout), errors.As(err, &deadline), errors.Is(err, context.DeadlineExceeded):
		return mk(ErrNoAnswer, fmt.Sprintf("%s %s: no answer in time: is keelson-worker running on task queue %s?", o.name, id, c.TaskQueue))
	case errors.As(err, &queryFailed):
		return mk(nil, fmt.Sprintf("%s %s: %s", o.name, id, queryFailed.Message))
	case errors.As(err, &invalid):
		if strings.Contains(invalid.Message, "search attribute") {
			return mk(nil, fmt.Sprintf("%s %s: %s: start Temporal with --search-attribute KeelsonApplication=Keyword (and KeelsonVersion, KeelsonPhase); `make up` does", o.name, id, invalid.Message))
		}
		return mk(nil, fmt.Sprintf("%s %s: %s", o.name, id, invalid.Message))
	case errors.As(err, &appErr) && !o.update:
		// The SDK's Error() adds "(type: X, retryable: true)": noise to a person.
		return mk(nil, fmt.Sprintf("%s %s: %s", o.name, id, appErr.Message()))
	case errors.As(err, &appErr):
		// The workflow prefixes its refusals with "refused: " so they can be
		// told apart in raw text; the message here says "refused" already.
		reason := oneLine(strings.TrimPrefix(appErr.Message(), workflows.ErrRefused+": "))
		return &Error{
			Kind:    ErrRefused,
			Message: fmt.Sprintf("%s %s refused: %s", o.name, id, reason),
			Reason:  reason,
			Err:     err,
		}
	}
	return mk(nil, fmt.Sprintf("%s %s: %s", o.name, id, err.Error()))
}

// isUnavailable recognises an unreachable server in the forms the SDK
// returns it: a serviceerror, or a bare gRPC status from the dialer.
func isUnavailable(err error, target **serviceerror.Unavailable) bool {
	if errors.As(err, target) {
		return true
	}
	if s, ok := status.FromError(errors.Unwrap(err)); ok && s.Code() == codes.Unavailable {
		return true
	}
	if s, ok := status.FromError(err); ok && s.Code() == codes.Unavailable {
		return true
	}
	return strings.Contains(err.Error(), "failed reaching server")
}

// oneLine keeps messages to one line: service and SDK errors sometimes carry
// newlines (stack traces, joined errors) that break a CLI or a Slack reply.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	s = strings.ReplaceAll(s, "\r\n", "; ")
	return strings.ReplaceAll(s, "\n", "; ")
}
