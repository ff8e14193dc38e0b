// Package health probes an application over HTTP after it is ready and
// while it bakes.
package health

import (
	"context"
	"errors"
	"time"

	"github.com/keelson-dev/keelson/release"
)

// ErrUnhealthy is the type of the non-retryable error returned when a check
// reached its failure limit: the workflow rolls back instead of retrying.
const ErrUnhealthy = "Unhealthy"

// Activities probes with an HTTP client.
type Activities struct{}

// CheckInput runs Checks for a region. URLs are templates rendered with
// Region, Version and Outputs. With For zero, each check must pass
// Successes times in a row (readiness of the application); with For set,
// the checks keep running for that long and fail at FailureLimit
// consecutive failures (bake).
type CheckInput struct {
	Region  string                `json:"region"`
	Version string                `json:"version"`
	Outputs map[string]any        `json:"outputs,omitempty"`
	Checks  []release.HealthCheck `json:"checks"`
	For     time.Duration         `json:"for,omitempty"`
}

// CheckResult counts what was probed.
type CheckResult struct {
	Probes   int    `json:"probes"`
	Failures int    `json:"failures"`
	Last     string `json:"last,omitempty"` // last outcome, for the details table
}

// Check runs the checks, heartbeating between probes.
func (a *Activities) Check(ctx context.Context, in CheckInput) (*CheckResult, error) {
	return nil, errors.New("health check: not implemented")
}
