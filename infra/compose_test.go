// Package infra holds the stacks and charts of the demo and the local lab;
// its only Go code is this test, which checks docker-compose.yml the way
// `docker compose` reads it, since this machine has no Docker engine.
package infra

import (
	"context"
	"os"
	"path/filepath"
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
	want := []string{"keelson-worker", "postgresql", "temporal", "temporal-search-attributes", "temporal-ui"}
	if got := p.ServiceNames(); !slices.Equal(sorted(got), want) {
		t.Errorf("services = %v, want %v", sorted(got), want)
	}

	temporal := service(t, p, "temporal")
	if !strings.HasPrefix(temporal.Image, "temporalio/auto-setup:") {
		t.Errorf("temporal image = %q, want temporalio/auto-setup", temporal.Image)
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
	if temporal.HealthCheck == nil || len(temporal.HealthCheck.Test) == 0 {
		t.Error("temporal has no healthcheck; the services that depend on it would start too early")
	}
	if d := temporal.DependsOn["postgresql"]; d.Condition != types.ServiceConditionHealthy {
		t.Errorf("temporal waits for postgresql %q, want %q", d.Condition, types.ServiceConditionHealthy)
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
}

// The search attributes the compose file registers must be the ones the
// Release workflow upserts, or every release would fail in this setup.
func TestComposeRegistersSearchAttributes(t *testing.T) {
	p := loadCompose(t, nil)
	sa := service(t, p, "temporal-search-attributes")
	script := strings.Join(sa.Command, " ")
	for _, name := range []string{workflows.SearchAttrApplication, workflows.SearchAttrVersion, workflows.SearchAttrPhase} {
		if !strings.Contains(script, name) {
			t.Errorf("temporal-search-attributes does not register %s: %q", name, script)
		}
	}
	if d := sa.DependsOn["temporal"]; d.Condition != types.ServiceConditionHealthy {
		t.Errorf("temporal-search-attributes waits for temporal %q, want healthy", d.Condition)
	}
}

func TestComposeWorker(t *testing.T) {
	p := loadCompose(t, map[string]string{"KUBECONFIG_FILE": "/home/ops/.kube/config"})
	w := service(t, p, "keelson-worker")

	if w.Build == nil {
		t.Fatal("keelson-worker has no build section")
	}
	if w.Build.Dockerfile != "Dockerfile" {
		t.Errorf("worker Dockerfile = %q", w.Build.Dockerfile)
	}
	dockerfile, err := os.ReadFile(filepath.Join(w.Build.Context, w.Build.Dockerfile))
	if err != nil {
		t.Fatalf("worker build: %v", err)
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
		"KEELSON_ARTIFACTS":  "/var/lib/keelson/artifacts",
		"KEELSON_WORK_DIR":   "/var/lib/keelson/work",
	}
	for k, v := range wantEnv {
		if got := env(w, k); got != v {
			t.Errorf("worker %s = %q, want %q", k, got, v)
		}
	}
	// Unset secrets interpolate to empty, never to the literal ${...}.
	if got := env(w, "KEELSON_SLACK_BOT_TOKEN"); got != "" {
		t.Errorf("worker KEELSON_SLACK_BOT_TOKEN = %q with nothing set, want empty", got)
	}
	if d := w.DependsOn["temporal-search-attributes"]; d.Condition != types.ServiceConditionCompletedSuccessfully {
		t.Errorf("worker waits for temporal-search-attributes %q, want %q", d.Condition, types.ServiceConditionCompletedSuccessfully)
	}
	if len(w.Ports) != 0 {
		t.Errorf("worker publishes %v; it only dials out", w.Ports)
	}

	var kubeconfig, state bool
	for _, v := range w.Volumes {
		switch v.Target {
		case "/etc/keelson/kubeconfig":
			kubeconfig = v.Source == "/home/ops/.kube/config" && v.ReadOnly
		case "/var/lib/keelson":
			state = v.Type == types.VolumeTypeVolume && v.Source == "keelson-data"
		}
	}
	if !kubeconfig {
		t.Errorf("worker does not mount $KUBECONFIG_FILE read-only at /etc/keelson/kubeconfig: %+v", w.Volumes)
	}
	if !state {
		t.Errorf("worker does not keep /var/lib/keelson on the keelson-data volume: %+v", w.Volumes)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
