// Package terraform runs a region's Terraform stack with terraform-exec:
// plan to a saved file, a summary of the plan for the workflow, apply of the
// saved plan (re-planning when it went stale), and outputs.
package terraform

import (
	"context"
	"errors"

	"github.com/keelson-dev/keelson/activities/artifacts"
)

// Error types of non-retryable failures, for errors.As on the workflow side
// (temporal.ApplicationError.Type()).
const (
	ErrConfig   = "TerraformConfigError" // the stack does not validate or plan: retrying cannot help
	ErrBadInput = "TerraformBadInput"
)

// Activities holds what Terraform runs need. One value serves every region.
type Activities struct {
	// Binary is the terraform executable; found on PATH when empty.
	Binary string
	// WorkDir is where each application's region keeps its working copy of
	// the stack and its local state: WorkDir/APP/REGION.
	WorkDir string
	// Artifacts keeps plan files and full plan JSON.
	Artifacts artifacts.Store
	// Env is passed to Terraform explicitly instead of the whole process
	// environment (TF_CLI_CONFIG_FILE, credentials for real backends).
	Env map[string]string
}

// Stack identifies a region's stack and its variables.
type Stack struct {
	Application string `json:"application"`
	Version     string `json:"version"`
	Region      string `json:"region"`
	// Dir is the stack's source directory (absolute).
	Dir  string            `json:"dir"`
	Vars map[string]string `json:"vars,omitempty"`
}

// PlanInput asks for a plan saved for a later apply.
type PlanInput struct {
	Stack Stack `json:"stack"`
}

// Summary is a plan reduced to what a person approving it needs.
type Summary struct {
	Adds     int      `json:"adds"`
	Changes  int      `json:"changes"`
	Destroys int      `json:"destroys"`
	Added    []string `json:"added,omitempty"`
	Changed  []string `json:"changed,omitempty"`
	// Destroyed lists addresses destroyed, including those replaced.
	Destroyed []string `json:"destroyed,omitempty"`
}

// HasChanges reports whether applying the plan would change anything.
func (s Summary) HasChanges() bool { return s.Adds+s.Changes+s.Destroys > 0 }

// PlanResult names the saved plan in the artifact store and summarises it.
type PlanResult struct {
	PlanKey string  `json:"planKey"`
	JSONKey string  `json:"jsonKey"`
	Summary Summary `json:"summary"`
}

// ApplyInput applies a saved plan.
type ApplyInput struct {
	Stack   Stack  `json:"stack"`
	PlanKey string `json:"planKey"`
}

// ApplyResult tells what the apply did and the stack's outputs afterwards.
type ApplyResult struct {
	// Replanned is true when the saved plan was stale and a new one was made.
	Replanned bool `json:"replanned"`
	// Applied is false when there was nothing left to apply.
	Applied bool `json:"applied"`
	Summary Summary `json:"summary"`
	// Outputs are the stack's outputs, JSON-encoded values by name.
	Outputs map[string]any `json:"outputs,omitempty"`
}

// Plan runs init and plan -out, uploads the plan and its JSON, and returns
// the summary.
func (a *Activities) Plan(ctx context.Context, in PlanInput) (*PlanResult, error) {
	return nil, errors.New("terraform plan: not implemented")
}

// Apply applies the saved plan, re-planning if Terraform says it is stale,
// and returns the outputs.
func (a *Activities) Apply(ctx context.Context, in ApplyInput) (*ApplyResult, error) {
	return nil, errors.New("terraform apply: not implemented")
}
