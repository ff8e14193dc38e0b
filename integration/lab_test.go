// Package integration runs Keelson end to end against the local stack: the
// Temporal dev server, three kwok clusters standing for regions, real
// Terraform, the worker as its own process and the CLI as a user runs it.
// `make test` starts the stack, runs these tests and stops it.
package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"gopkg.in/yaml.v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/keelson-dev/keelson/activities/helm"
	"github.com/keelson-dev/keelson/control"
	"github.com/keelson-dev/keelson/workflows"
)

// regions of the lab, in the demo's order.
var regions = []string{"us-east-1", "eu-west-1", "ap-southeast-1"}

// TestMain fails the whole package, with what to run, when the local stack
// is not up: a skipped end-to-end test reads as a passing one in CI.
//
// A test that spends most of its time waiting (bakes, analysis windows,
// queues, schedules) on applications of its own calls t.Parallel as its
// first line. go test runs those after every serial test of the package
// has finished, so the tests that stop or load what all share (the lab's
// worker killed or loaded with a hundred releases, Temporal restarted, a
// region's API server stopped) never run beside them; the Makefile's
// -parallel says how many run at once.
func TestMain(m *testing.M) {
	if err := checkLab(); err != nil {
		fmt.Fprintf(os.Stderr, "integration: the local stack is not usable: %v\n"+
			"integration: run `make up`, then `make test-integration` (or `make test`, which starts and stops the stack itself)\n", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// checkLab asks every part of the stack whether it answers: Temporal, each
// region's API server, and the lab's worker.
func checkLab() error {
	if os.Getenv("KEELSON_LAB") != "1" {
		return fmt.Errorf("KEELSON_LAB is not 1: the tests find the stack through the variables `make test-integration` sets")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		return err
	}
	for _, f := range []string{filepath.Join(envOr("KEELSON_BIN", filepath.Join(root, "bin")), "keelson")} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("%s is missing (make build)", f)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	address := envOr("TEMPORAL_ADDRESS", "127.0.0.1:7233")
	lc, err := loadLabCodec()
	if err != nil {
		return err
	}
	theLabCodec = lc
	tc, err := control.Dial(ctx, control.DialOptions{Address: address, Namespace: "default", Wait: 10 * time.Second, DataConverter: lc.dc, FailureConverter: lc.fc})
	if err != nil {
		return err
	}
	defer tc.Close()
	if _, err := tc.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
		return fmt.Errorf("Temporal at %s fails its health check: %w", address, err)
	}
	kubeconfig := envOr("KEELSON_KUBECONFIG", filepath.Join(root, ".cache/lab/kubeconfig"))
	for _, r := range regions {
		cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig},
			&clientcmd.ConfigOverrides{CurrentContext: r}).ClientConfig()
		if err != nil {
			return fmt.Errorf("kubeconfig %s, context %s: %w", kubeconfig, r, err)
		}
		cfg.Timeout = 10 * time.Second
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return err
		}
		if _, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx); err != nil {
			return fmt.Errorf("region %s's API server does not answer /readyz: %w", r, err)
		}
	}
	scripts := envOr("KEELSON_LAB_SCRIPTS", filepath.Join(root, "infra/lab"))
	if out, err := exec.Command(filepath.Join(scripts, "worker.sh"), "status").CombinedOutput(); err != nil {
		return fmt.Errorf("the lab's worker is not ready: %s", strings.TrimSpace(string(out)))
	}
	return nil
}

// runTag makes this run's application names its own: Helm releases,
// namespaces, Terraform working copies and workflow ids of one run never
// meet those of an earlier run, of a run going on at the same time in
// another checkout or terminal, or of the demo.
var runTag = strconv.FormatInt(time.Now().UnixMilli()%(36*36*36*36*36*36), 36)

// appName is the application name of one test in this run. When the test
// passes, its namespaces and working copies are removed (KEELSON_KEEP=1
// keeps them); a failed test's stay for a look.
func (l *lab) appName(t *testing.T, prefix string) string {
	t.Helper()
	app := prefix + "-" + runTag
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("KEELSON_KEEP") == "1" {
			t.Logf("kept %s: namespace %s in every region, working copies in %s", app, app, filepath.Join(l.dir, "work", app))
			return
		}
		for _, r := range regions {
			_ = l.kube[r].CoreV1().Namespaces().Delete(context.Background(), app, metav1.DeleteOptions{})
		}
		_ = os.RemoveAll(filepath.Join(l.dir, "work", app))
	})
	return app
}

// lab is the running local stack, found through the variables that
// `make test-integration` sets.
type lab struct {
	root, dir, scripts, bin string
	kubeconfig, address     string
	tc                      client.Client
	ctl                     *control.Client
	codec                   *labCodec
	kube                    map[string]*kubernetes.Clientset
}

func newLab(t *testing.T) *lab {
	t.Helper()
	if os.Getenv("KEELSON_LAB") != "1" {
		t.Fatal("the integration tests need the local stack: run `make test` (which starts it), or `make up` then `make test-integration`")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	l := &lab{
		root:       root,
		dir:        envOr("KEELSON_LAB_DIR", filepath.Join(root, ".cache/lab")),
		scripts:    envOr("KEELSON_LAB_SCRIPTS", filepath.Join(root, "infra/lab")),
		bin:        envOr("KEELSON_BIN", filepath.Join(root, "bin")),
		kubeconfig: envOr("KEELSON_KUBECONFIG", filepath.Join(root, ".cache/lab/kubeconfig")),
		address:    envOr("TEMPORAL_ADDRESS", "127.0.0.1:7233"),
		kube:       map[string]*kubernetes.Clientset{},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lc := theLabCodec
	l.codec = lc
	tc, err := control.Dial(ctx, control.DialOptions{Address: l.address, Namespace: "default", Wait: 20 * time.Second, DataConverter: lc.dc, FailureConverter: lc.fc})
	if err != nil {
		t.Fatalf("Temporal at %s does not answer (%v): is the local stack up? `make up`", l.address, err)
	}
	t.Cleanup(tc.Close)
	l.tc = tc
	l.ctl = &control.Client{T: tc, Namespace: "default", TaskQueue: workflows.TaskQueue, UIBaseURL: "http://localhost:8233", Address: l.address, DataConverter: lc.dc}
	for _, r := range regions {
		cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			&clientcmd.ClientConfigLoadingRules{ExplicitPath: l.kubeconfig},
			&clientcmd.ConfigOverrides{CurrentContext: r}).ClientConfig()
		if err != nil {
			t.Fatalf("kubeconfig %s, context %s: %v (is the local stack up? `make up`)", l.kubeconfig, r, err)
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cs.Discovery().ServerVersion(); err != nil {
			t.Fatalf("region %s's API server does not answer (%v): is the local stack up? `make up`", r, err)
		}
		l.kube[r] = cs
	}
	return l
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// releaseFile writes a release file for app, derived from the demo's, with
// absolute paths, the app's own namespace and short bakes; edit changes the
// parsed YAML before it is written.
func (l *lab) releaseFile(t *testing.T, app string, edit func(doc map[string]any)) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(l.root, "infra/demo/release.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	doc["application"] = app
	doc["chart"].(map[string]any)["path"] = filepath.Join(l.root, "infra/demo/chart")
	doc["terraform"].(map[string]any)["path"] = filepath.Join(l.root, "infra/demo/terraform")
	doc["values"] = map[string]any{"replicas": 1}
	for _, r := range doc["regions"].([]any) {
		r.(map[string]any)["namespace"] = app
	}
	for _, w := range doc["waves"].([]any) {
		w.(map[string]any)["bake"] = "2s"
	}
	doc["readiness"] = map[string]any{"timeout": "60s"}
	// The demo goes canary behind its own Route 53 records and fails over
	// between regions; the tests of other behaviour go all at once, and
	// progressive_test.go and failover_test.go set their own strategies,
	// records and checks.
	delete(doc, "strategy")
	delete(doc, "analysis")
	delete(doc, "failover")
	for _, r := range doc["regions"].([]any) {
		delete(r.(map[string]any), "traffic")
	}
	if edit != nil {
		edit(doc)
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), app+".yaml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// wave returns the file's wave by name, for edits.
func wave(doc map[string]any, name string) map[string]any {
	for _, w := range doc["waves"].([]any) {
		if w.(map[string]any)["name"] == name {
			return w.(map[string]any)
		}
	}
	panic("no wave " + name)
}

// region returns the file's region by name, for edits.
func region(doc map[string]any, name string) map[string]any {
	for _, r := range doc["regions"].([]any) {
		if r.(map[string]any)["name"] == name {
			return r.(map[string]any)
		}
	}
	panic("no region " + name)
}

// keelson runs the CLI and returns its combined output and exit code.
func (l *lab) keelson(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(l.bin, "keelson"), args...)
	// The CLI uploads bundles where the lab's worker reads them
	// (infra/lab/lib.sh's WORKER_ARTIFACTS).
	cmd.Env = append(os.Environ(), "TEMPORAL_ADDRESS="+l.address, "KEELSON_ARTIFACTS="+filepath.Join(l.dir, "artifacts"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("keelson %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), code
}

// script runs one of the lab's scripts (worker.sh kill9, temporal.sh stop).
func (l *lab) script(t *testing.T, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(l.scripts, name), args...)
	cmd.Dir = l.root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	t.Logf("%s %s: %s", name, strings.Join(args, " "), strings.TrimSpace(string(out)))
}

// start starts a release through the control client, as the CLI does.
func (l *lab) start(t *testing.T, file, version string) string {
	t.Helper()
	out, code := l.keelson(t, "release", "start", "-f", file, "--version", version)
	if code != 0 {
		t.Fatalf("keelson release start: exit %d\n%s", code, out)
	}
	id := strings.TrimSpace(strings.TrimPrefix(strings.SplitN(out, "\n", 2)[0], "release:"))
	if !strings.HasPrefix(id, "release-") {
		t.Fatalf("no release id on the first line of:\n%s", out)
	}
	return id
}

// waitPhase polls the status query until the release reaches phase.
func (l *lab) waitPhase(t *testing.T, id string, phase workflows.Phase, within time.Duration) *workflows.Status {
	t.Helper()
	deadline := time.Now().Add(within)
	var last *workflows.Status
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := l.ctl.Status(ctx, id)
		cancel()
		if err == nil {
			last = st
			if st.Phase == phase {
				return st
			}
			if st.Phase.Done() {
				t.Fatalf("release %s ended as %s (%s) while waiting for %s", id, st.Phase, st.Message, phase)
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("release %s did not reach %s within %s; last status: %+v", id, phase, within, last)
	return nil
}

// result waits for the release's result.
func (l *lab) result(t *testing.T, id string, within time.Duration) *workflows.ReleaseResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	res, err := l.ctl.Result(ctx, id)
	if err != nil {
		t.Fatalf("result of %s: %v", id, err)
	}
	return res
}

// helmRevisions lists the Helm revisions of app in region, from Helm's own
// storage (Secrets labelled owner=helm), oldest first.
func (l *lab) helmRevisions(t *testing.T, region, app string) []helmRev {
	t.Helper()
	secrets, err := l.kube[region].CoreV1().Secrets(app).List(context.Background(), metav1.ListOptions{LabelSelector: "owner=helm,name=" + app})
	if err != nil {
		t.Fatalf("list Helm revisions of %s in %s: %v", app, region, err)
	}
	var revs []helmRev
	for _, s := range secrets.Items {
		var n int
		fmt.Sscan(s.Labels["version"], &n)
		revs = append(revs, helmRev{Revision: n, Status: s.Labels["status"]})
	}
	sort.Slice(revs, func(i, j int) bool { return revs[i].Revision < revs[j].Revision })
	return revs
}

type helmRev struct {
	Revision int
	Status   string
}

// deployedVersion is the version in the app's ConfigMap in region.
func (l *lab) deployedVersion(t *testing.T, region, app string) string {
	t.Helper()
	cm, err := l.kube[region].CoreV1().ConfigMaps(app).Get(context.Background(), app, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("ConfigMap %s in %s: %v", app, region, err)
	}
	return cm.Data["VERSION"]
}

// readyReplicas is the Deployment's ready replica count in region.
func (l *lab) readyReplicas(t *testing.T, region, app string) int32 {
	t.Helper()
	d, err := l.kube[region].AppsV1().Deployments(app).Get(context.Background(), app, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("Deployment %s in %s: %v", app, region, err)
	}
	return d.Status.ReadyReplicas
}

// applies is the lines of the stack's applies.log for app in region: one
// per real Terraform apply of a new version.
func (l *lab) applies(t *testing.T, region, app, version string) int {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(l.dir, "work", app, region, "applies.log"))
	if err != nil {
		t.Fatalf("applies.log of %s in %s: %v", app, region, err)
	}
	n := 0
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, version+" ") {
			n++
		}
	}
	return n
}

// history returns a workflow's events as its worker reads them: payloads
// and failure messages decrypted with the lab's key.
func (l *lab) history(t *testing.T, workflowID string) []*historypb.HistoryEvent {
	t.Helper()
	return l.codec.decoded(t, l.rawHistory(t, workflowID))
}

// rawHistory returns a workflow's events as Temporal stores them: with the
// lab's encryption, payloads are ciphertext.
func (l *lab) rawHistory(t *testing.T, workflowID string) []*historypb.HistoryEvent {
	t.Helper()
	return historyOf(t, l.tc, workflowID)
}

// historyOf reads a workflow's whole history from tc, as stored.
func historyOf(t *testing.T, tc client.Client, workflowID string) []*historypb.HistoryEvent {
	t.Helper()
	it := tc.GetWorkflowHistory(context.Background(), workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var events []*historypb.HistoryEvent
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatalf("history of %s: %v", workflowID, err)
		}
		events = append(events, e)
	}
	return events
}

// pendingActivity reports whether the workflow has an activity of that
// type running now (started, not yet completed).
func (l *lab) pendingActivity(workflowID, activityType string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := l.tc.DescribeWorkflowExecution(ctx, workflowID, "")
	if err != nil {
		return false
	}
	for _, pa := range d.PendingActivities {
		if pa.GetActivityType().GetName() == activityType && pa.GetState() == enumspb.PENDING_ACTIVITY_STATE_STARTED {
			return true
		}
	}
	return false
}

// writeJSON is for logs of results.
func writeJSON(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

// waitPhaseCLI polls `keelson release status ID -o json`, as a script in CI
// would, until the release reaches phase.
func (l *lab) waitPhaseCLI(t *testing.T, id string, phase workflows.Phase, within time.Duration) *workflows.Status {
	t.Helper()
	deadline := time.Now().Add(within)
	last := ""
	for time.Now().Before(deadline) {
		out, code := l.keelson(t, "release", "status", id, "-o", "json")
		if code == 0 {
			var st workflows.Status
			if err := json.Unmarshal([]byte(out), &st); err != nil {
				t.Fatalf("keelson release status -o json: %v\n%s", err, out)
			}
			if st.Phase == phase {
				return &st
			}
			if st.Phase.Done() {
				t.Fatalf("release %s ended as %s (%s) while waiting for %s", id, st.Phase, st.Message, phase)
			}
		}
		last = out
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("release %s did not reach %s within %s; last status:\n%s", id, phase, within, last)
	return nil
}

// podTemplate is the version label and image of the app's Deployment's pod
// template in region.
func (l *lab) podTemplate(t *testing.T, region, app string) (versionLabel, image string) {
	t.Helper()
	d, err := l.kube[region].AppsV1().Deployments(app).Get(context.Background(), app, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("Deployment %s in %s: %v", app, region, err)
	}
	if cs := d.Spec.Template.Spec.Containers; len(cs) > 0 {
		image = cs[0].Image
	}
	return d.Spec.Template.Labels["app.kubernetes.io/version"], image
}

// helmHistory is the app's Helm history in region as Keelson's Helm
// activities read it (with the version each revision deployed).
func (l *lab) helmHistory(t *testing.T, region, app string) []helm.Revision {
	t.Helper()
	h := &helm.Activities{Kubeconfig: l.kubeconfig}
	revs, err := h.History(context.Background(), helm.Target{Region: region, KubeContext: region, Namespace: app, Release: app})
	if err != nil {
		t.Fatalf("Helm history of %s in %s: %v", app, region, err)
	}
	return revs
}

// retries lists the retried starts (attempt > 1) of activities of type
// activityType in a workflow's history.
func retries(events []*historypb.HistoryEvent, activityType string) []retried {
	scheduled := map[int64]string{}
	var out []retried
	for _, e := range events {
		if a := e.GetActivityTaskScheduledEventAttributes(); a != nil {
			scheduled[e.GetEventId()] = a.GetActivityType().GetName()
		}
		if a := e.GetActivityTaskStartedEventAttributes(); a != nil && scheduled[a.GetScheduledEventId()] == activityType && a.GetAttempt() > 1 {
			out = append(out, retried{Attempt: a.GetAttempt(), At: e.GetEventTime().AsTime(), LastFailure: a.GetLastFailure().GetMessage()})
		}
	}
	return out
}

type retried struct {
	Attempt     int32
	At          time.Time
	LastFailure string
}

// pendingAttempt is the attempt and last start of the workflow's running
// activity of that type, or 0 when there is none.
func (l *lab) pendingAttempt(workflowID, activityType string) (int32, time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := l.tc.DescribeWorkflowExecution(ctx, workflowID, "")
	if err != nil {
		return 0, time.Time{}
	}
	for _, pa := range d.PendingActivities {
		if pa.GetActivityType().GetName() == activityType && pa.GetState() == enumspb.PENDING_ACTIVITY_STATE_STARTED {
			return pa.GetAttempt(), pa.GetLastStartedTime().AsTime()
		}
	}
	return 0, time.Time{}
}

// processIn reports whether a process named name runs with its working
// directory in dir: the demo stack's `sleep` provisioner in a region's
// working copy is a Terraform apply caught in the middle.
func processIn(name, dir string) bool {
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		comm, err := os.ReadFile(filepath.Join(p, "comm"))
		if err != nil || strings.TrimSpace(string(comm)) != name {
			continue
		}
		if cwd, err := os.Readlink(filepath.Join(p, "cwd")); err == nil && (cwd == dir || strings.HasPrefix(cwd, dir+"/")) {
			return true
		}
	}
	return false
}

// killWorker kills the lab's worker with SIGKILL (worker.sh kill9) and
// waits until its probe port is closed. kill9 returns when the worker's
// main thread is a zombie, but its other threads may still be exiting and
// holding the listening socket for a few milliseconds, and a start in that
// window refuses the port as another process's.
func (l *lab) killWorker(t *testing.T) {
	t.Helper()
	l.script(t, "worker.sh", "kill9")
	addr := "127.0.0.1:" + envOr("KEELSON_WORKER_HTTP_PORT", "8095")
	waitUntil(t, 10*time.Second, 20*time.Millisecond, "the killed worker's port "+addr+" to close", func() bool {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
}
