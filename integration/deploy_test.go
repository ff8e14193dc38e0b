package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/releaseutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"
)

// The chart of the worker (deploy/keelson-worker) and the URL of the
// artifact store the tests render it with; values-lab.yaml leaves that URL
// to the command line.
const (
	chartDir         = "deploy/keelson-worker"
	chartArtifactURL = "s3://keelson-test/artifacts?region=us-east-1"
	chartHTTPPort    = 8095
	chartFieldOwner  = "keelson-test"
)

// TestWorkerChartRenders renders the worker's chart with the lab's values
// and checks what Kubernetes would run against what the worker really
// reads: every variable the Deployment sets is one the worker's source
// reads, the probes are the worker's own endpoints on the port it listens
// on, the filesystem is read-only but for the folders it writes, and
// Kubernetes waits longer than the worker drains.
func TestWorkerChartRenders(t *testing.T) {
	objs, notes := renderWorkerChart(t, "keelson", chartLabValues(t, nil))

	for _, kind := range []string{"Deployment", "Service", "ServiceAccount", "Secret", "PodDisruptionBudget"} {
		if len(chartObjects(objs, kind)) != 1 {
			t.Errorf("want one %s, chart rendered %d", kind, len(chartObjects(objs, kind)))
		}
	}
	var d appsv1.Deployment
	chartDecode(t, chartOne(t, objs, "Deployment"), &d)
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(pod.Containers))
	}
	c := pod.Containers[0]
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas: %v, want 2 (values-lab.yaml)", d.Spec.Replicas)
	}
	if c.Image != "keelson/worker:dev" {
		t.Errorf("image %q, want keelson/worker:dev (values-lab.yaml)", c.Image)
	}

	// Environment: the worker's names, with the values the pod needs.
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		if _, dup := env[e.Name]; dup {
			t.Errorf("env %s set twice", e.Name)
		}
		env[e.Name] = e
	}
	known, prefixes := workerEnvNames(t)
	for name := range env {
		if !known[name] && !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(name, p) }) {
			t.Errorf("the Deployment sets %s, which the worker does not read (worker/config.go, worker/slackhook/config.go)", name)
		}
	}
	for name, want := range map[string]string{
		"TEMPORAL_ADDRESS":   "127.0.0.1:7233",
		"TEMPORAL_NAMESPACE": "default",
		"KEELSON_TASK_QUEUE": "keelson",
		"KEELSON_ARTIFACTS":  chartArtifactURL,
		"KEELSON_WORK_DIR":   "/var/lib/keelson/work",
		"KUBECONFIG":         "/etc/keelson/kubeconfig/config",
		"KEELSON_HTTP_ADDR":  fmt.Sprintf("0.0.0.0:%d", chartHTTPPort),
	} {
		e, ok := env[name]
		if !ok {
			t.Errorf("the Deployment does not set %s", name)
			continue
		}
		if e.Value != want {
			t.Errorf("%s=%q, want %q", name, e.Value, want)
		}
	}
	secretName := chartOne(t, objs, "Secret").GetName()
	for name, key := range map[string]string{
		"KEELSON_SLACK_BOT_TOKEN":      "slack-bot-token",
		"KEELSON_SLACK_SIGNING_SECRET": "slack-signing-secret",
		"KEELSON_SLACK_APP_TOKEN":      "slack-app-token",
	} {
		e := env[name]
		ref := (*corev1.SecretKeySelector)(nil)
		if e.ValueFrom != nil {
			ref = e.ValueFrom.SecretKeyRef
		}
		// Optional: a token that is not set is no key, and no variable.
		if ref == nil || ref.Name != secretName || ref.Key != key || ref.Optional == nil || !*ref.Optional {
			t.Errorf("%s: want an optional reference to key %s of Secret %s, got %+v", name, key, secretName, e)
		}
	}

	// The HTTP server: one port, the probes on it, the Service to it.
	if len(c.Ports) != 1 || c.Ports[0].Name != "http" || c.Ports[0].ContainerPort != chartHTTPPort {
		t.Errorf("container ports %+v, want http %d", c.Ports, chartHTTPPort)
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"readinessProbe", c.ReadinessProbe, "/readyz"}, {"livenessProbe", c.LivenessProbe, "/healthz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: want an HTTP GET, got %+v", p.name, p.probe)
			continue
		}
		if p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.String() != "http" {
			t.Errorf("%s: GET %s on port %s, want %s on http", p.name, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port.String(), p.path)
		}
	}
	workerRoutes := chartReadFile(t, "worker/http.go") + chartReadFile(t, "worker/main.go")
	for _, route := range []string{`"GET /readyz"`, `"GET /healthz"`, `"GET /metrics"`} {
		if !strings.Contains(workerRoutes, route) {
			t.Errorf("the worker serves no %s any more (worker/http.go, worker/main.go): the probes need it", route)
		}
	}
	var svc corev1.Service
	chartDecode(t, chartOne(t, objs, "Service"), &svc)
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != chartHTTPPort || svc.Spec.Ports[0].TargetPort.String() != "http" {
		t.Errorf("service ports %+v, want %d to http", svc.Spec.Ports, chartHTTPPort)
	}
	for k, v := range svc.Spec.Selector {
		if d.Spec.Template.Labels[k] != v {
			t.Errorf("the Service selects %s=%s, which the pods do not carry", k, v)
		}
	}

	// Non-root, read-only, and every folder the worker writes is a volume.
	psc, csc := pod.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != 65532 {
		t.Errorf("pod securityContext %+v: want runAsNonRoot and uid 65532 (the image's nonroot)", psc)
	}
	if csc == nil || csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem ||
		csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
		t.Errorf("container securityContext %+v: want a read-only root filesystem and no privilege escalation", csc)
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	mountOf := func(path string) (corev1.VolumeMount, bool) {
		var best corev1.VolumeMount
		for _, m := range c.VolumeMounts {
			if (path == m.MountPath || strings.HasPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/")) && len(m.MountPath) > len(best.MountPath) {
				best = m
			}
		}
		return best, best.Name != ""
	}
	for _, name := range []string{"KEELSON_WORK_DIR", "HOME"} {
		m, ok := mountOf(env[name].Value)
		if !ok || m.ReadOnly || volumes[m.Name].EmptyDir == nil {
			t.Errorf("%s=%s is on no writable emptyDir (mount %+v)", name, env[name].Value, m)
		}
	}
	if m, ok := mountOf("/tmp"); !ok || volumes[m.Name].EmptyDir == nil {
		t.Errorf("/tmp is not an emptyDir on a read-only root filesystem")
	}
	if m, ok := mountOf(env["KUBECONFIG"].Value); !ok || volumes[m.Name].Secret == nil ||
		volumes[m.Name].Secret.SecretName != "keelson-kubeconfig" {
		t.Errorf("KUBECONFIG=%s is not the kubeconfig Secret's (mount %+v)", env["KUBECONFIG"].Value, m)
	}

	// Kubernetes waits longer than the worker drains: the HTTP server's
	// shutdown, then the worker's stop timeout for running activities.
	stop, httpStop := workerStopTimeouts(t)
	grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	if grace <= stop+httpStop {
		t.Errorf("terminationGracePeriodSeconds %s: the worker may take %s (stop timeout) + %s (HTTP shutdown) to drain", grace, stop, httpStop)
	}
	t.Logf("grace %s, worker stop timeout %s, HTTP shutdown %s", grace, stop, httpStop)

	// The PodDisruptionBudget keeps one of the two.
	var pdb policyv1.PodDisruptionBudget
	chartDecode(t, chartOne(t, objs, "PodDisruptionBudget"), &pdb)
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 {
		t.Errorf("PodDisruptionBudget minAvailable %v, want 1", pdb.Spec.MinAvailable)
	}
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("the PodDisruptionBudget's selector %v does not select the pods (%v)", pdb.Spec.Selector, err)
	}
	if !strings.Contains(notes, "Slack is off") {
		t.Errorf("NOTES.txt without Slack tokens does not say Slack is off:\n%s", notes)
	}

	t.Run("config-change-rolls-the-pods", func(t *testing.T) {
		checksum := func(extra map[string]any) string {
			objs, _ := renderWorkerChart(t, "keelson", chartLabValues(t, extra))
			var d appsv1.Deployment
			chartDecode(t, chartOne(t, objs, "Deployment"), &d)
			sum := d.Spec.Template.Annotations["checksum/config"]
			if len(sum) != 64 {
				t.Fatalf("checksum/config %q is no sha256", sum)
			}
			return sum
		}
		base := checksum(nil)
		if again := checksum(nil); again != base {
			t.Errorf("the same values gave two checksums: %s, %s", base, again)
		}
		token := map[string]any{"slack": map[string]any{"botToken": "xoxb-test", "signingSecret": "test-signing-secret"}}
		if checksum(token) == base {
			t.Error("a new Slack token leaves the pod template as it was: the pods would keep the old one")
		}
		if checksum(map[string]any{"slack": map[string]any{"existingSecret": "keelson-slack"}}) == base {
			t.Error("switching to an existing Secret leaves the pod template as it was")
		}
	})

	t.Run("existing-secret-one-replica-irsa", func(t *testing.T) {
		objs, _ := renderWorkerChart(t, "keelson", chartLabValues(t, map[string]any{
			"replicas":       1,
			"slack":          map[string]any{"existingSecret": "keelson-slack"},
			"serviceAccount": map[string]any{"annotations": map[string]any{"eks.amazonaws.com/role-arn": "arn:aws:iam::000000000000:role/keelson-worker"}},
		}))
		if n := len(chartObjects(objs, "Secret")); n != 0 {
			t.Errorf("with slack.existingSecret the chart still made %d Secret(s)", n)
		}
		if n := len(chartObjects(objs, "PodDisruptionBudget")); n != 0 {
			t.Errorf("one replica and a PodDisruptionBudget: a drain would never evict it (%d rendered)", n)
		}
		var d appsv1.Deployment
		chartDecode(t, chartOne(t, objs, "Deployment"), &d)
		for _, e := range d.Spec.Template.Spec.Containers[0].Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name != "keelson-slack" {
				t.Errorf("%s reads Secret %s, want the existing keelson-slack", e.Name, e.ValueFrom.SecretKeyRef.Name)
			}
		}
		sa := chartOne(t, objs, "ServiceAccount")
		if sa.GetAnnotations()["eks.amazonaws.com/role-arn"] == "" || d.Spec.Template.Spec.ServiceAccountName != sa.GetName() {
			t.Errorf("service account %s (annotations %v) is not the pods' (%s) with the role annotation",
				sa.GetName(), sa.GetAnnotations(), d.Spec.Template.Spec.ServiceAccountName)
		}
	})
}

// TestWorkerChartNeedsArtifactStore: the chart does not render without the
// artifact store, and says which value to set.
func TestWorkerChartNeedsArtifactStore(t *testing.T) {
	ch, err := loader.Load(filepath.Join(chartRoot(t), chartDir))
	if err != nil {
		t.Fatal(err)
	}
	vals, err := chartutil.ReadValuesFile(filepath.Join(chartRoot(t), chartDir, "values-lab.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = chartInstall(ch, "keelson", vals.AsMap())
	if err == nil {
		t.Fatal("the chart rendered without artifacts.url")
	}
	if !strings.Contains(err.Error(), "artifacts.url is required") {
		t.Fatalf("rendering without the artifact store failed without naming artifacts.url: %v", err)
	}
	t.Logf("without artifacts.url: %v", err)

	vals["artifacts"] = map[string]any{"url": "/var/lib/keelson/artifacts"}
	if _, err := chartInstall(ch, "keelson", vals.AsMap()); err == nil || !strings.Contains(err.Error(), "artifacts.url") {
		t.Fatalf("a bare folder as artifacts.url: want an error naming artifacts.url, got %v", err)
	}
}

// TestWorkerChartAppliesOnTheLab sends every object of the chart to one of
// the lab's API servers as a server-side apply, dry run, in a namespace of
// its own: the API server validates them (strict field validation, its
// defaulting and admission) and stores nothing.
func TestWorkerChartAppliesOnTheLab(t *testing.T) {
	l := newLab(t)
	const region = "us-east-1"
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: l.kubeconfig},
		&clientcmd.ConfigOverrides{CurrentContext: region}).ClientConfig()
	if err != nil {
		t.Fatalf("kubeconfig %s, context %s: %v (is the local stack up? `make up`)", l.kubeconfig, region, err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := restmapper.GetAPIGroupResources(dc)
	if err != nil {
		t.Fatalf("discovery on %s: %v", region, err)
	}
	mapper := restmapper.NewDiscoveryRESTMapper(groups)

	// The namespace is real (a dry-run object needs a namespace that
	// exists); everything in it is a dry run.
	ns := "itchart-" + runTag
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	kube := l.kube[region]
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: ns, Labels: map[string]string{"keelson.dev/test": "worker-chart"},
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s in %s: %v", ns, region, err)
	}
	t.Cleanup(func() {
		err := kube.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete namespace %s in %s: %v", ns, region, err)
		}
	})

	objs, _ := renderWorkerChart(t, ns, chartLabValues(t, nil))
	force := true
	for _, obj := range objs {
		id := obj.GetKind() + "/" + obj.GetName()
		gvk := obj.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Errorf("%s: the API server of %s does not serve %s: %v", id, region, gvk, err)
			continue
		}
		if obj.GetNamespace() != ns {
			t.Errorf("%s: rendered in namespace %q, want the release's %s", id, obj.GetNamespace(), ns)
			continue
		}
		body, err := json.Marshal(obj.Object)
		if err != nil {
			t.Fatal(err)
		}
		got, err := dyn.Resource(m.Resource).Namespace(ns).Patch(ctx, obj.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{
			DryRun:          []string{metav1.DryRunAll},
			FieldManager:    chartFieldOwner,
			Force:           &force,
			FieldValidation: metav1.FieldValidationStrict,
		})
		if err != nil {
			t.Errorf("%s: server-side apply (dry run) refused by %s: %v", id, region, err)
			continue
		}
		if got.GetKind() != obj.GetKind() || got.GetName() != obj.GetName() || got.GetNamespace() != ns {
			t.Errorf("%s: the API server answered with %s/%s in %s", id, got.GetKind(), got.GetName(), got.GetNamespace())
		}
		if !slices.ContainsFunc(got.GetManagedFields(), func(f metav1.ManagedFieldsEntry) bool {
			return f.Manager == chartFieldOwner && f.Operation == metav1.ManagedFieldsOperationApply
		}) {
			t.Errorf("%s: no fields applied by %s in the answer: %+v", id, chartFieldOwner, got.GetManagedFields())
		}
		if obj.GetKind() == "Deployment" {
			// What the API server would keep: the environment, probes and
			// security settings the render test checked, nothing pruned.
			want, _, _ := unstructured.NestedSlice(obj.Object, "spec", "template", "spec", "containers")
			have, _, _ := unstructured.NestedSlice(got.Object, "spec", "template", "spec", "containers")
			if len(have) != 1 || len(want) != 1 {
				t.Fatalf("%s: containers rendered %d, answered %d", id, len(want), len(have))
			}
			for _, field := range []string{"env", "ports", "readinessProbe", "livenessProbe", "securityContext", "volumeMounts"} {
				w, _, _ := unstructured.NestedFieldNoCopy(want[0].(map[string]any), field)
				h, _, _ := unstructured.NestedFieldNoCopy(have[0].(map[string]any), field)
				if !chartSubset(w, h) {
					t.Errorf("%s: the API server's container %s differs from the chart's:\nchart:  %v\nserver: %v", id, field, w, h)
				}
			}
		}
		t.Logf("%s: accepted by %s (dry run)", id, region)
	}
	// A dry run stores nothing.
	for _, obj := range objs {
		gvk := obj.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			continue
		}
		_, err = dyn.Resource(m.Resource).Namespace(ns).Get(ctx, obj.GetName(), metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			t.Errorf("%s/%s exists after a dry run (err %v)", obj.GetKind(), obj.GetName(), err)
		}
	}
}

// chartRoot is the repository root.
func chartRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func chartReadFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// chartLabValues is values-lab.yaml with the test's artifact store, and
// extra merged over them.
func chartLabValues(t *testing.T, extra map[string]any) map[string]any {
	t.Helper()
	vals, err := chartutil.ReadValuesFile(filepath.Join(chartRoot(t), chartDir, "values-lab.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	vals["artifacts"] = map[string]any{"url": chartArtifactURL}
	return chartutil.MergeTables(extra, vals.AsMap())
}

// chartRendered is a rendered chart: its objects' YAML and its NOTES.txt.
type chartRendered struct {
	manifest, notes string
}

// chartInstall renders the chart as `helm install --dry-run` does with no
// cluster (helm template): the chart's own defaults under vals.
func chartInstall(ch *chart.Chart, namespace string, vals map[string]any) (chartRendered, error) {
	cfg := &action.Configuration{Log: func(string, ...any) {}}
	inst := action.NewInstall(cfg)
	inst.ClientOnly = true
	inst.DryRun = true
	inst.ReleaseName = "keelson-worker"
	inst.Namespace = namespace
	rel, err := inst.Run(ch, vals)
	if err != nil {
		return chartRendered{}, err
	}
	return chartRendered{manifest: rel.Manifest, notes: rel.Info.Notes}, nil
}

// renderWorkerChart renders the chart in namespace and decodes its objects,
// in the order Helm would install them.
func renderWorkerChart(t *testing.T, namespace string, vals map[string]any) ([]*unstructured.Unstructured, string) {
	t.Helper()
	ch, err := loader.Load(filepath.Join(chartRoot(t), chartDir))
	if err != nil {
		t.Fatalf("load chart %s: %v", chartDir, err)
	}
	r, err := chartInstall(ch, namespace, vals)
	if err != nil {
		t.Fatalf("render chart %s: %v", chartDir, err)
	}
	docs := releaseutil.SplitManifests(r.manifest)
	keys := make([]string, 0, len(docs))
	for k := range docs {
		keys = append(keys, k)
	}
	sort.Sort(releaseutil.BySplitManifestsOrder(keys))
	var objs []*unstructured.Unstructured
	for _, k := range keys {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(docs[k]), &m); err != nil {
			t.Fatalf("rendered manifest does not parse: %v\n%s", err, docs[k])
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
	return objs, r.notes
}

func chartObjects(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func chartOne(t *testing.T, objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	t.Helper()
	found := chartObjects(objs, kind)
	if len(found) != 1 {
		t.Fatalf("want one %s, chart rendered %d", kind, len(found))
	}
	return found[0]
}

// chartDecode decodes obj into a typed API object, refusing fields the type
// does not have (a misspelt or misplaced field in a template).
func chartDecode(t *testing.T, obj *unstructured.Unstructured, into any) {
	t.Helper()
	b, err := json.Marshal(obj.Object)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, into); err != nil {
		t.Fatalf("%s %s: %v", obj.GetKind(), obj.GetName(), err)
	}
}

// workerEnvNames reads the environment variables the worker reads from its
// source: the names in worker/config.go (its options and what it passes on
// to Terraform, whose names ending in _ are prefixes), the Slack settings of
// worker/slackhook/config.go, each with its _FILE twin, and what the Helm
// activity reads for a release file's valuesFrom (release/values_from.go).
func workerEnvNames(t *testing.T) (known map[string]bool, prefixes []string) {
	t.Helper()
	envName := regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)
	known = map[string]bool{}
	for _, f := range []string{"worker/config.go", "worker/slackhook/config.go", "release/values_from.go"} {
		file, err := parser.ParseFile(token.NewFileSet(), filepath.Join(chartRoot(t), f), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil || !envName.MatchString(s) || len(s) < 3 {
				return true
			}
			switch {
			case strings.HasSuffix(s, "_"):
				prefixes = append(prefixes, s)
			case strings.HasPrefix(f, "worker/slackhook/"):
				known[s], known[s+"_FILE"] = true, true
			default:
				known[s] = true
			}
			return true
		})
	}
	for _, must := range []string{"TEMPORAL_ADDRESS", "KEELSON_HTTP_ADDR", "KEELSON_SLACK_BOT_TOKEN"} {
		if !known[must] {
			t.Fatalf("read no %s from the worker's source: this test no longer finds its variables (%v)", must, known)
		}
	}
	return known, prefixes
}

// workerStopTimeouts reads from worker/main.go how long the worker may take
// to stop: stopTimeout, which running activities get, and the timeout of
// shutdownHTTP, which comes first.
func workerStopTimeouts(t *testing.T) (stop, httpShutdown time.Duration) {
	t.Helper()
	file, err := parser.ParseFile(token.NewFileSet(), filepath.Join(chartRoot(t), "worker/main.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, decl := range file.Decls {
		switch d := decl.(type) {
		case *ast.GenDecl:
			for _, spec := range d.Specs {
				if vs, ok := spec.(*ast.ValueSpec); ok {
					for i, name := range vs.Names {
						if name.Name == "stopTimeout" && i < len(vs.Values) {
							stop, _ = chartDuration(vs.Values[i])
						}
					}
				}
			}
		case *ast.FuncDecl:
			if d.Name.Name != "shutdownHTTP" {
				continue
			}
			ast.Inspect(d, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				if sel, ok := call.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "WithTimeout" && len(call.Args) == 2 {
					httpShutdown, _ = chartDuration(call.Args[1])
				}
				return true
			})
		}
	}
	if stop <= 0 || httpShutdown <= 0 {
		t.Fatalf("worker/main.go: found stopTimeout %s and shutdownHTTP's timeout %s; this test reads `const stopTimeout = N * time.Second` and context.WithTimeout(..., N*time.Second) in shutdownHTTP", stop, httpShutdown)
	}
	return stop, httpShutdown
}

// chartDuration evaluates N * time.Unit, time.Unit or N.
func chartDuration(e ast.Expr) (time.Duration, bool) {
	units := map[string]time.Duration{"Nanosecond": time.Nanosecond, "Microsecond": time.Microsecond,
		"Millisecond": time.Millisecond, "Second": time.Second, "Minute": time.Minute, "Hour": time.Hour}
	switch e := e.(type) {
	case *ast.ParenExpr:
		return chartDuration(e.X)
	case *ast.BasicLit:
		n, err := strconv.ParseInt(e.Value, 0, 64)
		return time.Duration(n), err == nil
	case *ast.SelectorExpr:
		if x, ok := e.X.(*ast.Ident); ok && x.Name == "time" {
			u, ok := units[e.Sel.Name]
			return u, ok
		}
	case *ast.BinaryExpr:
		if e.Op == token.MUL {
			a, ok1 := chartDuration(e.X)
			b, ok2 := chartDuration(e.Y)
			return a * b, ok1 && ok2
		}
	}
	return 0, false
}

// chartSubset reports whether every field of want is in have with the same
// value (have may hold more: the API server's defaults).
func chartSubset(want, have any) bool {
	switch w := want.(type) {
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok {
			return false
		}
		for k, v := range w {
			if !chartSubset(v, h[k]) {
				return false
			}
		}
		return true
	case []any:
		h, ok := have.([]any)
		if !ok || len(h) != len(w) {
			return false
		}
		for i := range w {
			if !chartSubset(w[i], h[i]) {
				return false
			}
		}
		return true
	default:
		return fmt.Sprint(want) == fmt.Sprint(have)
	}
}

// TestWorkerChartIdentity renders the chart with an access policy, the
// Slack bridge's key and a Secret of chart values: each reaches the worker
// as the file its variable names, mounted read-only.
func TestWorkerChartIdentity(t *testing.T) {
	objs, notes := renderWorkerChart(t, "keelson", chartLabValues(t, map[string]any{
		"identity":    map[string]any{"accessPolicy": map[string]any{"configMap": "keelson-access"}, "bridgeKey": map[string]any{"secretName": "keelson-bridge"}},
		"chartValues": map[string]any{"secretName": "keelson-chart-values"},
	}))
	var d appsv1.Deployment
	chartDecode(t, chartOne(t, objs, "Deployment"), &d)
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m
	}
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		vols[v.Name] = v
	}
	for _, w := range []struct{ env, file, volume, source string }{
		{"KEELSON_ACCESS", "/etc/keelson/access/access.yaml", "access", "keelson-access"},
		{"KEELSON_BRIDGE_KEY", "/etc/keelson/bridge/key", "bridge", "keelson-bridge"},
		{"KEELSON_VALUES_DIR", "/etc/keelson/values", "chart-values", "keelson-chart-values"},
	} {
		if env[w.env] != w.file {
			t.Errorf("%s=%q, want %q", w.env, env[w.env], w.file)
		}
		m, ok := mounts[w.volume]
		if !ok || !m.ReadOnly || !strings.HasPrefix(w.file, m.MountPath) {
			t.Errorf("volume %s mounted %+v; want read-only at the folder of %s", w.volume, m, w.file)
		}
		v := vols[w.volume]
		got := ""
		switch {
		case v.ConfigMap != nil:
			got = v.ConfigMap.Name
		case v.Secret != nil:
			got = v.Secret.SecretName
		}
		if got != w.source {
			t.Errorf("volume %s comes from %q, want %q", w.volume, got, w.source)
		}
	}
	if strings.Contains(notes, "WARNING: no access policy") {
		t.Errorf("NOTES warn about a missing access policy that is set:\n%s", notes)
	}
	// Without them: nothing mounted, and the notes say what is missing.
	objs, notes = renderWorkerChart(t, "keelson", chartLabValues(t, nil))
	chartDecode(t, chartOne(t, objs, "Deployment"), &d)
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		if e.Name == "KEELSON_ACCESS" || e.Name == "KEELSON_BRIDGE_KEY" || e.Name == "KEELSON_VALUES_DIR" {
			t.Errorf("%s set without its value", e.Name)
		}
	}
	if !strings.Contains(notes, "WARNING: no access policy") {
		t.Errorf("NOTES do not warn about the missing access policy:\n%s", notes)
	}
}
