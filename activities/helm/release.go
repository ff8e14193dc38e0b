package helm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sort"

	"go.temporal.io/sdk/temporal"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/kube"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage/driver"
	helmtime "helm.sh/helm/v3/pkg/time"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/cli-runtime/pkg/resource"
)

// loadChart loads a chart directory or archive. A missing chart is a
// non-retryable ErrChartNotFound, a chart that does not load ErrBadInput.
func loadChart(path string) (*chart.Chart, error) {
	if path == "" {
		return nil, badInput("no chart path")
	}
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("chart %s not found", path), ErrChartNotFound, err)
		}
		return nil, fmt.Errorf("load chart %s: %w", path, err)
	}
	ch, err := loader.Load(path)
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("load chart %s: %v", path, err), ErrBadInput, err)
	}
	return ch, nil
}

// checkRender renders the chart without the cluster (lookup returns
// nothing, capabilities are Helm's defaults), as Helm will with it.
func checkRender(ch *chart.Chart, vals map[string]any, t Target) error {
	if err := chartutil.ProcessDependenciesWithMerge(ch, vals); err != nil {
		return err
	}
	opts := chartutil.ReleaseOptions{Name: t.Release, Namespace: t.Namespace, Revision: 1, IsInstall: true}
	top, err := chartutil.ToRenderValuesWithSchemaValidation(ch, vals, opts, chartutil.DefaultCapabilities, false)
	if err != nil {
		return err
	}
	_, err = engine.Render(ch, top)
	return err
}

// history returns the release's revisions, oldest first; none when the
// release has never been installed.
func history(cfg *action.Configuration, name string) ([]*release.Release, error) {
	hist, err := cfg.Releases.History(name)
	if errors.Is(err, driver.ErrReleaseNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	sort.Slice(hist, func(i, j int) bool { return hist[i].Version < hist[j].Version })
	return hist, nil
}

func latest(hist []*release.Release) *release.Release {
	if len(hist) == 0 {
		return nil
	}
	return hist[len(hist)-1]
}

// previousRevision is the last revision before rev that was deployed (it is
// deployed or superseded, not failed) with content other than want: what a
// rollback of this release returns to. It depends only on the history, so a
// retry that finds rev already deployed reports the same revision as the
// attempt that made it.
func previousRevision(hist []*release.Release, rev int, want content) int {
	for i := len(hist) - 1; i >= 0; i-- {
		r := hist[i]
		if r.Version >= rev || r.Info == nil {
			continue
		}
		if r.Info.Status != release.StatusDeployed && r.Info.Status != release.StatusSuperseded {
			continue
		}
		if got, err := releaseContent(r); err == nil && got != want {
			return r.Version
		}
	}
	return 0
}

// recoverPending resolves a revision left pending-install, pending-upgrade
// or pending-rollback by a worker that died in the middle of the operation.
// Helm treats a pending status as a lock and refuses to upgrade, so a retry
// has to settle it, and must do so without making a second revision for
// the same target:
//   - if the pending revision already holds want (the interrupted attempt
//     was for this very target), its manifest is applied again and it is
//     marked deployed: it becomes the one new revision, and it is returned;
//   - otherwise it is marked failed and nil is returned, and the caller
//     makes its own revision.
//
// Hooks of the pending revision are not run again.
func recoverPending(ctx context.Context, cfg *action.Configuration, hist []*release.Release, pending *release.Release,
	want content, log *slog.Logger) (*release.Release, error) {
	got, err := releaseContent(pending)
	if err != nil || got != want {
		was := pending.Info.Status
		log.Warn("marking interrupted helm revision failed", "revision", pending.Version, "status", was)
		pending.Info.Status = release.StatusFailed
		pending.Info.Description = fmt.Sprintf("Interrupted while %s; marked failed by keelson before a new attempt", was)
		if err := cfg.Releases.Update(pending); err != nil {
			return nil, fmt.Errorf("mark revision %d failed: %w", pending.Version, err)
		}
		return nil, nil
	}

	log.Warn("completing interrupted helm revision", "revision", pending.Version, "status", pending.Info.Status)
	var deployed *release.Release
	for _, r := range hist {
		if r.Version != pending.Version && r.Info != nil && r.Info.Status == release.StatusDeployed {
			deployed = r
		}
	}
	kc := cfg.KubeClient
	original := kube.ResourceList{}
	if deployed != nil {
		if original, err = kc.Build(bytes.NewBufferString(deployed.Manifest), false); err != nil {
			return nil, fmt.Errorf("build objects of revision %d: %w", deployed.Version, err)
		}
	}
	target, err := kc.Build(bytes.NewBufferString(pending.Manifest), false)
	if err != nil {
		return nil, fmt.Errorf("build objects of revision %d: %w", pending.Version, err)
	}
	if err := target.Visit(setOwnership(pending.Name, pending.Namespace)); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Update creates what the interrupted attempt had not created yet and
	// patches what it had.
	if _, err := kc.Update(original, target, false); err != nil {
		return nil, fmt.Errorf("apply revision %d: %w", pending.Version, err)
	}
	// Pending first, then the old one: dying in between leaves two
	// deployed revisions, which Helm handles (it takes the latest), rather
	// than none.
	pending.Info.Status = release.StatusDeployed
	pending.Info.Description = "Completed by keelson after an interrupted attempt"
	pending.Info.LastDeployed = helmtime.Now()
	if err := cfg.Releases.Update(pending); err != nil {
		return nil, fmt.Errorf("mark revision %d deployed: %w", pending.Version, err)
	}
	if deployed != nil {
		deployed.Info.Status = release.StatusSuperseded
		if err := cfg.Releases.Update(deployed); err != nil {
			return nil, fmt.Errorf("mark revision %d superseded: %w", deployed.Version, err)
		}
	}
	return pending, nil
}

// setOwnership puts on each object the label and annotations by which Helm
// recognises the objects of a release (what Helm's own upgrade does), so
// later upgrades adopt objects created during recovery.
func setOwnership(name, namespace string) resource.VisitorFunc {
	return func(info *resource.Info, err error) error {
		if err != nil {
			return err
		}
		acc, err := meta.Accessor(info.Object)
		if err != nil {
			return fmt.Errorf("%s/%s: %w", info.Mapping.GroupVersionKind.Kind, info.Name, err)
		}
		labels := acc.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		labels["app.kubernetes.io/managed-by"] = "Helm"
		acc.SetLabels(labels)
		ann := acc.GetAnnotations()
		if ann == nil {
			ann = map[string]string{}
		}
		ann["meta.helm.sh/release-name"] = name
		ann["meta.helm.sh/release-namespace"] = namespace
		acc.SetAnnotations(ann)
		return nil
	}
}
