// Package helm installs, upgrades and rolls back a region's Helm release
// with helm.sh/helm/v3 as a library.
package helm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/keelson-dev/keelson/bundle"
	keelson "github.com/keelson-dev/keelson/release"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/release"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Error types of non-retryable failures.
const (
	ErrChartNotFound = "HelmChartNotFound"
	ErrBadInput      = "HelmBadInput"
	ErrBadBundle     = "KeelsonBadBundle" // the release's bundle is missing, malformed or not what its digest says
	ErrNotReady      = "HelmNotReady"     // readiness timed out: the workflow rolls back, retrying will not help
	// ErrInvalidValues: the chart does not render with these values, or the
	// API server refuses what it renders.
	ErrInvalidValues = "HelmInvalidValues"
	// ErrReleaseNotFound: Status, History or Rollback of a release that
	// has never been installed.
	ErrReleaseNotFound = "HelmReleaseNotFound"
	// ErrMissingValue: a ValuesFrom entry this worker cannot read (its
	// variable is not set or empty, its file is missing or empty).
	ErrMissingValue = "KeelsonMissingValue"
)

// Activities holds, built lazily from Kubeconfig, one set of Kubernetes
// clients per kube context (REST config, discovery, REST mapper: shared by
// every namespace, see config.go) and a small action.Configuration per
// namespace (Helm binds its release storage to one). Use it by pointer;
// the zero value with Kubeconfig set works.
type Activities struct {
	// Kubeconfig is the kubeconfig file with a context per region.
	Kubeconfig string
	// Logger receives Helm's and the activities' logs; slog.Default() when nil.
	Logger *slog.Logger
	// Bundles fetches and caches release bundles by digest.
	Bundles *bundle.Cache
	// KubeQPS and KubeBurst are the client-side rate limit of the Kubernetes
	// clients of each kube context (defaultKubeQPS and
	// defaultKubeBurst when zero). client-go's own default, 5 and 10, makes
	// a hundred releases at once wait seconds on the worker; the API server
	// has its own flow control, so requests should queue there.
	KubeQPS   float32
	KubeBurst int

	mu      sync.Mutex
	configs map[configKey]*action.Configuration
	locks   map[string]*releaseLock // one per release, see lockRelease
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
	// Bundle is the digest of the release's bundle; ChartPath is then a
	// path inside it (see bundle.ForSpec). Empty for releases started
	// before bundles: ChartPath is a path on the worker's disk.
	Bundle string `json:"bundle,omitempty"`
	// Version is the application version being released; it is set at
	// VersionValue (a dotted key, "version" by default).
	Version      string `json:"version"`
	VersionValue string `json:"versionValue,omitempty"`
	// BaseValues, then RegionValues, then Outputs under OutputsValue.
	BaseValues   map[string]any `json:"baseValues,omitempty"`
	RegionValues map[string]any `json:"regionValues,omitempty"`
	Outputs      map[string]any `json:"outputs,omitempty"`
	OutputsValue string         `json:"outputsValue,omitempty"`
	// SideValues are merged after RegionValues: the values of a canary or
	// preview side (a second Helm release beside the stable one).
	SideValues map[string]any `json:"sideValues,omitempty"`
	// ValuesFrom are set after SideValues and before Version, each read on
	// the worker as the chart renders (an environment variable or a file):
	// the values never enter the input, and secret ones are kept out of
	// the activity's errors and logs (redactor).
	ValuesFrom []keelson.ValueFrom `json:"valuesFrom,omitempty"`
	// Rolling, when set, is the rolling update every Deployment the chart
	// renders gets (a post-renderer sets it), whatever the chart says.
	Rolling *RollingUpdate `json:"rolling,omitempty"`
	// Owner is the run making this upgrade. Empty (histories of releases
	// started before ownership existed): no ownership check, no labels,
	// PreviousRevision computed from the history.
	Owner Owner `json:"owner,omitempty"`
	// ExpectRevision, with Owner, is the latest revision the run recorded
	// (Snapshot) before changing anything; 0 means never installed (no
	// history, or only uninstalled). The upgrade proceeds only while the
	// latest revision is that one or one of Owner's run.
	ExpectRevision int `json:"expectRevision"`
}

// UpgradeResult is the revision that now holds the target version.
type UpgradeResult struct {
	Revision int `json:"revision"`
	// PreviousRevision is the revision deployed before this release changed
	// anything (0 on a first install). Rollback returns to it. With an
	// Owner it is UpgradeInput.ExpectRevision.
	PreviousRevision int    `json:"previousRevision"`
	ChartVersion     string `json:"chartVersion"`
	AppVersion       string `json:"appVersion,omitempty"`
	// Unchanged is true when the target chart and values were already
	// deployed and no new revision was made by this call.
	Unchanged bool `json:"unchanged"`
	// Changed is true when Revision was made by this run: by this call, or,
	// with an Owner, by an earlier attempt of the same run (Unchanged is
	// then true too). It is false when the target was found deployed by
	// someone else, such as an earlier release of the same version: there
	// is nothing of this run's to roll back.
	Changed bool `json:"changed"`
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
	// Owner is the run making the rollback; its labels go on the revision
	// the rollback makes. Empty: no ownership check, no labels.
	Owner Owner `json:"owner,omitempty"`
	// Expect is the run whose revision must be the latest for the rollback
	// to proceed; nil means Owner. A revision of Owner's run is accepted
	// too: it is a retry's, or Owner's own to undo.
	Expect *Owner `json:"expect,omitempty"`
	// Uninstall, with Revision 0 and an Owner, uninstalls the release
	// (keeping its history): the undoing of a failed first install.
	Uninstall bool `json:"uninstall,omitempty"`
}

// RollbackResult is the new revision made by the rollback, or with
// Uninstalled the revision that was uninstalled (0 if there was none).
type RollbackResult struct {
	Revision    int  `json:"revision"`
	Uninstalled bool `json:"uninstalled,omitempty"`
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
	// ReleaseID, RunID and Operation ("upgrade", "rollback") are the labels
	// of the Keelson run that made the revision (ids as label values, see
	// labelValue: equal to the ids for release ids and UUIDs). Empty when
	// Keelson did not make it, including a revision made by hand that
	// carries the labels Helm copied from a Keelson revision.
	ReleaseID string `json:"releaseId,omitempty"`
	RunID     string `json:"runId,omitempty"`
	Operation string `json:"operation,omitempty"`
	// Deployed, in Snapshot's answer, is the revision deployed at that
	// moment (0 when none is): what a rollback of the next release returns
	// to, which is not the latest revision when that one failed.
	Deployed int `json:"deployed,omitempty"`
}

// upgradeTimeout bounds Helm hooks during install, upgrade and rollback;
// readiness is WaitReady's business, with its own timeout.
const upgradeTimeout = 5 * time.Minute

// Upgrade installs or upgrades; idempotent (see UpgradeResult.Unchanged).
// With in.Owner it changes nothing unless the latest revision is
// in.ExpectRevision or one of the run's own (ErrForeignRevision), and
// labels the revision it makes.
func (a *Activities) Upgrade(ctx context.Context, in UpgradeInput) (_ *UpgradeResult, err error) {
	// First of all: the lock and the first API calls can take longer than
	// the heartbeat timeout.
	hb := startHeartbeat(ctx)
	defer hb.stop()
	t := in.Target
	if err := validateTarget(t); err != nil {
		return nil, err
	}
	if in.Version == "" {
		return nil, badInput(fmt.Sprintf("upgrade %s in %s: no version", t.Release, t.Region))
	}
	owned := in.Owner.RunID != ""
	if owned && in.ExpectRevision < 0 {
		return nil, badInput(fmt.Sprintf("upgrade %s in %s: expected revision %d is not a revision", t.Release, t.Region, in.ExpectRevision))
	}
	vals, secrets, err := composeSecretValues(in)
	if err != nil {
		var missing *missingValueError
		if errors.As(err, &missing) {
			return nil, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("upgrade %s in %s: %v", t.Release, t.Region, err), ErrMissingValue, nil)
		}
		return nil, badInput(fmt.Sprintf("upgrade %s in %s: compose values: %v", t.Release, t.Region, err))
	}
	// From here on, Helm's and the API server's errors may quote what the
	// chart rendered: no secret value leaves in an error.
	defer func() { err = secrets.error(err) }()
	chartPath, err := a.chartPath(ctx, in)
	if err != nil {
		return nil, err
	}
	ch, err := loadChart(chartPath)
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
	unlock, err := a.lockRelease(ctx, t, hb)
	if err != nil {
		return nil, err
	}
	defer unlock()
	log := a.logger().With("release", t.Release, "region", t.Region, "namespace", t.Namespace, "version", in.Version)
	if owned {
		log = log.With("keelsonRelease", in.Owner.ReleaseID, "run", in.Owner.RunID, "expectRevision", in.ExpectRevision)
	}
	start := time.Now()

	if err := ensureNamespace(ctx, cfg, t.Namespace); err != nil {
		return nil, classify(err, "upgrade %s in %s: create namespace %s", t.Release, t.Region, t.Namespace)
	}
	hist, err := history(cfg, t.Release)
	if err != nil {
		return nil, classify(err, "upgrade %s in %s: read history", t.Release, t.Region)
	}
	last := latest(hist)
	if owned {
		if err := checkUpgradeOwner(fmt.Sprintf("upgrade %s in %s", t.Release, t.Region), last, in); err != nil {
			log.Warn("helm release changed by someone else; not upgrading", "error", err)
			return nil, err
		}
	}

	var rel *release.Release
	if last != nil && last.Info.Status.IsPending() {
		// A worker died mid-operation and left the lock Helm keeps in the
		// release's status; see recoverPending. With an Owner, the
		// revision is this run's (checkUpgradeOwner).
		rel, err = recoverPending(ctx, cfg, hist, last, want, log)
		if err != nil {
			return nil, classify(err, "upgrade %s in %s: recover pending revision %d", t.Release, t.Region, last.Version)
		}
		// rel == nil: it was marked failed; a plain upgrade follows.
	} else if last != nil && last.Info.Status == release.StatusDeployed {
		if got, err := releaseContent(last); err == nil && got == want {
			res := &UpgradeResult{
				Revision:     last.Version,
				ChartVersion: last.Chart.Metadata.Version,
				AppVersion:   last.Chart.Metadata.AppVersion,
				Unchanged:    true,
			}
			if owned {
				res.PreviousRevision = in.ExpectRevision
				res.Changed = madeByRun(last, in.Owner.RunID)
			} else {
				res.PreviousRevision = previousRevision(hist, last.Version, want)
			}
			log.Info("helm release already at target", "revision", last.Version, "changedByThisRun", res.Changed)
			return res, nil
		}
	}

	if rel == nil {
		next := 1
		if last != nil {
			next = last.Version + 1
		}
		rel, err = a.installOrUpgrade(ctx, secrets.config(cfg), in, ch, vals, last, next)
		if err != nil {
			settleFailed(cfg, in, next, secrets.error(err), log)
			secrets.scrub(cfg, t.Release, next, log)
			cerr := classify(err, "upgrade %s in %s", t.Release, t.Region)
			var appErr *temporal.ApplicationError
			if errors.As(cerr, &appErr) && appErr.NonRetryable() {
				return nil, cerr
			}
			if in.Owner.RunID != "" {
				if made, gerr := cfg.Releases.Get(t.Release, next); gerr == nil && made != nil {
					// Helm had begun: the revision exists (failed), objects
					// may have changed. Retrying would only stack more
					// failed revisions; the workflow rolls back instead.
					return nil, temporal.NewNonRetryableApplicationError(
						fmt.Sprintf("upgrade %s in %s: revision %d failed after Helm began applying it: %v", t.Release, t.Region, next, err),
						ErrUpgradeFailed, err)
				}
			}
			return nil, cerr
		}
	}
	res := &UpgradeResult{
		Revision:         rel.Version,
		PreviousRevision: in.ExpectRevision,
		ChartVersion:     rel.Chart.Metadata.Version,
		AppVersion:       rel.Chart.Metadata.AppVersion,
		Changed:          true,
	}
	if !owned {
		// Read the history again: the previous revision is computed the
		// same way a retry that finds this revision deployed computes it.
		hist, err = history(cfg, t.Release)
		if err != nil {
			return nil, classify(err, "upgrade %s in %s: read history", t.Release, t.Region)
		}
		res.PreviousRevision = previousRevision(hist, rel.Version, want)
	}
	log.Info("helm release upgraded", "revision", res.Revision, "previousRevision", res.PreviousRevision,
		"chartVersion", res.ChartVersion, "took", time.Since(start))
	return res, nil
}

// checkUpgradeOwner lets an upgrade with an Owner proceed only when the
// latest revision (nil: none) is the one the run recorded before changing
// anything, or one of its own.
func checkUpgradeOwner(what string, last *release.Release, in UpgradeInput) error {
	expected := fmt.Sprintf("revision %d or a revision of run %s", in.ExpectRevision, in.Owner.RunID)
	if in.ExpectRevision == 0 {
		expected = fmt.Sprintf("no revision (never installed, or uninstalled) or a revision of run %s", in.Owner.RunID)
	}
	switch {
	case madeByRun(last, in.Owner.RunID):
		// An earlier attempt of this run: completed, failed or pending.
		return nil
	case last == nil:
		if in.ExpectRevision == 0 {
			return nil
		}
	case last.Info.Status.IsPending():
		// Someone else's install, upgrade or rollback is under way (or
		// was abandoned): settling it is not this run's business.
		return foreignRevision(what, last, expected)
	case last.Version == in.ExpectRevision:
		return nil
	case in.ExpectRevision == 0 && last.Info.Status == release.StatusUninstalled:
		return nil
	}
	return foreignRevision(what, last, expected)
}

// installOrUpgrade is `helm upgrade --install` without --wait: the values
// replace the previous ones entirely (they are composed in full each time).
// last is the latest revision (nil: none); next the number Helm will give
// the new revision, recorded in its labels when in has an Owner.
func (a *Activities) installOrUpgrade(ctx context.Context, cfg *action.Configuration, in UpgradeInput,
	ch *chart.Chart, vals map[string]any, last *release.Release, next int) (*release.Release, error) {
	t := in.Target
	labels := map[string]string{}
	if key := in.VersionValue; key != "" && key != defaultVersionValue && len(validation.IsValidLabelValue(key)) == 0 {
		labels[versionValueLabel] = key
	}
	if in.Owner.RunID != "" {
		// Helm numbers a new revision one above the latest, install
		// (with Replace) and upgrade alike. Should another revision slip
		// in between, ours gets another number and no longer passes for
		// this run's: the run stops rather than roll anything back.
		maps.Copy(labels, ownerLabels(in.Owner, opUpgrade, next))
	}

	if last == nil || last.Info.Status == release.StatusUninstalled {
		inst := action.NewInstall(cfg)
		inst.ReleaseName = t.Release
		inst.Namespace = t.Namespace
		inst.Timeout = upgradeTimeout
		inst.Replace = last != nil // reuse the name of an uninstalled release kept in history
		inst.Labels = labels
		if in.Rolling != nil {
			inst.PostRenderer = in.Rolling
		}
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
	if in.Rolling != nil {
		up.PostRenderer = in.Rolling
	}
	return up.RunWithContext(ctx, t.Release, ch, vals)
}

// settleFailed marks failed the revision rev of in's run when Helm
// returned err but left it pending: Helm marks a failed install or upgrade
// failed itself, but only logs it when that write fails. A pending
// revision holds Helm's lock on the release; what this does not settle,
// recoverPending settles on the next call. Only the run's own revision is
// touched: without an Owner, rev could be someone else's, in flight.
func settleFailed(cfg *action.Configuration, in UpgradeInput, rev int, err error, log *slog.Logger) {
	if in.Owner.RunID == "" {
		return
	}
	rel, getErr := cfg.Releases.Get(in.Target.Release, rev)
	if getErr != nil || rel.Info == nil || !rel.Info.Status.IsPending() || !madeByRun(rel, in.Owner.RunID) {
		return
	}
	was := rel.Info.Status
	rel.Info.Status = release.StatusFailed
	rel.Info.Description = fmt.Sprintf("%s failed: %v", was, err)
	if upErr := cfg.Releases.Update(rel); upErr != nil {
		log.Warn("could not mark failed helm revision failed; the next attempt will", "revision", rev, "status", was, "error", upErr)
		return
	}
	log.Warn("marked failed helm revision failed", "revision", rev, "status", was)
}

// WaitReady waits for the workloads of the release, heartbeating.
func (a *Activities) WaitReady(ctx context.Context, in WaitInput) error {
	hb := startHeartbeat(ctx)
	defer hb.stop()
	t := in.Target
	if err := validateTarget(t); err != nil {
		return err
	}
	cfg, err := a.config(t)
	if err != nil {
		return classify(err, "wait for %s in %s", t.Release, t.Region)
	}
	return a.waitReady(ctx, cfg, in, hb)
}

// Rollback rolls back to the given revision; idempotent when that
// revision's content is already what is deployed (with an Owner: deployed
// by a rollback of Owner's run). With an Owner it changes nothing unless
// the latest revision was made by Expect's run or Owner's
// (ErrForeignRevision), labels the revision it makes, and can uninstall.
func (a *Activities) Rollback(ctx context.Context, in RollbackInput) (*RollbackResult, error) {
	hb := startHeartbeat(ctx)
	defer hb.stop()
	t := in.Target
	if err := validateTarget(t); err != nil {
		return nil, err
	}
	owned := in.Owner.RunID != ""
	switch {
	case in.Uninstall && (!owned || in.Revision != 0):
		return nil, badInput(fmt.Sprintf("rollback %s in %s: uninstall needs revision 0 and an owner (got revision %d, owner %q)",
			t.Release, t.Region, in.Revision, in.Owner.RunID))
	case in.Revision <= 0 && !in.Uninstall:
		return nil, badInput(fmt.Sprintf("rollback %s in %s: revision %d is not a revision", t.Release, t.Region, in.Revision))
	}
	cfg, err := a.config(t)
	if err != nil {
		return nil, classify(err, "rollback %s in %s", t.Release, t.Region)
	}
	unlock, err := a.lockRelease(ctx, t, hb)
	if err != nil {
		return nil, err
	}
	defer unlock()
	log := a.logger().With("release", t.Release, "region", t.Region, "namespace", t.Namespace, "toRevision", in.Revision)
	if owned {
		log = log.With("keelsonRelease", in.Owner.ReleaseID, "run", in.Owner.RunID)
	}
	start := time.Now()

	hist, err := history(cfg, t.Release)
	if err != nil {
		return nil, classify(err, "rollback %s in %s: read history", t.Release, t.Region)
	}
	last := latest(hist)
	if in.Uninstall {
		return a.uninstall(cfg, in, last, log)
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
		return nil, badInput(fmt.Sprintf("rollback %s in %s: no revision %d (latest is %d)", t.Release, t.Region, in.Revision, last.Version))
	}
	want, err := releaseContent(target)
	if err != nil {
		return nil, badInput(fmt.Sprintf("rollback %s in %s: revision %d: %v", t.Release, t.Region, in.Revision, err))
	}

	if owned {
		if m, ok := makerOf(last); ok && madeByRun(last, in.Owner.RunID) && m.op == opRollback && last.Info.Status == release.StatusDeployed {
			// A retried rollback finds its own revision deployed.
			if got, err := releaseContent(last); err == nil && got == want {
				log.Info("helm release already rolled back by this run", "revision", last.Version)
				return &RollbackResult{Revision: last.Version}, nil
			}
		}
		if !mayUndo(last, in) {
			err := foreignRevision(fmt.Sprintf("rollback %s in %s to revision %d", t.Release, t.Region, in.Revision),
				last, expectedRuns(in))
			log.Warn("helm release changed by someone else; not rolling back", "error", err)
			return nil, err
		}
	}

	if last.Info.Status.IsPending() {
		rel, err := recoverPending(ctx, cfg, hist, last, want, log)
		if err != nil {
			return nil, classify(err, "rollback %s in %s: recover pending revision %d", t.Release, t.Region, last.Version)
		}
		if rel != nil {
			return &RollbackResult{Revision: rel.Version}, nil
		}
	} else if !owned && last.Info.Status == release.StatusDeployed {
		// A retried rollback finds its own revision deployed.
		if got, err := releaseContent(last); err == nil && got == want {
			log.Info("helm release already at rollback target", "revision", last.Version)
			return &RollbackResult{Revision: last.Version}, nil
		}
	}

	rbCfg := cfg
	if owned {
		// Rollback copies the labels of the revision it returns to; the
		// new revision gets the Owner's from its creation instead.
		labels := ownerLabels(in.Owner, opRollback, 0)
		delete(labels, labelRevision) // labelingDriver sets it
		rbCfg = labeling(cfg, labels)
	}
	rb := action.NewRollback(rbCfg)
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

// mayUndo tells whether a rollback or uninstall with in.Owner may undo
// the latest revision last: only if in.Expect's run made it (Owner's when
// Expect is nil), or Owner's own run (a retry, or its own change).
func mayUndo(last *release.Release, in RollbackInput) bool {
	if in.Expect != nil && madeByRun(last, in.Expect.RunID) {
		return true
	}
	return madeByRun(last, in.Owner.RunID)
}

// expectedRuns says which runs' revisions mayUndo accepts, for errors.
func expectedRuns(in RollbackInput) string {
	if in.Expect == nil || labelValue(in.Expect.RunID) == labelValue(in.Owner.RunID) {
		return "a revision of run " + in.Owner.RunID
	}
	return fmt.Sprintf("a revision of run %s or of run %s", in.Expect.RunID, in.Owner.RunID)
}

// uninstall undoes a failed first install: `helm uninstall --keep-history`
// (the history stays readable), without waiting for the objects to go.
// The release must be in.Owner's (or in.Expect's) to uninstall; a release
// already uninstalled or gone is reported uninstalled.
func (a *Activities) uninstall(cfg *action.Configuration, in RollbackInput, last *release.Release, log *slog.Logger) (*RollbackResult, error) {
	t := in.Target
	what := fmt.Sprintf("uninstall %s in %s", t.Release, t.Region)
	if last == nil {
		log.Info("helm release already gone")
		return &RollbackResult{Uninstalled: true}, nil
	}
	if last.Info.Status == release.StatusUninstalled {
		log.Info("helm release already uninstalled", "revision", last.Version)
		return &RollbackResult{Revision: last.Version, Uninstalled: true}, nil
	}
	if !mayUndo(last, in) {
		err := foreignRevision(what, last, expectedRuns(in))
		log.Warn("helm release changed by someone else; not uninstalling", "error", err)
		return nil, err
	}
	start := time.Now()
	un := action.NewUninstall(cfg)
	un.KeepHistory = true
	un.Timeout = upgradeTimeout
	un.Description = fmt.Sprintf("Uninstalled by Keelson release %s (run %s)", in.Owner.ReleaseID, in.Owner.RunID)
	if _, err := un.Run(t.Release); err != nil {
		return nil, classify(err, "%s", what)
	}
	// Uninstall only logs a failure to store the uninstalled status: read
	// it back, and let a retry finish the job if it is not there.
	rel, err := cfg.Releases.Last(t.Release)
	if err != nil {
		return nil, classify(err, "%s: read result", what)
	}
	if rel.Info.Status != release.StatusUninstalled {
		return nil, fmt.Errorf("%s: revision %d is %s after uninstalling: %s", what, rel.Version, rel.Info.Status, rel.Info.Description)
	}
	log.Info("helm release uninstalled", "revision", rel.Version, "took", time.Since(start))
	return &RollbackResult{Revision: rel.Version, Uninstalled: true}, nil
}

// chartPath is where the chart of in is on this worker: inside its
// release's bundle (fetched, checked against its digest and cached), or
// ChartPath itself for releases started before bundles. A bad bundle is
// a non-retryable error naming the digest, before anything is changed.
func (a *Activities) chartPath(ctx context.Context, in UpgradeInput) (string, error) {
	if in.Bundle == "" {
		return in.ChartPath, nil
	}
	if a.Bundles == nil {
		return "", temporal.NewNonRetryableApplicationError("helm activities: this worker has no bundle cache", ErrBadBundle, nil)
	}
	p, err := a.Bundles.Resolve(ctx, in.Bundle, in.ChartPath)
	if err != nil {
		msg := fmt.Sprintf("upgrade %s in %s: %v", in.Target.Release, in.Target.Region, err) // err names the bundle
		if bundle.Invalid(err) {
			return "", temporal.NewNonRetryableApplicationError(msg, ErrBadBundle, err)
		}
		return "", fmt.Errorf("%s", msg)
	}
	return p, nil
}

// Snapshot returns the latest revision of Target, whatever its status, or
// a zero Revision (Revision 0) when the release was never installed or is
// uninstalled. The workflow records it as a region's baseline before
// changing anything (UpgradeInput.ExpectRevision), and reads it after a
// failed upgrade to learn whether the latest revision is its own.
func (a *Activities) Snapshot(ctx context.Context, in Target) (*Revision, error) {
	hb := startHeartbeat(ctx)
	defer hb.stop()
	return a.snapshot(in)
}

// SnapshotAllInput names every region a release will change.
type SnapshotAllInput struct {
	Targets []Target `json:"targets"`
}

// SnapshotAll is Snapshot of every target at once, in the order given: one
// activity for the whole release instead of one per region, so that the
// release's history holds three events for it rather than three per region
// and a workflow task for each completion. Snapshots only read, so one
// failed region retries them all at no risk; the error names every region
// that failed, and is non-retryable only when every failure is.
func (a *Activities) SnapshotAll(ctx context.Context, in SnapshotAllInput) ([]Revision, error) {
	hb := startHeartbeat(ctx)
	defer hb.stop()
	out := make([]Revision, len(in.Targets))
	errs := make([]error, len(in.Targets))
	// A few at a time: each reaches its own cluster, and a release of many
	// regions must not open them all at once.
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, t := range in.Targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			rev, err := a.snapshot(t)
			if err != nil {
				errs[i] = err
				return
			}
			out[i] = *rev
		}()
	}
	wg.Wait()
	var failed []error
	retryable := false
	for _, err := range errs {
		if err == nil {
			continue
		}
		failed = append(failed, err)
		var appErr *temporal.ApplicationError
		if !errors.As(err, &appErr) || !appErr.NonRetryable() {
			retryable = true
		}
	}
	switch {
	case len(failed) == 0:
		return out, nil
	case len(failed) == 1:
		return nil, failed[0]
	case retryable:
		return nil, errors.Join(failed...)
	}
	return nil, temporal.NewNonRetryableApplicationError(errors.Join(failed...).Error(), ErrBadInput, nil)
}

func (a *Activities) snapshot(in Target) (*Revision, error) {
	if err := validateTarget(in); err != nil {
		return nil, err
	}
	cfg, err := a.config(in)
	if err != nil {
		return nil, classify(err, "snapshot of %s in %s", in.Release, in.Region)
	}
	hist, err := history(cfg, in.Release)
	if err != nil {
		return nil, classify(err, "snapshot of %s in %s", in.Release, in.Region)
	}
	last := latest(hist)
	if last == nil || (last.Info != nil && last.Info.Status == release.StatusUninstalled) {
		return &Revision{}, nil
	}
	r := toRevision(last)
	for i := len(hist) - 1; i >= 0; i-- {
		if hist[i].Info != nil && hist[i].Info.Status == release.StatusDeployed {
			r.Deployed = hist[i].Version
			break
		}
	}
	return &r, nil
}

// Status returns the current revision of Target.
func (a *Activities) Status(ctx context.Context, in Target) (*Revision, error) {
	hb := startHeartbeat(ctx)
	defer hb.stop()
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
	hb := startHeartbeat(ctx)
	defer hb.stop()
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
	if m, ok := makerOf(rel); ok {
		r.ReleaseID, r.RunID, r.Operation = m.releaseID, m.runID, m.op
	}
	return r
}
