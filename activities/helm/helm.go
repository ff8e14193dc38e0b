// Package helm installs, upgrades and rolls back a region's Helm release
// with helm.sh/helm/v3 as a library.
package helm

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.temporal.io/sdk/temporal"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/release"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Error types of non-retryable failures.
const (
	ErrChartNotFound = "HelmChartNotFound"
	ErrBadInput      = "HelmBadInput"
	ErrNotReady      = "HelmNotReady" // readiness timed out: the workflow rolls back, retrying will not help
	// ErrInvalidValues: the chart does not render with these values, or the
	// API server refuses what it renders.
	ErrInvalidValues = "HelmInvalidValues"
	// ErrReleaseNotFound: Status, History or Rollback of a release that
	// has never been installed.
	ErrReleaseNotFound = "HelmReleaseNotFound"
)

// Activities holds one action.Configuration per kube context (and
// namespace: Helm binds its release storage to one), built lazily from
// Kubeconfig. Use it by pointer; the zero value with Kubeconfig set works.
type Activities struct {
	// Kubeconfig is the kubeconfig file with a context per region.
	Kubeconfig string
	// Logger receives Helm's and the activities' logs; slog.Default() when nil.
	Logger *slog.Logger

	mu      sync.Mutex
	configs map[configKey]*action.Configuration
	locks   map[string]chan struct{} // one per release, see lockRelease
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

// upgradeTimeout bounds Helm hooks during install, upgrade and rollback;
// readiness is WaitReady's business, with its own timeout.
const upgradeTimeout = 5 * time.Minute

// Upgrade installs or upgrades; idempotent (see UpgradeResult.Unchanged).
func (a *Activities) Upgrade(ctx context.Context, in UpgradeInput) (*UpgradeResult, error) {
	t := in.Target
	if err := validateTarget(t); err != nil {
		return nil, err
	}
	if in.Version == "" {
		return nil, badInput(fmt.Sprintf("upgrade %s in %s: no version", t.Release, t.Region))
	}
	vals, err := composeValues(in)
	if err != nil {
		return nil, badInput(fmt.Sprintf("upgrade %s in %s: compose values: %v", t.Release, t.Region, err))
	}
	ch, err := loadChart(in.ChartPath)
	if err != nil {
		return nil, classify(err, "upgrade %s in %s", t.Release, t.Region)
	}
	// Render offline first: a template or schema error is the chart's or
	// the values' fault, and must not be retried like a network error.
	if err := checkRender(ch, vals, t); err != nil {
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("upgrade %s in %s: chart %s does not render with these values: %v", t.Release, t.Region, in.ChartPath, err),
			ErrInvalidValues, err)
	}
	want, err := contentOf(ch, vals)
	if err != nil {
		return nil, badInput(fmt.Sprintf("upgrade %s in %s: %v", t.Release, t.Region, err))
	}

	cfg, err := a.config(t)
	if err != nil {
		return nil, classify(err, "upgrade %s in %s", t.Release, t.Region)
	}
	unlock, err := a.lockRelease(ctx, t)
	if err != nil {
		return nil, err
	}
	defer unlock()
	defer heartbeat(ctx, nil)()
	log := a.logger().With("release", t.Release, "region", t.Region, "namespace", t.Namespace, "version", in.Version)
	start := time.Now()

	if err := ensureNamespace(ctx, cfg, t.Namespace); err != nil {
		return nil, classify(err, "upgrade %s in %s: create namespace %s", t.Release, t.Region, t.Namespace)
	}
	hist, err := history(cfg, t.Release)
	if err != nil {
		return nil, classify(err, "upgrade %s in %s: read history", t.Release, t.Region)
	}
	last := latest(hist)

	var rel *release.Release
	if last != nil && last.Info.Status.IsPending() {
		// A worker died mid-operation and left the lock Helm keeps in the
		// release's status; see recoverPending.
		rel, err = recoverPending(ctx, cfg, hist, last, want, log)
		if err != nil {
			return nil, classify(err, "upgrade %s in %s: recover pending revision %d", t.Release, t.Region, last.Version)
		}
		// rel == nil: it was marked failed; a plain upgrade follows.
	} else if last != nil && last.Info.Status == release.StatusDeployed {
		if got, err := releaseContent(last); err == nil && got == want {
			log.Info("helm release already at target", "revision", last.Version)
			return &UpgradeResult{
				Revision:         last.Version,
				PreviousRevision: previousRevision(hist, last.Version, want),
				ChartVersion:     last.Chart.Metadata.Version,
				AppVersion:       last.Chart.Metadata.AppVersion,
				Unchanged:        true,
			}, nil
		}
	}

	if rel == nil {
		rel, err = a.installOrUpgrade(ctx, cfg, in, ch, vals, hist)
		if err != nil {
			return nil, classify(err, "upgrade %s in %s", t.Release, t.Region)
		}
	}
	// Read the history again: the previous revision is computed the same
	// way a retry that finds this revision deployed computes it.
	hist, err = history(cfg, t.Release)
	if err != nil {
		return nil, classify(err, "upgrade %s in %s: read history", t.Release, t.Region)
	}
	res := &UpgradeResult{
		Revision:         rel.Version,
		PreviousRevision: previousRevision(hist, rel.Version, want),
		ChartVersion:     rel.Chart.Metadata.Version,
		AppVersion:       rel.Chart.Metadata.AppVersion,
	}
	log.Info("helm release upgraded", "revision", res.Revision, "previousRevision", res.PreviousRevision,
		"chartVersion", res.ChartVersion, "took", time.Since(start))
	return res, nil
}

// installOrUpgrade is `helm upgrade --install` without --wait: the values
// replace the previous ones entirely (they are composed in full each time).
func (a *Activities) installOrUpgrade(ctx context.Context, cfg *action.Configuration, in UpgradeInput,
	ch *chart.Chart, vals map[string]any, hist []*release.Release) (*release.Release, error) {
	t := in.Target
	labels := map[string]string{}
	if key := in.VersionValue; key != "" && key != defaultVersionValue && len(validation.IsValidLabelValue(key)) == 0 {
		labels[versionValueLabel] = key
	}

	last := latest(hist)
	if last == nil || last.Info.Status == release.StatusUninstalled {
		inst := action.NewInstall(cfg)
		inst.ReleaseName = t.Release
		inst.Namespace = t.Namespace
		inst.Timeout = upgradeTimeout
		inst.Replace = last != nil // reuse the name of an uninstalled release kept in history
		inst.Labels = labels
		return inst.RunWithContext(ctx, ch, vals)
	}
	if _, ok := labels[versionValueLabel]; !ok {
		labels[versionValueLabel] = "null" // Helm deletes labels set to "null"
	}
	up := action.NewUpgrade(cfg)
	up.Namespace = t.Namespace
	up.Timeout = upgradeTimeout
	up.ResetValues = true
	up.Labels = labels
	return up.RunWithContext(ctx, t.Release, ch, vals)
}

// WaitReady waits for the workloads of the release, heartbeating.
func (a *Activities) WaitReady(ctx context.Context, in WaitInput) error {
	t := in.Target
	if err := validateTarget(t); err != nil {
		return err
	}
	cfg, err := a.config(t)
	if err != nil {
		return classify(err, "wait for %s in %s", t.Release, t.Region)
	}
	return a.waitReady(ctx, cfg, in)
}

// Rollback rolls back to the given revision; idempotent when that
// revision's content is already what is deployed.
func (a *Activities) Rollback(ctx context.Context, in RollbackInput) (*RollbackResult, error) {
	t := in.Target
	if err := validateTarget(t); err != nil {
		return nil, err
	}
	if in.Revision <= 0 {
		return nil, badInput(fmt.Sprintf("rollback %s in %s: revision %d is not a revision", t.Release, t.Region, in.Revision))
	}
	cfg, err := a.config(t)
	if err != nil {
		return nil, classify(err, "rollback %s in %s", t.Release, t.Region)
	}
	unlock, err := a.lockRelease(ctx, t)
	if err != nil {
		return nil, err
	}
	defer unlock()
	defer heartbeat(ctx, nil)()
	log := a.logger().With("release", t.Release, "region", t.Region, "namespace", t.Namespace, "toRevision", in.Revision)
	start := time.Now()

	hist, err := history(cfg, t.Release)
	if err != nil {
		return nil, classify(err, "rollback %s in %s: read history", t.Release, t.Region)
	}
	if len(hist) == 0 {
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("rollback %s in %s: release not found", t.Release, t.Region), ErrReleaseNotFound, nil)
	}
	var target *release.Release
	for _, r := range hist {
		if r.Version == in.Revision {
			target = r
		}
	}
	if target == nil {
		return nil, badInput(fmt.Sprintf("rollback %s in %s: no revision %d (latest is %d)", t.Release, t.Region, in.Revision, latest(hist).Version))
	}
	want, err := releaseContent(target)
	if err != nil {
		return nil, badInput(fmt.Sprintf("rollback %s in %s: revision %d: %v", t.Release, t.Region, in.Revision, err))
	}

	last := latest(hist)
	if last.Info.Status.IsPending() {
		rel, err := recoverPending(ctx, cfg, hist, last, want, log)
		if err != nil {
			return nil, classify(err, "rollback %s in %s: recover pending revision %d", t.Release, t.Region, last.Version)
		}
		if rel != nil {
			return &RollbackResult{Revision: rel.Version}, nil
		}
	} else if last.Info.Status == release.StatusDeployed {
		// A retried rollback finds its own revision deployed.
		if got, err := releaseContent(last); err == nil && got == want {
			log.Info("helm release already at rollback target", "revision", last.Version)
			return &RollbackResult{Revision: last.Version}, nil
		}
	}

	rb := action.NewRollback(cfg)
	rb.Version = in.Revision
	rb.Timeout = upgradeTimeout
	if err := rb.Run(t.Release); err != nil {
		return nil, classify(err, "rollback %s in %s to revision %d", t.Release, t.Region, in.Revision)
	}
	rel, err := cfg.Releases.Last(t.Release)
	if err != nil {
		return nil, classify(err, "rollback %s in %s: read result", t.Release, t.Region)
	}
	if rel.Info.Status != release.StatusDeployed {
		return nil, fmt.Errorf("rollback %s in %s to revision %d: revision %d is %s: %s",
			t.Release, t.Region, in.Revision, rel.Version, rel.Info.Status, rel.Info.Description)
	}
	log.Info("helm release rolled back", "revision", rel.Version, "took", time.Since(start))
	return &RollbackResult{Revision: rel.Version}, nil
}

// Status returns the current revision of Target.
func (a *Activities) Status(ctx context.Context, in Target) (*Revision, error) {
	if err := validateTarget(in); err != nil {
		return nil, err
	}
	cfg, err := a.config(in)
	if err != nil {
		return nil, classify(err, "status of %s in %s", in.Release, in.Region)
	}
	rel, err := cfg.Releases.Last(in.Release)
	if err != nil {
		return nil, classify(err, "status of %s in %s", in.Release, in.Region)
	}
	r := toRevision(rel)
	return &r, nil
}

// History returns Target's revisions, oldest first.
func (a *Activities) History(ctx context.Context, in Target) ([]Revision, error) {
	if err := validateTarget(in); err != nil {
		return nil, err
	}
	cfg, err := a.config(in)
	if err != nil {
		return nil, classify(err, "history of %s in %s", in.Release, in.Region)
	}
	hist, err := history(cfg, in.Release)
	if err != nil {
		return nil, classify(err, "history of %s in %s", in.Release, in.Region)
	}
	if len(hist) == 0 {
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("history of %s in %s: release not found", in.Release, in.Region), ErrReleaseNotFound, nil)
	}
	out := make([]Revision, 0, len(hist))
	for _, r := range hist {
		out = append(out, toRevision(r))
	}
	return out, nil
}

func toRevision(rel *release.Release) Revision {
	r := Revision{
		Revision: rel.Version,
		Version:  versionOf(rel),
	}
	if rel.Info != nil {
		r.Status = rel.Info.Status.String()
		r.Updated = rel.Info.LastDeployed.Time
		r.Description = rel.Info.Description
	}
	if rel.Chart != nil && rel.Chart.Metadata != nil {
		r.ChartVersion = rel.Chart.Metadata.Version
		r.AppVersion = rel.Chart.Metadata.AppVersion
	}
	return r
}
