package workflows

import (
	"fmt"
	"testing"

	"go.temporal.io/sdk/temporal"
)

// The not-shipped failure's result reads back both as created in the
// worker (an interceptor sees the error before it is encoded) and as a
// client receives it (encoded payloads); other errors are not results.
func TestResultFromError(t *testing.T) {
	res := &ReleaseResult{ReleaseID: "release-demo-1.0.0", Phase: PhaseRolledBack, Reason: "region us-east-1 failed"}
	local := temporal.NewNonRetryableApplicationError("rolled-back: region us-east-1 failed", ErrTypeNotShipped, nil, *res)
	if got, ok := ResultFromError(fmt.Errorf("wrapped: %w", local)); !ok || got.ReleaseID != res.ReleaseID || got.Phase != PhaseRolledBack {
		t.Errorf("local error: %+v %v", got, ok)
	}
	fc := temporal.GetDefaultFailureConverter()
	remote := fc.FailureToError(fc.ErrorToFailure(local))
	if got, ok := ResultFromError(remote); !ok || got.Reason != res.Reason {
		t.Errorf("encoded error: %+v %v", got, ok)
	}
	if _, ok := ResultFromError(temporal.NewApplicationError("boom", "Other", "x")); ok {
		t.Error("another error read as a result")
	}
	odd := temporal.NewNonRetryableApplicationError("x", ErrTypeNotShipped, nil, 42)
	if _, ok := ResultFromError(odd); ok {
		t.Error("details of another shape read as a result")
	}
}
