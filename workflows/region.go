package workflows

import (
	"errors"

	"go.temporal.io/sdk/workflow"
)

// RegionInput is the input of one region's rollout.
type RegionInput struct{}

// RegionRollout changes one region: apply, upgrade, readiness, health, bake.
func RegionRollout(ctx workflow.Context, in *RegionInput) (*RegionResult, error) {
	return nil, errors.New("not implemented")
}
