// Package policy hands a release the part of the worker's access policy
// (package identity) that concerns its application, as a local activity,
// so that the release records it in its history and checks every answer
// against the same policy on every worker and on replay.
package policy

import (
	"context"
	"fmt"

	"go.temporal.io/sdk/temporal"

	"github.com/keelson-dev/keelson/identity"
)

// Activities reads the policy file again at each release's start, so that
// an edited policy (a new approver, a revoked key) applies to the releases
// that start after it, without restarting workers.
type Activities struct {
	// File is the access policy; empty when the worker verifies nothing.
	File string
}

// AccessInput names the application.
type AccessInput struct {
	Application string `json:"application"`
}

// ErrBadPolicy is the error type of a policy that cannot be read: not
// retried, the release is refused.
const ErrBadPolicy = "KeelsonBadAccessPolicy"

// Access returns the application's Access; not enforced without a file.
func (a *Activities) Access(ctx context.Context, in AccessInput) (identity.Access, error) {
	if a == nil || a.File == "" {
		return identity.Access{}, nil
	}
	p, err := identity.LoadPolicy(a.File)
	if err != nil {
		return identity.Access{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("access policy: %v", err), ErrBadPolicy, nil)
	}
	return p.For(in.Application), nil
}
