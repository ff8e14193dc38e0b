package workflows

import (
	"errors"

	"go.temporal.io/sdk/workflow"
)

// Release runs a release of one application version across its waves.
func Release(ctx workflow.Context, in *ReleaseInput) (*ReleaseResult, error) {
	return nil, errors.New("not implemented")
}
