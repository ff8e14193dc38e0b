// Package infra holds the stacks and charts of the demo and the local lab;
// its only Go code is this test, which checks docker-compose.yml the way
// `docker compose` reads it, since this machine has no Docker engine.
package infra

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/keelson-dev/keelson/workflows"
)

// loadCompose loads ../docker-compose.yml with compose-go, interpolating
// env (and nothing from the process environment, so the test does not
// depend on who runs it).
func loadCompose(t *testing.T, env map[string]string) *types.Project {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(root, "docker-compose.yml")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("read compose file: %v", err)
	}
	project, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: file, Content: data}},
		Environment: env,
	})
	if err != nil {
		t.Fatalf("load %s: %v", file, err)
	}
	return project
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatalf("service %s: %v", name, err)
	}
	return s
}

func env(s types.ServiceConfig, key string) string {
	if v := s.Environment[key]; v != nil {
		return *v
	}
	return ""
}

// published returns the host ports the service publishes for target.
func published(s types.ServiceConfig, target uint32) []string {
	var out []string
	for _, p := range s.Ports {
		if p.Target == target {
			out = append(out, p.Published)
		}
	}
	return out
}

func TestComposeServices(t *testing.T) {
	p := loadCompose(t, nil)
	if p.Name != "keelson" {
		t.Errorf("project name = %q, want keelson", p.Name)
	}
	want := []string{"keelson-worker-a", "keelson-worker-b", "moto", "postgresql", "s3-bucket",
		"temporal", "temporal-namespace", "temporal-schema", "temporal-ui"}
	if got := p.ServiceNames(); !slices.Equal(sorted(got), want) {
		t.Errorf("services = %v, want %v", sorted(got), want)
	}

	temporal := service(t, p, "temporal")
	if !strings.HasPrefix(temporal.Image, "temporalio/server:") {
		t.Errorf("temporal image = %q, want temporalio/server", temporal.Image)
	}
	if got := env(temporal, "DB"); got != "postgres12" {
		t.Errorf("temporal DB = %q, want postgres12 (PostgreSQL persistence)", got)
	}
	if got := env(temporal, "POSTGRES_SEEDS"); got != "postgresql" {
		t.Errorf("temporal POSTGRES_SEEDS = %q, want the postgresql service", got)
	}
	if got := published(temporal, 7233); !slices.Equal(got, []string{"7233"}) {
		t.Errorf("temporal publishes %v for 7233, want [7233]", got)
	}
	if d := temporal.DependsOn["temporal-schema"]; d.Condition != types.ServiceConditionCompletedSuccessfully {
		t.Errorf("temporal waits for temporal-schema %q, want %q", d.Condition, types.ServiceConditionCompletedSuccessfully)
	}

	schema := service(t, p, "temporal-schema")
	if !strings.HasPrefix(schema.Image, "temporalio/admin-tools:") {
		t.Errorf("temporal-schema image = %q, want temporalio/admin-tools", schema.Image)
	}
	if d := schema.DependsOn["postgresql"]; d.Condition != types.ServiceConditionHealthy {
		t.Errorf("temporal-schema waits for postgresql %q, want %q", d.Condition, types.ServiceConditionHealthy)
	}
	for _, k := range []string{"DB", "POSTGRES_SEEDS", "DB_PORT", "POSTGRES_USER", "POSTGRES_PWD"} {
		if env(schema, k) != env(temporal, k) {
			t.Errorf("temporal-schema %s = %q, temporal's = %q: both must reach the same database", k, env(schema, k), env(temporal, k))
		}
	}

	ui := service(t, p, "temporal-ui")
	if !strings.HasPrefix(ui.Image, "temporalio/ui:") {
		t.Errorf("temporal-ui image = %q", ui.Image)
	}
	if got := published(ui, 8080); !slices.Equal(got, []string{"8080"}) {
		t.Errorf("temporal-ui publishes %v for 8080, want [8080]", got)
	}
	if got := env(ui, "TEMPORAL_ADDRESS"); got != "temporal:7233" {
		t.Errorf("temporal-ui TEMPORAL_ADDRESS = %q", got)
	}

	pg := service(t, p, "postgresql")
	if len(pg.Ports) != 0 {
		t.Errorf("postgresql publishes %v; only Temporal should reach it", pg.Ports)
	}
	if m := service(t, p, "moto"); len(m.Ports) != 0 {
		t.Errorf("moto publishes %v; only the workers should reach it", m.Ports)
	}
}

// mountsOf returns the bind mounts of a service, target by source.
func mountsOf(s types.ServiceConfig) map[string]string {
	out := map[string]string{}
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeBind {
			out[v.Target] = v.Source
		}
	}
	return out
}

// The compose file runs the files of the local prod topology (infra/prod,
// make up-prod): Temporal's configuration, the schema, namespace and
// bucket scripts. They must exist, and compose must mount them where its
// commands look.
func TestComposeUsesProdFiles(t *testing.T) {
	p := loadCompose(t, nil)
	root := p.WorkingDir
	for _, c := range []struct {
		svc, target, file, command string
	}{
		{"temporal", "/etc/keelson/temporal/temporal.yaml", "infra/prod/temporal.yaml", "--root /etc/keelson/temporal --config . --env temporal"},
		{"temporal", "/etc/keelson/temporal/dynamicconfig.yaml", "infra/prod/dynamicconfig.yaml", ""},
		{"temporal-schema", "/etc/keelson/schema.sh", "infra/prod/schema.sh", "/etc/keelson/schema.sh"},
		{"temporal-namespace", "/etc/keelson/namespace.sh", "infra/prod/namespace.sh", "/etc/keelson/namespace.sh"},
		{"s3-bucket", "/etc/keelson/bucket.py", "infra/prod/bucket.py", "/etc/keelson/bucket.py"},
	} {
		s := service(t, p, c.svc)
		want := filepath.Join(root, c.file)
		if got := mountsOf(s)[c.target]; got != want {
			t.Errorf("%s mounts %q at %s, want %s", c.svc, got, c.target, want)
		}
		if _, err := os.Stat(want); err != nil {
			t.Errorf("%s: %v", c.svc, err)
		}
		if c.command == "" {
			continue
		}
		if cmd := strings.Join(append(slices.Clone(s.Entrypoint), s.Command...), " "); !strings.Contains(cmd, c.command) {
			t.Errorf("%s runs %q, want it to contain %q", c.svc, cmd, c.command)
		}
	}
	temporal := service(t, p, "temporal")
	if got := env(temporal, "DYNAMIC_CONFIG_FILE_PATH"); got != "/etc/keelson/temporal/dynamicconfig.yaml" {
		t.Errorf("temporal DYNAMIC_CONFIG_FILE_PATH = %q", got)
	}
}

// The images run the versions infra/prod builds from Go modules: the
// server and the UI server of infra/lab/tools/temporal's go.mod (admin-tools
// carries the SQL tool and schemas of the same version).
func TestComposeVersionsMatchProdBuild(t *testing.T) {
	p := loadCompose(t, nil)
	gomod, err := os.ReadFile(filepath.Join("lab", "tools", "temporal", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*go\.temporal\.io/server v(\S+)$`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("infra/lab/tools/temporal/go.mod requires no go.temporal.io/server")
	}
	server := string(m[1])
	if got := service(t, p, "temporal").Image; got != "temporalio/server:"+server {
		t.Errorf("temporal image = %q, want temporalio/server:%s", got, server)
	}
	for _, name := range []string{"temporal-schema", "temporal-namespace"} {
		if got := service(t, p, name).Image; !strings.HasPrefix(got, "temporalio/admin-tools:"+server+"-") {
			t.Errorf("%s image = %q, want temporalio/admin-tools:%s-...", name, got, server)
		}
	}
	m = regexp.MustCompile(`(?m)^\s*github\.com/temporalio/ui-server/v2 v(\S+)$`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("infra/lab/tools/temporal/go.mod requires no github.com/temporalio/ui-server/v2")
	}
	if got := service(t, p, "temporal-ui").Image; got != "temporalio/ui:"+string(m[1]) {
		t.Errorf("temporal-ui image = %q, want temporalio/ui:%s", got, m[1])
	}
}

// The search attributes the compose file registers must be the ones the
// Release workflow upserts, or every release would fail in this setup; so
// must the local prod topology's.
func TestComposeRegistersSearchAttributes(t *testing.T) {
	p := loadCompose(t, nil)
	ns := service(t, p, "temporal-namespace")
	script, err := os.ReadFile(filepath.Join("prod", "namespace.sh"))
	if err != nil {
		t.Fatal(err)
	}
	lib, err := os.ReadFile(filepath.Join("prod", "lib.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{workflows.SearchAttrApplication, workflows.SearchAttrVersion, workflows.SearchAttrPhase} {
		if !slices.Contains(strings.Fields(env(ns, "SEARCH_ATTRIBUTES")), name) {
			t.Errorf("temporal-namespace does not register %s: SEARCH_ATTRIBUTES=%q", name, env(ns, "SEARCH_ATTRIBUTES"))
		}
		if !strings.Contains(string(script), name) {
			t.Errorf("infra/prod/namespace.sh does not register %s by default", name)
		}
		if !strings.Contains(string(lib), name) {
			t.Errorf("infra/prod/lib.sh does not register %s", name)
		}
	}
	if got := env(ns, "TEMPORAL_NAMESPACE"); got != "default" {
		t.Errorf("temporal-namespace TEMPORAL_NAMESPACE = %q, want default", got)
	}
	// The server has no health check of its own: the one-shot waits for it.
	if d := ns.DependsOn["temporal"]; d.Condition != types.ServiceConditionStarted {
		t.Errorf("temporal-namespace waits for temporal %q, want %q", d.Condition, types.ServiceConditionStarted)
	}
	if env(ns, "WAIT_SECONDS") == "" || env(ns, "WAIT_SECONDS") == "0" {
		t.Error("temporal-namespace does not wait for the server (WAIT_SECONDS)")
	}
	if d := service(t, p, "temporal-ui").DependsOn["temporal-namespace"]; d.Condition != types.ServiceConditionCompletedSuccessfully {
		t.Errorf("temporal-ui waits for temporal-namespace %q, want completed", d.Condition)
	}
}

func TestComposeWorkers(t *testing.T) {
	p := loadCompose(t, map[string]string{"KUBECONFIG_FILE": "/home/ops/.kube/config"})
	bucket := env(service(t, p, "s3-bucket"), "S3_BUCKET")
	if bucket == "" {
		t.Fatal("s3-bucket creates no bucket (S3_BUCKET)")
	}
	states := map[string]string{} // state volume -> worker
	for _, name := range []string{"keelson-worker-a", "keelson-worker-b"} {
		w := service(t, p, name)
		if w.Build == nil {
			t.Fatalf("%s has no build section", name)
		}
		if w.Build.Dockerfile != "Dockerfile" {
			t.Errorf("%s Dockerfile = %q", name, w.Build.Dockerfile)
		}
		dockerfile, err := os.ReadFile(filepath.Join(w.Build.Context, w.Build.Dockerfile))
		if err != nil {
			t.Fatalf("%s build: %v", name, err)
		}
		for _, want := range []string{"go build", "./worker", "terraform", "ENTRYPOINT"} {
			if !strings.Contains(string(dockerfile), want) {
				t.Errorf("Dockerfile does not mention %q", want)
			}
		}
		if n := strings.Count(string(dockerfile), "\nFROM "); n < 2 {
			t.Errorf("Dockerfile has %d stages after the first, want a multi-stage build", n)
		}

		wantEnv := map[string]string{
			"TEMPORAL_ADDRESS":   "temporal:7233",
			"TEMPORAL_NAMESPACE": "default",
			"KEELSON_TASK_QUEUE": workflows.TaskQueue,
			"KUBECONFIG":         "/etc/keelson/kubeconfig",
			"KEELSON_WORK_DIR":   "/var/lib/keelson/work",
		}
		for k, v := range wantEnv {
			if got := env(w, k); got != v {
				t.Errorf("%s %s = %q, want %q", name, k, got, v)
			}
		}
		// Artifacts in the bucket, on moto: what one worker writes (a plan)
		// the other reads (to apply it).
		art := env(w, "KEELSON_ARTIFACTS")
		u, err := url.Parse(art)
		if err != nil || u.Scheme != "s3" || u.Host != bucket || u.Query().Get("endpoint") != "http://moto:5000" {
			t.Errorf("%s KEELSON_ARTIFACTS = %q, want s3://%s/...?endpoint=http://moto:5000", name, art, bucket)
		}
		// One of two: the worker refuses a store on its own disk.
		if got := env(w, "KEELSON_FLEET"); got != "true" {
			t.Errorf("%s KEELSON_FLEET = %q, want true", name, got)
		}
		// Unset secrets interpolate to empty, never to the literal ${...}.
		if got := env(w, "KEELSON_SLACK_BOT_TOKEN"); got != "" {
			t.Errorf("%s KEELSON_SLACK_BOT_TOKEN = %q with nothing set, want empty", name, got)
		}
		for dep, cond := range map[string]string{
			"temporal-namespace": types.ServiceConditionCompletedSuccessfully,
			"s3-bucket":          types.ServiceConditionCompletedSuccessfully,
		} {
			if d := w.DependsOn[dep]; d.Condition != cond {
				t.Errorf("%s waits for %s %q, want %q", name, dep, d.Condition, cond)
			}
		}
		if len(w.Ports) != 0 {
			t.Errorf("%s publishes %v; it only dials out", name, w.Ports)
		}

		var kubeconfig bool
		state := ""
		for _, v := range w.Volumes {
			switch v.Target {
			case "/etc/keelson/kubeconfig":
				kubeconfig = v.Source == "/home/ops/.kube/config" && v.ReadOnly
			case "/var/lib/keelson":
				if v.Type == types.VolumeTypeVolume {
					state = v.Source
				}
			default:
				if !v.ReadOnly {
					t.Errorf("%s mounts %s writable at %s: a worker's state is its own volume", name, v.Source, v.Target)
				}
			}
		}
		if !kubeconfig {
			t.Errorf("%s does not mount $KUBECONFIG_FILE read-only at /etc/keelson/kubeconfig: %+v", name, w.Volumes)
		}
		if state == "" {
			t.Errorf("%s does not keep /var/lib/keelson on a volume: %+v", name, w.Volumes)
		} else if other, ok := states[state]; ok {
			t.Errorf("%s and %s share the volume %s; the workers share nothing on disk", other, name, state)
		}
		states[state] = name
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
