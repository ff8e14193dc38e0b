package control

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keelson-dev/keelson/release"
)

func testClient() *Client {
	return &Client{Namespace: "default", TaskQueue: "keelson", UIBaseURL: "http://localhost:8233/", Address: "127.0.0.1:7233"}
}

func TestTranslate(t *testing.T) {
	c := testClient()
	id := "release-demo-1.0.0"
	cases := []struct {
		name   string
		op     op
		err    error
		kind   error
		msg    string
		reason string
	}{
		{
			name: "workflow not found",
			op:   op{name: "status of", releaseID: id},
			err:  serviceerror.NewNotFound("workflow not found for ID: release-demo-1.0.0"),
			kind: ErrNotFound,
			msg:  "release release-demo-1.0.0 not found",
		},
		{
			name: "update on a completed workflow",
			op:   op{name: "approve", releaseID: id, update: true},
			err:  serviceerror.NewNotFound("workflow execution already completed"),
			kind: ErrFinished,
			msg:  "release release-demo-1.0.0 already finished: approve is no longer possible",
		},
		{
			name: "unavailable service error, wrapped",
			op:   op{name: "approve", releaseID: id, update: true},
			err:  fmt.Errorf("update: %w", serviceerror.NewUnavailable("connection refused")),
			kind: ErrUnavailable,
			msg:  "cannot reach Temporal at 127.0.0.1:7233: is it running? try `make up`",
		},
		{
			name: "bare grpc status from the dialer",
			op:   op{name: "start", releaseID: id},
			err:  fmt.Errorf("failed reaching server: %w", status.Error(codes.Unavailable, "dial tcp: connection refused")),
			kind: ErrUnavailable,
			msg:  "cannot reach Temporal at 127.0.0.1:7233: is it running? try `make up`",
		},
		{
			name:   "validator refusal carries its message",
			op:     op{name: "approve", releaseID: id, update: true},
			err:    temporal.NewApplicationError("user bob is not an approver of gate promote-to-rest (approvers: alice)", "NotApprover"),
			kind:   ErrRefused,
			msg:    "approve release-demo-1.0.0 refused: user bob is not an approver of gate promote-to-rest (approvers: alice)",
			reason: "user bob is not an approver of gate promote-to-rest (approvers: alice)",
		},
		{
			name:   "the workflow's refused: prefix is not doubled",
			op:     op{name: "pause", releaseID: id, update: true},
			err:    temporal.NewApplicationError("refused: release release-demo-1.0.0 is paused already", ""),
			kind:   ErrRefused,
			msg:    "pause release-demo-1.0.0 refused: release release-demo-1.0.0 is paused already",
			reason: "release release-demo-1.0.0 is paused already",
		},
		{
			name: "application error outside an update is not a refusal",
			op:   op{name: "status of", releaseID: id},
			err:  temporal.NewApplicationError("boom", "X"),
			msg:  "status of release-demo-1.0.0: boom",
		},
		{
			name: "nobody answered",
			op:   op{name: "status of", releaseID: id},
			err:  serviceerror.NewDeadlineExceeded("context deadline exceeded"),
			kind: ErrNoAnswer,
			msg:  "status of release-demo-1.0.0: no answer in time: is keelson-worker running on task queue keelson?",
		},
		{
			name: "context deadline",
			op:   op{name: "pause", releaseID: id, update: true},
			err:  fmt.Errorf("poll: %w", context.DeadlineExceeded),
			kind: ErrNoAnswer,
			msg:  "pause release-demo-1.0.0: no answer in time: is keelson-worker running on task queue keelson?",
		},
		{
			name: "namespace missing",
			op:   op{name: "start", releaseID: id},
			err:  serviceerror.NewNamespaceNotFound("default"),
			kind: ErrNotFound,
			msg:  "namespace default not found on Temporal at 127.0.0.1:7233",
		},
		{
			name: "search attribute not registered",
			op:   op{name: "start", releaseID: id},
			err:  serviceerror.NewInvalidArgument("search attribute KeelsonApplication is not defined"),
			msg:  "start release-demo-1.0.0: search attribute KeelsonApplication is not defined: start Temporal with --search-attribute KeelsonApplication=Keyword (and KeelsonVersion, KeelsonPhase); `make up` does",
		},
		{
			name: "multi-line errors become one line",
			op:   op{name: "status of", releaseID: id},
			err:  errors.New("first\nsecond"),
			msg:  "status of release-demo-1.0.0: first; second",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := c.translate(tc.op, tc.err)
			var e *Error
			if !errors.As(got, &e) {
				t.Fatalf("translate returned %T, want *Error", got)
			}
			if got.Error() != tc.msg {
				t.Errorf("message\n got: %s\nwant: %s", got.Error(), tc.msg)
			}
			if strings.Contains(got.Error(), "\n") {
				t.Errorf("message has a newline: %q", got.Error())
			}
			for _, k := range []error{ErrNotFound, ErrFinished, ErrRefused, ErrUnavailable, ErrNoAnswer} {
				if want := k == tc.kind; errors.Is(got, k) != want {
					t.Errorf("errors.Is(%v) = %v, want %v", k, !want, want)
				}
			}
			if e.Reason != tc.reason {
				t.Errorf("reason = %q, want %q", e.Reason, tc.reason)
			}
			// The original error stays reachable for callers that need it.
			if !errors.Is(got, tc.err) {
				t.Errorf("original error lost")
			}
		})
	}
	if c.translate(op{}, nil) != nil {
		t.Error("nil error translated to non-nil")
	}
}

func TestSummaryAndURL(t *testing.T) {
	spec := &release.Spec{
		Application: "demo",
		Regions:     []release.Region{{Name: "a"}, {Name: "b"}, {Name: "c"}},
		Waves:       []release.Wave{{Name: "canary", Regions: []string{"a"}}, {Name: "rest", Regions: []string{"b", "c"}}},
	}
	if got, want := Summary(spec, "1.2.0"), "demo 1.2.0: canary (a) → rest (b, c)"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
	// Too many regions to name on one line: the counts.
	spec.Waves = nil
	for i := range 20 {
		name := fmt.Sprintf("region-number-%d", i)
		spec.Regions = append(spec.Regions, release.Region{Name: name})
		spec.Waves = append(spec.Waves, release.Wave{Name: fmt.Sprintf("w%d", i), Regions: []string{name}})
	}
	if got, want := Summary(spec, "1.2.0"), "demo 1.2.0: 23 regions in 20 waves"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
	if got, want := testClient().URL("release-demo-1.2.0"), "http://localhost:8233/namespaces/default/workflows/release-demo-1.2.0"; got != want {
		t.Errorf("URL = %q, want %q", got, want)
	}
}

func TestUpdateIDStable(t *testing.T) {
	a, b := UpdateID("approve", "slack:123.456:U1"), UpdateID("approve", "slack:123.456:U1")
	if a != b {
		t.Fatalf("same key gave %q and %q", a, b)
	}
	if r := UpdateID("reject", "slack:123.456:U1"); r == a {
		t.Errorf("approve and reject share update id %q", a)
	}
	if o := UpdateID("approve", "slack:123.457:U1"); o == a {
		t.Errorf("different keys share update id %q", a)
	}
}

func TestVisibilityQuery(t *testing.T) {
	if got, want := (ListQuery{}).Visibility(), "WorkflowType = 'Release'"; got != want {
		t.Errorf("got %q want %q", got, want)
	}
	got := ListQuery{Application: "demo", Phase: "deploying", Version: "1'2"}.Visibility()
	want := "WorkflowType = 'Release' AND KeelsonApplication = 'demo' AND KeelsonVersion = '1\\'2' AND KeelsonPhase = 'deploying'"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	got = ListQuery{Application: "demo", Attention: true, AttentionSince: time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)}.Visibility()
	want = "WorkflowType = 'Release' AND KeelsonApplication = 'demo' AND (KeelsonPhase IN ('awaiting-approval', 'paused', 'held') OR " +
		"(KeelsonPhase IN ('failed', 'rolled-back') AND CloseTime > '2026-11-21T09:00:00Z'))"
	if got != want {
		t.Errorf("attention:\n got  %q\nwant %q", got, want)
	}
	if statusName("WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW") != "Continued-as-new" {
		t.Errorf("statusName = %q", statusName("WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW"))
	}
}
