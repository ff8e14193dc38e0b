package helm

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/release"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Two runs, as the workflow sends them: release ids and run UUIDs.
var (
	runA = Owner{ReleaseID: "release-demo-1.0.0", RunID: "5d0c7c1e-4a8e-4f4e-9d7a-0a0000000001"}
	runB = Owner{ReleaseID: "release-demo-2.0.0", RunID: "5d0c7c1e-4a8e-4f4e-9d7a-0b0000000002"}
)

func (h *harness) ownedUpgrade(version string, o Owner, expect int) UpgradeInput {
	in := h.upgradeInput(version)
	in.Owner, in.ExpectRevision = o, expect
	return in
}

func (h *harness) rollbackWith(in RollbackInput) (*RollbackResult, error) {
	h.t.Helper()
	in.Target = h.target
	start := time.Now()
	v, err := h.env.ExecuteActivity(h.acts.Rollback, in)
	if err != nil {
		return nil, err
	}
	var res RollbackResult
	require.NoError(h.t, v.Get(&res))
	h.t.Logf("measured: rollback to revision %d (uninstall %t): %+v in %s", in.Revision, in.Uninstall, res, time.Since(start).Round(time.Millisecond))
	return &res, nil
}

func (h *harness) snapshot() Revision {
	h.t.Helper()
	v, err := h.env.ExecuteActivity(h.acts.Snapshot, h.target)
	require.NoError(h.t, err)
	var r Revision
	require.NoError(h.t, v.Get(&r))
	return r
}

// storedLabels are the custom labels of a revision as Helm stored them.
func (h *harness) storedLabels(rev int) map[string]string {
	h.t.Helper()
	cfg, err := h.acts.config(h.target)
	require.NoError(h.t, err)
	rel, err := cfg.Releases.Get(h.target.Release, rev)
	require.NoError(h.t, err)
	return rel.Labels
}

// handUpgrade is `helm upgrade` by hand: a plain action.Upgrade from its
// own configuration, no labels given (Helm copies the previous revision's).
func (h *harness) handUpgrade(version string) *release.Release {
	h.t.Helper()
	in := h.upgradeInput(version)
	vals, err := composeValues(in)
	require.NoError(h.t, err)
	ch, err := loadChart(in.ChartPath)
	require.NoError(h.t, err)
	cfg, err := (&Activities{Kubeconfig: kubeconfig}).config(h.target)
	require.NoError(h.t, err)
	up := action.NewUpgrade(cfg)
	up.Namespace = h.target.Namespace
	up.ResetValues = true
	rel, err := up.RunWithContext(context.Background(), h.target.Release, ch, vals)
	require.NoError(h.t, err)
	require.Equal(h.t, release.StatusDeployed, rel.Info.Status)
	return rel
}

// requireNoPending fails when a revision holds Helm's pending lock.
func requireNoPending(t *testing.T, revs []Revision) {
	t.Helper()
	for _, r := range revs {
		require.False(t, strings.HasPrefix(r.Status, "pending"), "revision %d is %s", r.Revision, r.Status)
	}
}

func TestOwnershipLabelsOnEveryRevision(t *testing.T) {
	h := newHarness(t, "owner-labels")

	require.Equal(t, Revision{}, h.snapshot(), "a release never installed has revision 0")

	in := h.ownedUpgrade("1.0.0", runA, 0)
	in.VersionValue = "image.tag"
	first := h.mustUpgrade(in)
	require.Equal(t, UpgradeResult{Revision: 1, ChartVersion: "0.1.0", AppVersion: "1.0.0", Changed: true}, *first)

	in = h.ownedUpgrade("2.0.0", runB, 1)
	in.VersionValue = "image.tag"
	second := h.mustUpgrade(in)
	require.Equal(t, UpgradeResult{Revision: 2, PreviousRevision: 1, ChartVersion: "0.1.0", AppVersion: "1.0.0", Changed: true}, *second)

	rb, err := h.rollbackWith(RollbackInput{Revision: 1, Owner: runB})
	require.NoError(t, err)
	require.Equal(t, RollbackResult{Revision: 3}, *rb)

	revs := h.history()
	require.Len(t, revs, 3)
	for i, want := range []struct {
		owner           Owner
		op, version, st string
	}{
		{runA, "upgrade", "1.0.0", "superseded"},
		{runB, "upgrade", "2.0.0", "superseded"},
		{runB, "rollback", "1.0.0", "deployed"},
	} {
		r := revs[i]
		require.Equal(t, i+1, r.Revision)
		require.Equal(t, want.owner.ReleaseID, r.ReleaseID, "revision %d", r.Revision)
		require.Equal(t, want.owner.RunID, r.RunID, "revision %d", r.Revision)
		require.Equal(t, want.op, r.Operation, "revision %d", r.Revision)
		require.Equal(t, want.version, r.Version, "revision %d: the version is still read at VersionValue", r.Revision)
		require.Equal(t, want.st, r.Status, "revision %d", r.Revision)
	}
	latest := revs[2]
	latest.Deployed = 3
	require.Equal(t, latest, h.snapshot())

	// What Helm stored: the rollback's labels are runB's, not the copy of
	// revision 1's that action.Rollback makes.
	require.Equal(t, map[string]string{
		LabelRelease: runB.ReleaseID, LabelRun: runB.RunID, LabelOp: "rollback",
		labelRevision: "3", versionValueLabel: "image.tag",
	}, h.storedLabels(3))
	require.Equal(t, map[string]string{
		LabelRelease: runA.ReleaseID, LabelRun: runA.RunID, LabelOp: "upgrade",
		labelRevision: "1", versionValueLabel: "image.tag",
	}, h.storedLabels(1))
}

func TestForeignRevisionStopsUpgradeAndRollback(t *testing.T) {
	h := newHarness(t, "foreign")
	h.mustUpgrade(h.ownedUpgrade("1.0.0", runA, 0))
	h.mustUpgrade(h.ownedUpgrade("2.0.0", runB, 1))
	hand := h.handUpgrade("9.9.9-hand")
	require.Equal(t, 3, hand.Version)
	require.Equal(t, runB.RunID, hand.Labels[LabelRun], "Helm copies the custom labels to a revision made by hand")

	requireForeign := func(err error) {
		t.Helper()
		appErr := requireAppError(t, err, ErrForeignRevision)
		msg := appErr.Error()
		for _, part := range []string{
			"revision 3 not made by Keelson", "status deployed", "chart app-0.1.0", "version 9.9.9-hand",
			"deployed " + hand.Info.LastDeployed.UTC().Format(time.RFC3339), `description "Upgrade complete"`,
		} {
			require.Contains(t, msg, part)
		}
		var details Revision
		require.NoError(t, appErr.Details(&details))
		require.Equal(t, 3, details.Revision)
		require.Equal(t, "", details.RunID, "copied labels do not make a revision Keelson's")
		require.Equal(t, "9.9.9-hand", details.Version)
		t.Logf("error: %v", appErr)
	}
	requireUntouched := func() {
		t.Helper()
		revs := h.history()
		require.Len(t, revs, 3)
		require.Equal(t, "deployed", revs[2].Status)
		require.Equal(t, "9.9.9-hand", revs[2].Version)
		version, _ := h.configMap()
		require.Equal(t, "9.9.9-hand", version)
	}

	// runB, retried after the hand upgrade, and a newer run that recorded
	// revision 2 as its baseline before the hand upgrade.
	_, err := h.upgrade(h.ownedUpgrade("2.0.0", runB, 1))
	requireForeign(err)
	_, err = h.upgrade(h.ownedUpgrade("3.0.0", Owner{ReleaseID: "release-demo-3.0.0", RunID: "run-c"}, 2))
	requireForeign(err)
	requireUntouched()

	// runB's rollback of its own upgrade, and a rollback expecting it.
	_, err = h.rollbackWith(RollbackInput{Revision: 1, Owner: runB})
	requireForeign(err)
	_, err = h.rollbackWith(RollbackInput{Revision: 1, Owner: runA, Expect: &runB})
	requireForeign(err)
	_, err = h.rollbackWith(RollbackInput{Uninstall: true, Owner: runB})
	requireForeign(err)
	requireUntouched()

	// Without an owner, the old behaviour: upgrade over anything.
	res := h.mustUpgrade(h.upgradeInput("4.0.0"))
	require.Equal(t, 4, res.Revision)
}

func TestChangedSaysWhetherTheRunMadeTheRevision(t *testing.T) {
	h := newHarness(t, "changed")
	first := h.mustUpgrade(h.ownedUpgrade("1.0.0", runA, 0))
	require.Equal(t, UpgradeResult{Revision: 1, ChartVersion: "0.1.0", AppVersion: "1.0.0", Changed: true}, *first)

	// The same run retried: its revision is there, and it is its own.
	again := h.mustUpgrade(h.ownedUpgrade("1.0.0", runA, 0))
	require.Equal(t, UpgradeResult{Revision: 1, ChartVersion: "0.1.0", AppVersion: "1.0.0", Unchanged: true, Changed: true}, *again)

	// Another run of the same target finds it deployed by runA.
	rerun := h.mustUpgrade(h.ownedUpgrade("1.0.0", runB, 1))
	require.Equal(t, UpgradeResult{Revision: 1, PreviousRevision: 1, ChartVersion: "0.1.0", AppVersion: "1.0.0", Unchanged: true}, *rerun)
	require.Len(t, h.history(), 1)
}

func TestFailedFirstInstallIsUninstalled(t *testing.T) {
	h := newHarness(t, "failed-install")
	require.Equal(t, Revision{}, h.snapshot())

	in := h.ownedUpgrade("1.0.0", runA, 0)
	in.RegionValues = map[string]any{"refuse": true}
	_, err := h.upgrade(in)
	requireAppError(t, err, ErrInvalidValues)
	t.Logf("error: %v", err)

	snap := h.snapshot()
	require.Equal(t, 1, snap.Revision)
	require.Equal(t, "failed", snap.Status)
	require.Equal(t, runA.RunID, snap.RunID)
	require.Equal(t, runA.ReleaseID, snap.ReleaseID)
	require.Equal(t, "upgrade", snap.Operation)
	require.Equal(t, 0, snap.Deployed)

	// Another run may not uninstall it.
	_, err = h.rollbackWith(RollbackInput{Uninstall: true, Owner: runB})
	requireAppError(t, err, ErrForeignRevision)

	res, err := h.rollbackWith(RollbackInput{Uninstall: true, Owner: runA})
	require.NoError(t, err)
	require.Equal(t, RollbackResult{Revision: 1, Uninstalled: true}, *res)
	require.Equal(t, Revision{}, h.snapshot(), "an uninstalled release has revision 0")
	revs := h.history()
	require.Len(t, revs, 1, "the history is kept")
	require.Equal(t, "uninstalled", revs[0].Status)
	require.Equal(t, runA.RunID, revs[0].RunID)

	cs := h.clientset()
	for _, name := range []string{"app-values", "app"} {
		_, err := cs.CoreV1().ConfigMaps(h.target.Namespace).Get(context.Background(), name, metav1.GetOptions{})
		require.True(t, apierrors.IsNotFound(err), "configmap %s: %v", name, err)
	}
	_, err = cs.AppsV1().Deployments(h.target.Namespace).Get(context.Background(), "app", metav1.GetOptions{})
	require.True(t, apierrors.IsNotFound(err), "deployment app: %v", err)

	// A retried uninstall.
	res, err = h.rollbackWith(RollbackInput{Uninstall: true, Owner: runA})
	require.NoError(t, err)
	require.Equal(t, RollbackResult{Revision: 1, Uninstalled: true}, *res)

	// Revision 0 without Uninstall is still bad input.
	_, err = h.rollbackWith(RollbackInput{Owner: runA})
	requireAppError(t, err, ErrBadInput)

	// The next release installs afresh over the uninstalled one.
	next := h.mustUpgrade(h.ownedUpgrade("1.0.1", runB, 0))
	require.Equal(t, UpgradeResult{Revision: 2, ChartVersion: "0.1.0", AppVersion: "1.0.0", Changed: true}, *next)
	require.NoError(t, h.waitReady(next.Revision, 2*time.Minute))
}

func TestFailedUpgradeIsRolledBackToExpectedRevision(t *testing.T) {
	h := newHarness(t, "failed-upgrade")
	h.mustUpgrade(h.ownedUpgrade("1.0.0", runA, 0))

	in := h.ownedUpgrade("2.0.0", runB, 1)
	in.RegionValues = map[string]any{"refuse": true}
	_, err := h.upgrade(in)
	requireAppError(t, err, ErrInvalidValues)

	snap := h.snapshot()
	require.Equal(t, 2, snap.Revision)
	require.Equal(t, "failed", snap.Status)
	require.Equal(t, runB.RunID, snap.RunID)
	require.Equal(t, 1, snap.Deployed, "the failed upgrade left revision 1 deployed")
	requireNoPending(t, h.history())

	rb, err := h.rollbackWith(RollbackInput{Revision: 1, Owner: runB})
	require.NoError(t, err)
	require.Equal(t, 3, rb.Revision)
	require.NoError(t, h.waitReady(rb.Revision, 2*time.Minute))

	// A retried rollback makes no new revision.
	again, err := h.rollbackWith(RollbackInput{Revision: 1, Owner: runB})
	require.NoError(t, err)
	require.Equal(t, 3, again.Revision)

	revs := h.history()
	require.Len(t, revs, 3)
	requireNoPending(t, revs)
	require.Equal(t, []string{"superseded", "failed", "deployed"}, []string{revs[0].Status, revs[1].Status, revs[2].Status})
	require.Equal(t, "1.0.0", revs[2].Version)
	require.Equal(t, "rollback", revs[2].Operation)
	version, _ := h.configMap()
	require.Equal(t, "1.0.0", version)
	_, err = h.clientset().CoreV1().ConfigMaps(h.target.Namespace).Get(context.Background(), "app-refused", metav1.GetOptions{})
	require.True(t, apierrors.IsNotFound(err), "the refused object never existed: %v", err)
}

func (h *harness) clientset() kubernetes.Interface {
	h.t.Helper()
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig},
		&clientcmd.ConfigOverrides{CurrentContext: kubeContext},
	).ClientConfig()
	require.NoError(h.t, err)
	cs, err := kubernetes.NewForConfig(rc)
	require.NoError(h.t, err)
	return cs
}

func TestLabelValue(t *testing.T) {
	for _, id := range []string{runA.ReleaseID, runA.RunID, "release-demo-1.2.0"} {
		require.Equal(t, id, labelValue(id), "a valid label value is kept")
	}
	for _, id := range []string{
		"release demo/1.2.0+build.7",
		"-leading-and-trailing-",
		"///",
		strings.Repeat("x", 80),
		"ünïcode",
	} {
		v := labelValue(id)
		require.Empty(t, validation.IsValidLabelValue(v), "%q -> %q", id, v)
		require.Equal(t, v, labelValue(id), "deterministic")
		require.NotEqual(t, v, labelValue(id+"x"), "distinct ids, distinct values")
	}
	require.Equal(t, "release-demo-1.2.0-build.7-", labelValue("release demo/1.2.0+build.7")[:27])
}

// TestOwnershipWireNames pins the names the workflow codes against: the
// labels, the error type and the JSON of what crosses the history.
func TestOwnershipWireNames(t *testing.T) {
	require.Equal(t, "keelson.dev/release", LabelRelease)
	require.Equal(t, "keelson.dev/run", LabelRun)
	require.Equal(t, "keelson.dev/operation", LabelOp)
	require.Equal(t, "HelmForeignRevision", ErrForeignRevision)

	for _, c := range []struct {
		v    any
		want string
	}{
		{UpgradeInput{Owner: runA, ExpectRevision: 3}, `"owner":{"releaseId":"release-demo-1.0.0","runId":"5d0c7c1e-4a8e-4f4e-9d7a-0a0000000001"},"expectRevision":3`},
		{UpgradeResult{Changed: true}, `"changed":true`},
		{RollbackInput{Owner: runA, Expect: &runB, Uninstall: true}, `"expect":{"releaseId":"release-demo-2.0.0","runId":"5d0c7c1e-4a8e-4f4e-9d7a-0b0000000002"},"uninstall":true`},
		{RollbackResult{Uninstalled: true}, `"uninstalled":true`},
		{Revision{ReleaseID: "r", RunID: "u", Operation: "rollback"}, `"releaseId":"r","runId":"u","operation":"rollback"`},
	} {
		data, err := json.Marshal(c.v)
		require.NoError(t, err)
		require.Contains(t, string(data), c.want)
	}
	// An input of a history that predates ownership decodes to no owner.
	var in UpgradeInput
	require.NoError(t, json.Unmarshal([]byte(`{"target":{"release":"app"},"version":"1.0.0"}`), &in))
	require.Equal(t, Owner{}, in.Owner)

	var appErr *temporal.ApplicationError
	require.True(t, errors.As(foreignRevision("upgrade app in eu-1", nil, "revision 2"), &appErr))
	require.True(t, appErr.NonRetryable())
	require.Equal(t, ErrForeignRevision, appErr.Type())
}
