// Package helm installs, upgrades and rolls back a region's Helm release
// with helm.sh/helm/v3 as a library.
package helm

import (
	"context"
	"errors"
	"time"
)

// Error types of non-retryable failures.
const (
	ErrChartNotFound = "HelmChartNotFound"
	ErrBadInput      = "HelmBadInput"
	ErrNotReady      = "HelmNotReady" // readiness timed out: the workflow rolls back, retrying will not help
)

// Activities holds one action.Configuration per kube context, built lazily
// from Kubeconfig.
type Activities struct {
	// Kubeconfig is the kubeconfig file with a context per region.
	Kubeconfig string
}

// Target is one Helm release in one region.
type Target struct {
	Region      string `json:"region"`
	KubeContext string `json:"kubeContext"`
	Namespace   string `json:"namespace"`
	Release     string `json:"release"`
}

// UpgradeInput installs or upgrades Target with the chart and the values
// composed from the parts below, merged in order (later wins).
type UpgradeInput struct {
	Target    Target `json:"target"`
	ChartPath string `json:"chartPath"`
	// Version is the application version being released; it is set at
	// VersionValue (a dotted key, "version" by default).
	Version      string `json:"version"`
	VersionValue string `json:"versionValue,omitempty"`
	// BaseValues, then RegionValues, then Outputs under OutputsValue.
	BaseValues   map[string]any `json:"baseValues,omitempty"`
	RegionValues map[string]any `json:"regionValues,omitempty"`
	Outputs      map[string]any `json:"outputs,omitempty"`
	OutputsValue string         `json:"outputsValue,omitempty"`
}

// UpgradeResult is the revision that now holds the target version.
type UpgradeResult struct {
	Revision int `json:"revision"`
	// PreviousRevision is the revision deployed before this release changed
	// anything (0 on a first install). Rollback returns to it.
	PreviousRevision int    `json:"previousRevision"`
	ChartVersion     string `json:"chartVersion"`
	AppVersion       string `json:"appVersion,omitempty"`
	// Unchanged is true when the target chart and values were already
	// deployed and no new revision was made.
	Unchanged bool `json:"unchanged"`
}

// WaitInput waits until the release's workloads are ready.
type WaitInput struct {
	Target   Target        `json:"target"`
	Revision int           `json:"revision"`
	Timeout  time.Duration `json:"timeout"`
}

// RollbackInput rolls Target back to Revision.
type RollbackInput struct {
	Target   Target `json:"target"`
	Revision int    `json:"revision"`
}

// RollbackResult is the new revision made by the rollback.
type RollbackResult struct {
	Revision int `json:"revision"`
}

// Revision is one entry of a release's history.
type Revision struct {
	Revision     int       `json:"revision"`
	Status       string    `json:"status"`
	ChartVersion string    `json:"chartVersion"`
	AppVersion   string    `json:"appVersion,omitempty"`
	Version      string    `json:"version,omitempty"` // the value at VersionValue, when known
	Updated      time.Time `json:"updated"`
	Description  string    `json:"description,omitempty"`
}

// Upgrade installs or upgrades; idempotent (see UpgradeResult.Unchanged).
func (a *Activities) Upgrade(ctx context.Context, in UpgradeInput) (*UpgradeResult, error) {
	return nil, errors.New("helm upgrade: not implemented")
}

// WaitReady waits for the workloads of the release, heartbeating.
func (a *Activities) WaitReady(ctx context.Context, in WaitInput) error {
	return errors.New("helm wait: not implemented")
}

// Rollback rolls back to the given revision; idempotent when that
// revision's content is already what is deployed.
func (a *Activities) Rollback(ctx context.Context, in RollbackInput) (*RollbackResult, error) {
	return nil, errors.New("helm rollback: not implemented")
}

// Status returns the current revision of Target.
func (a *Activities) Status(ctx context.Context, in Target) (*Revision, error) {
	return nil, errors.New("helm status: not implemented")
}

// History returns Target's revisions, oldest first.
func (a *Activities) History(ctx context.Context, in Target) ([]Revision, error) {
	return nil, errors.New("helm history: not implemented")
}
