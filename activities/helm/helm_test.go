package helm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/release"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/keelson-dev/keelson/internal/labtest"
)

const chartPath = "testdata/app"

// The package's tests share one kwok cluster; each test works in its own
// namespace.
var (
	kubeconfig  string
	kubeContext string
)

func TestMain(m *testing.M) {
	cluster, err := labtest.Start("helm")
	if err != nil {
		// Fail, never skip: these tests are worth nothing without the lab.
		fmt.Fprintf(os.Stderr, "helm tests need a kwok cluster: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "measured: kwok cluster with 2 nodes started in %s\n", cluster.Started.Round(time.Millisecond))
	kubeconfig, kubeContext = cluster.Kubeconfig, cluster.Context
	code := m.Run()
	if err := cluster.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "stop kwok cluster: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// harness runs activities through the SDK's activity environment, so that
// heartbeats and error conversion behave as in a worker. (The SDK throttles
// heartbeats; captureHeartbeats sees them all.)
type harness struct {
	t      *testing.T
	acts   *Activities
	env    *testsuite.TestActivityEnvironment
	target Target
}

func newHarness(t *testing.T, namespace string) *harness {
	t.Helper()
	h := &harness{
		t:    t,
		acts: &Activities{Kubeconfig: kubeconfig},
		target: Target{
			Region:      "eu-test-1",
			KubeContext: kubeContext,
			Namespace:   namespace,
			Release:     "app",
		},
	}
	var s testsuite.WorkflowTestSuite
	h.env = s.NewTestActivityEnvironment()
	h.env.RegisterActivity(h.acts)
	return h
}

func (h *harness) upgradeInput(version string) UpgradeInput {
	return UpgradeInput{Target: h.target, ChartPath: chartPath, Version: version}
}

func (h *harness) upgrade(in UpgradeInput) (*UpgradeResult, error) {
	h.t.Helper()
	start := time.Now()
	v, err := h.env.ExecuteActivity(h.acts.Upgrade, in)
	if err != nil {
		return nil, err
	}
	var res UpgradeResult
	require.NoError(h.t, v.Get(&res))
	h.t.Logf("measured: upgrade to %s: revision %d in %s", in.Version, res.Revision, time.Since(start).Round(time.Millisecond))
	return &res, nil
}

func (h *harness) mustUpgrade(in UpgradeInput) *UpgradeResult {
	h.t.Helper()
	res, err := h.upgrade(in)
	require.NoError(h.t, err)
	return res
}

func (h *harness) waitReady(rev int, timeout time.Duration) error {
	h.t.Helper()
	start := time.Now()
	_, err := h.env.ExecuteActivity(h.acts.WaitReady, WaitInput{Target: h.target, Revision: rev, Timeout: timeout})
	h.t.Logf("measured: wait for revision %d: %s (err: %v)", rev, time.Since(start).Round(time.Millisecond), err)
	return err
}

func (h *harness) rollback(rev int) *RollbackResult {
	h.t.Helper()
	start := time.Now()
	v, err := h.env.ExecuteActivity(h.acts.Rollback, RollbackInput{Target: h.target, Revision: rev})
	require.NoError(h.t, err)
	var res RollbackResult
	require.NoError(h.t, v.Get(&res))
	h.t.Logf("measured: rollback to revision %d: revision %d in %s", rev, res.Revision, time.Since(start).Round(time.Millisecond))
	return &res
}

func (h *harness) history() []Revision {
	h.t.Helper()
	v, err := h.env.ExecuteActivity(h.acts.History, h.target)
	require.NoError(h.t, err)
	var revs []Revision
	require.NoError(h.t, v.Get(&revs))
	return revs
}

// configMap reads what the chart rendered into the cluster, with client-go.
func (h *harness) configMap() (version string, values map[string]any) {
	h.t.Helper()
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig},
		&clientcmd.ConfigOverrides{CurrentContext: kubeContext},
	).ClientConfig()
	require.NoError(h.t, err)
	cs, err := kubernetes.NewForConfig(rc)
	require.NoError(h.t, err)
	cm, err := cs.CoreV1().ConfigMaps(h.target.Namespace).Get(context.Background(), h.target.Release+"-values", metav1.GetOptions{})
	require.NoError(h.t, err)
	require.NoError(h.t, json.Unmarshal([]byte(cm.Data["values.json"]), &values))
	return cm.Data["version"], values
}

func requireAppError(t *testing.T, err error, typ string) *temporal.ApplicationError {
	t.Helper()
	require.Error(t, err)
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(err, &appErr), "want an application error, got %T: %v", err, err)
	require.Equal(t, typ, appErr.Type(), "error: %v", err)
	require.True(t, appErr.NonRetryable(), "%s must not be retried: %v", typ, err)
	return appErr
}

func TestUpgradeInstallsThenUpgradesIdempotently(t *testing.T) {
	h := newHarness(t, "upgrade")

	first := h.mustUpgrade(h.upgradeInput("1.0.0"))
	require.Equal(t, UpgradeResult{Revision: 1, PreviousRevision: 0, ChartVersion: "0.1.0", AppVersion: "1.0.0", Changed: true}, *first)

	second := h.mustUpgrade(h.upgradeInput("2.0.0"))
	require.Equal(t, 2, second.Revision)
	require.Equal(t, 1, second.PreviousRevision)
	require.False(t, second.Unchanged)
	require.True(t, second.Changed)

	// A retried activity: same target, no new revision, same previous.
	again := h.mustUpgrade(h.upgradeInput("2.0.0"))
	require.Equal(t, UpgradeResult{Revision: 2, PreviousRevision: 1, ChartVersion: "0.1.0", AppVersion: "1.0.0", Unchanged: true}, *again)

	// Different values at the same version is a change.
	in := h.upgradeInput("2.0.0")
	in.RegionValues = map[string]any{"replicas": 2}
	third := h.mustUpgrade(in)
	require.Equal(t, 3, third.Revision)
	require.Equal(t, 2, third.PreviousRevision)

	revs := h.history()
	require.Len(t, revs, 3)
	for i, want := range []struct{ status, version string }{
		{"superseded", "1.0.0"}, {"superseded", "2.0.0"}, {"deployed", "2.0.0"},
	} {
		require.Equal(t, i+1, revs[i].Revision)
		require.Equal(t, want.status, revs[i].Status, "revision %d", i+1)
		require.Equal(t, want.version, revs[i].Version, "revision %d", i+1)
		require.Equal(t, "0.1.0", revs[i].ChartVersion)
	}

	v, err := h.env.ExecuteActivity(h.acts.Status, h.target)
	require.NoError(t, err)
	var st Revision
	require.NoError(t, v.Get(&st))
	require.Equal(t, 3, st.Revision)
	require.Equal(t, "deployed", st.Status)

	version, _ := h.configMap()
	require.Equal(t, "2.0.0", version)
}

func TestValuesCompositionReachesCluster(t *testing.T) {
	h := newHarness(t, "values")
	in := h.upgradeInput("3.1.4")
	in.VersionValue = "image.tag"
	in.OutputsValue = "infra"
	in.BaseValues = map[string]any{
		"greeting": "hello",
		"limits":   map[string]any{"cpu": "1", "memory": "1Gi"},
		"infra":    map[string]any{"bucket": "default-bucket", "queue": "default-queue"},
	}
	in.RegionValues = map[string]any{
		"limits": map[string]any{"memory": "2Gi"},
		"region": "eu-test-1",
	}
	in.Outputs = map[string]any{"bucket": "eu-bucket", "endpoint": "https://db.eu.example"}

	res := h.mustUpgrade(in)
	require.Equal(t, 1, res.Revision)

	_, vals := h.configMap()
	require.Equal(t, "hello", vals["greeting"])
	require.Equal(t, "eu-test-1", vals["region"])
	require.Equal(t, map[string]any{"cpu": "1", "memory": "2Gi"}, vals["limits"])
	require.Equal(t, map[string]any{"tag": "3.1.4"}, vals["image"])
	require.Equal(t, map[string]any{
		"bucket": "eu-bucket", "queue": "default-queue", "endpoint": "https://db.eu.example",
	}, vals["infra"])
	require.Equal(t, float64(1), vals["replicas"], "chart defaults stay under the composed values")

	// The version is read back from the custom key.
	revs := h.history()
	require.Len(t, revs, 1)
	require.Equal(t, "3.1.4", revs[0].Version)
}

func TestWaitReady(t *testing.T) {
	h := newHarness(t, "wait")
	in := h.upgradeInput("1.0.0")
	in.RegionValues = map[string]any{"replicas": 2}
	res := h.mustUpgrade(in)
	require.NoError(t, h.waitReady(res.Revision, 2*time.Minute))
}

func TestWaitReadyTimesOutOnPendingPods(t *testing.T) {
	old := heartbeatInterval
	heartbeatInterval = 500 * time.Millisecond
	t.Cleanup(func() { heartbeatInterval = old })

	h := newHarness(t, "notready")
	in := h.upgradeInput("1.0.0")
	// No node has this label: the pod stays Pending forever.
	in.RegionValues = map[string]any{"nodeSelector": map[string]any{"keelson.dev/pool": "nowhere"}}
	res := h.mustUpgrade(in)

	b := captureHeartbeats(t)
	err := h.waitReady(res.Revision, 5*time.Second)
	appErr := requireAppError(t, err, ErrNotReady)
	require.Contains(t, appErr.Error(), "Deployment/notready/app")
	require.NotContains(t, appErr.Error(), "ConfigMap", "a ConfigMap is always ready")
	times, details := b.snapshot()
	require.GreaterOrEqual(t, len(times), 8, "WaitReady must heartbeat while it waits")
	require.Contains(t, details[len(details)-1], "for: Deployment/notready/app", "the heartbeat says what is not ready")
}

func TestRollbackToPreviousRevision(t *testing.T) {
	h := newHarness(t, "rollback")
	h.mustUpgrade(h.upgradeInput("1.0.0"))
	up := h.mustUpgrade(h.upgradeInput("2.0.0"))
	require.NoError(t, h.waitReady(up.Revision, 2*time.Minute))

	rb := h.rollback(up.PreviousRevision)
	require.Equal(t, 3, rb.Revision)
	require.NoError(t, h.waitReady(rb.Revision, 2*time.Minute))

	revs := h.history()
	require.Len(t, revs, 3)
	require.Equal(t, "deployed", revs[2].Status)
	require.Equal(t, "1.0.0", revs[2].Version, "the rollback revision has the old values")
	version, _ := h.configMap()
	require.Equal(t, "1.0.0", version)

	// A retried rollback makes no new revision.
	require.Equal(t, 3, h.rollback(up.PreviousRevision).Revision)
	require.Len(t, h.history(), 3)

	// Upgrading again after the rollback: the previous revision is the
	// rollback's.
	again := h.mustUpgrade(h.upgradeInput("2.0.0"))
	require.Equal(t, 4, again.Revision)
	require.Equal(t, 3, again.PreviousRevision)
}

// pendingRevision stores what an upgrade to in leaves behind when the
// worker dies after Helm recorded the new revision and before it applied
// anything: a pending-upgrade revision whose objects are not in the cluster.
func pendingRevision(t *testing.T, h *harness, in UpgradeInput) *release.Release {
	t.Helper()
	vals, err := composeValues(in)
	require.NoError(t, err)
	ch, err := loadChart(in.ChartPath)
	require.NoError(t, err)
	require.NoError(t, checkRender(ch, vals, in.Target))
	cfg, err := h.acts.config(in.Target)
	require.NoError(t, err)

	up := action.NewUpgrade(cfg)
	up.Namespace = in.Target.Namespace
	up.ResetValues = true
	up.DryRun = true // render and build the release record, touch nothing
	rel, err := up.RunWithContext(context.Background(), in.Target.Release, ch, vals)
	require.NoError(t, err)
	rel.Info.Status = release.StatusPendingUpgrade
	rel.Info.Description = "Preparing upgrade"
	require.NoError(t, cfg.Releases.Create(rel))
	return rel
}

func TestPendingUpgradeIsRecoveredWithOneRevision(t *testing.T) {
	h := newHarness(t, "pending")
	h.mustUpgrade(h.upgradeInput("1.0.0"))

	// The interrupted attempt was for this very target: its revision is
	// completed, not duplicated.
	p := pendingRevision(t, h, h.upgradeInput("2.0.0"))
	require.Equal(t, 2, p.Version)
	res := h.mustUpgrade(h.upgradeInput("2.0.0"))
	require.Equal(t, UpgradeResult{Revision: 2, PreviousRevision: 1, ChartVersion: "0.1.0", AppVersion: "1.0.0", Changed: true}, *res)
	revs := h.history()
	require.Len(t, revs, 2)
	require.Equal(t, "superseded", revs[0].Status)
	require.Equal(t, "deployed", revs[1].Status)
	version, _ := h.configMap()
	require.Equal(t, "2.0.0", version, "the pending revision's objects were applied")
	require.NoError(t, h.waitReady(2, 2*time.Minute))

	// The interrupted attempt was for another target: it is marked failed
	// and exactly one revision is made for this one.
	p = pendingRevision(t, h, h.upgradeInput("3.0.0-abandoned"))
	require.Equal(t, 3, p.Version)
	res = h.mustUpgrade(h.upgradeInput("3.0.1"))
	require.Equal(t, 4, res.Revision)
	require.Equal(t, 2, res.PreviousRevision)
	revs = h.history()
	require.Len(t, revs, 4)
	require.Equal(t, "failed", revs[2].Status)
	require.Equal(t, "3.0.0-abandoned", revs[2].Version)
	require.Equal(t, "deployed", revs[3].Status)
	version, _ = h.configMap()
	require.Equal(t, "3.0.1", version)
}

func TestChartNotFoundIsNotRetried(t *testing.T) {
	h := newHarness(t, "notfound")
	in := h.upgradeInput("1.0.0")
	in.ChartPath = "testdata/no-such-chart"
	_, err := h.upgrade(in)
	requireAppError(t, err, ErrChartNotFound)
}

func TestInvalidValuesAreNotRetried(t *testing.T) {
	h := newHarness(t, "invalid")
	in := h.upgradeInput("1.0.0")
	in.RegionValues = map[string]any{"replicas": "many"} // the chart's schema wants an integer
	_, err := h.upgrade(in)
	requireAppError(t, err, ErrInvalidValues)

	_, err = h.env.ExecuteActivity(h.acts.Rollback, RollbackInput{Target: h.target, Revision: 1})
	requireAppError(t, err, ErrReleaseNotFound)
}

func TestPendingInstallIsCompleted(t *testing.T) {
	h := newHarness(t, "pending-install")
	in := h.upgradeInput("1.0.0")
	vals, err := composeValues(in)
	require.NoError(t, err)
	ch, err := loadChart(in.ChartPath)
	require.NoError(t, err)
	require.NoError(t, checkRender(ch, vals, in.Target))
	cfg, err := h.acts.config(in.Target)
	require.NoError(t, err)
	require.NoError(t, ensureNamespace(context.Background(), cfg, in.Target.Namespace))

	// The first install died after recording revision 1, before any object
	// was created.
	inst := action.NewInstall(cfg)
	inst.ReleaseName = in.Target.Release
	inst.Namespace = in.Target.Namespace
	inst.DryRun = true
	rel, err := inst.RunWithContext(context.Background(), ch, vals)
	require.NoError(t, err)
	rel.Info.Status = release.StatusPendingInstall
	require.NoError(t, cfg.Releases.Create(rel))

	res := h.mustUpgrade(in)
	require.Equal(t, UpgradeResult{Revision: 1, ChartVersion: "0.1.0", AppVersion: "1.0.0", Changed: true}, *res)
	revs := h.history()
	require.Len(t, revs, 1)
	require.Equal(t, "deployed", revs[0].Status)
	version, _ := h.configMap()
	require.Equal(t, "1.0.0", version)
	require.NoError(t, h.waitReady(1, 2*time.Minute))
}
