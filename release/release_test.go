package release

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

var update = flag.Bool("update", false, "rewrite the golden .err files of testdata/bad")

// TestBadFiles loads every file in testdata/bad and compares the whole
// error text with the .err file beside it. Each file holds one problem,
// except several-problems.yaml, which shows that all are reported at once.
func TestBadFiles(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "bad", "*.yaml"))
	if err != nil || len(files) < 40 {
		t.Fatalf("expected the bad files in testdata/bad, found %d (%v)", len(files), err)
	}
	abs, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			spec, err := Load(file)
			if err == nil {
				t.Fatalf("loaded without error: %+v", spec)
			}
			if spec != nil {
				t.Errorf("a spec came back with the error")
			}
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, not *Errors: %v", err, err)
			}
			for _, e := range errs.List {
				if e.File != file {
					t.Errorf("problem names file %q, want %q: %v", e.File, file, e)
				}
			}
			if strings.HasPrefix(name, "several-") {
				if len(errs.List) < 8 {
					t.Errorf("%s reported %d problems, want every one of at least 8:\n%v", name, len(errs.List), err)
				}
			} else if len(errs.List) != 1 {
				t.Errorf("reported %d problems, want 1:\n%v", len(errs.List), err)
			}
			// Paths of missing folders are absolute; the golden files hold them
			// relative to a placeholder so that they pass in any checkout.
			got := strings.ReplaceAll(err.Error(), abs, "TESTDATA") + "\n"
			golden := strings.TrimSuffix(file, ".yaml") + ".err"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("no golden file (run go test ./release -run TestBadFiles -update): %v", err)
			}
			if got != string(want) {
				t.Errorf("errors differ from %s\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}

func TestErrorFormat(t *testing.T) {
	e := Error{File: "release.yaml", Line: 23, Column: 7, Field: "waves[1].regions[0]", Message: `unknown region "eu-west-9" (regions: us-east-1, eu-west-1)`}
	if got, want := e.Error(), `release.yaml:23:7: waves[1].regions[0]: unknown region "eu-west-9" (regions: us-east-1, eu-west-1)`; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	errs := &Errors{List: []Error{e, {Field: "kind", Message: "m"}}}
	if got := strings.Count(errs.Error(), "\n"); got != 1 {
		t.Errorf("two problems should be two lines, got %q", errs.Error())
	}
}

func loadGood(t *testing.T) *Spec {
	t.Helper()
	spec, err := Load(filepath.Join("testdata", "good", "release.yaml"))
	if err != nil {
		t.Fatalf("load good file: %v", err)
	}
	return spec
}

func TestGoodFileDefaults(t *testing.T) {
	s := loadGood(t)
	dir, _ := filepath.Abs(filepath.Join("testdata", "good"))
	check := func(name string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", name, got, want)
		}
	}
	check("source", s.Source, filepath.Join("testdata", "good", "release.yaml"))
	check("chart.path", s.Chart.Path, filepath.Join(dir, "chart"))
	check("terraform.path", s.Terraform.Path, filepath.Join(dir, "stack"))
	check("chart.release", s.Chart.Release, "web")
	check("chart.versionValue", s.Chart.VersionValue, "image.tag")
	check("terraform.outputsValue", s.Terraform.OutputsValue, "terraform")
	check("values", s.Values, Values{
		"replicas": float64(2),
		"image":    map[string]any{"repository": "ghcr.io/keelson-dev/web"},
		"features": []any{"a", "b"},
	})
	check("regions[0].values", s.Regions[0].Values, Values{"replicas": float64(3)})
	check("regions[1].terraformVars", s.Regions[1].TerraformVars, map[string]string{"size": "small"})
	check("waves[0].parallelism", s.Waves[0].Parallelism, 1)
	check("waves[0].bake", s.Waves[0].Bake.Duration, 2*time.Minute)
	check("waves[0].gate", s.Waves[0].Gate, (*Gate)(nil))
	check("waves[1].parallelism", s.Waves[1].Parallelism, 1)
	g := s.Waves[1].Gate
	check("gate.name", g.Name, "promote-to-rest")
	check("gate.when", g.When, GateChanges)
	check("gate.timeout", g.Timeout.Duration, time.Hour)
	check("gate.escalation", *g.Escalation, Escalation{Mention: "@oncall", Extend: Duration{30 * time.Minute}})
	check("gate.reminders", g.Reminders, []Duration{{15 * time.Minute}, {5 * time.Minute}})
	check("health[0]", s.Health[0], HealthCheck{
		Name: "ready", URL: "http://{{.Outputs.endpoint}}/healthz?region={{.Region}}&v={{.Version}}",
		ExpectStatus: 200, JSONField: "status.ready", ExpectValue: "true",
		Interval: Duration{5 * time.Second}, FailureLimit: 3, Timeout: Duration{5 * time.Second}, Successes: 1,
	})
	check("health[1]", s.Health[1], HealthCheck{
		Name: "home", URL: "https://web.example.com/", ExpectStatus: 204,
		Interval: Duration{2 * time.Second}, FailureLimit: 5, Timeout: Duration{time.Second}, Successes: 2,
	})
	check("readiness", s.Readiness.Timeout.Duration, 3*time.Minute)
	check("rollback", s.Rollback.Policy, RollbackAuto)
	check("notify", s.Notify.Slack.Channel, "#releases")
	if err := s.Validate(); err != nil {
		t.Errorf("completed spec does not validate: %v", err)
	}
}

// TestMinimalDefaults checks the defaults that the good file sets itself.
func TestMinimalDefaults(t *testing.T) {
	data := []byte(`apiVersion: keelson.dev/v1alpha1
kind: Release
application: api
chart: {path: chart}
regions:
  - {name: r1, kubeContext: c1, namespace: api}
  - {name: r2, kubeContext: c2, namespace: api}
waves:
  - {name: all, regions: [r1, r2], gate: {}}
terraform: {path: stack}
health:
  - {name: h, url: "http://{{.Region}}.example.com/"}
`)
	s, err := Parse(data, filepath.Join("testdata", "good", "min.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	g := s.Waves[0].Gate
	want := Gate{Name: "before-all", When: GateAlways, OnTimeout: TimeoutReject, Timeout: Duration{24 * time.Hour}}
	if !reflect.DeepEqual(*g, want) {
		t.Errorf("gate = %+v, want %+v", *g, want)
	}
	if s.Waves[0].Parallelism != 2 || s.Chart.Release != "api" || s.Chart.VersionValue != "version" ||
		s.Terraform.OutputsValue != "terraform" || s.Readiness.Timeout.Duration != 5*time.Minute ||
		s.Rollback.Policy != RollbackAuto {
		t.Errorf("defaults not applied: %+v", s)
	}
	h := s.Health[0]
	if h.Interval.Duration != 5*time.Second || h.Timeout.Duration != 5*time.Second || h.FailureLimit != 3 ||
		h.ExpectStatus != 200 || h.Successes != 1 {
		t.Errorf("health defaults not applied: %+v", h)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	s := loadGood(t)
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back Spec
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*s, back) {
		t.Errorf("spec changed through JSON:\nbefore %#v\nafter  %#v", *s, back)
	}
	if !strings.Contains(string(b), `"bake":"2m0s"`) {
		t.Errorf("durations should travel as strings: %s", b)
	}
}

func TestValidateVersion(t *testing.T) {
	for v, ok := range map[string]bool{
		"1.4.2": true, "v1.4.2-rc.1+build.7": true, "2026_11_21": true, strings.Repeat("a", 63): true,
		"": false, "1.4 2": false, strings.Repeat("a", 64): false, "1.4/2": false, "ü": false, "1.4\n": false,
	} {
		if err := ValidateVersion(v); (err == nil) != ok {
			t.Errorf("ValidateVersion(%q) = %v, want ok=%v", v, err, ok)
		}
	}
}

func TestSuggest(t *testing.T) {
	known := []string{"kubeContext", "name", "namespace"}
	for key, want := range map[string]string{
		"namepsace":   ` (did you mean "namespace"?)`,
		"kubecontext": ` (did you mean "kubeContext"?)`,
		"zzzzzzzzz":   ` (known keys: kubeContext, name, namespace)`,
	} {
		if got := suggest(key, known); got != want {
			t.Errorf("suggest(%q) = %q, want %q", key, got, want)
		}
	}
}

// FuzzParse feeds the loader arbitrary files. It must never panic, must
// explain every refusal with *Errors, and whatever it accepts must validate
// again, survive JSON unchanged (it travels in workflow inputs) and load
// again unchanged when written back as YAML.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*", "*.yaml"))
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	// Valid files in other shapes, so that mutations start from accepted
	// input: flow style, aliases, defaults only, awkward chart values.
	f.Add([]byte(`apiVersion: keelson.dev/v1alpha1
kind: Release
application: a
chart: {path: chart}
regions: [{name: r, kubeContext: c, namespace: n}]
waves: [{name: w, regions: [r], gate: {}}]
`))
	f.Add([]byte(`apiVersion: keelson.dev/v1alpha1
kind: Release
application: api-2
chart: {path: ./chart.tgz, release: api.v2}
terraform: {path: stack, vars: {a: "1", b: on}}
values:
  int: 3
  big: 12345678901234567890
  float: 1.5e3
  hex: 0x1F
  bools: [true, yes, "no", off]
  nothing: null
  when: 2026-11-21
  text: "<<"
  quoted: {"a b": "c: d", "": x}
  nested: [[1, 2], {k: [v]}]
  empty: {}
regions:
  - &r {name: r1, kubeContext: c, namespace: n, values: {x: &v [1, 2]}}
  - {name: r2, kubeContext: c, namespace: n, values: {y: *v}}
waves:
  - name: one
    regions: [r1]
    bake: 1h1m1.5s
  - name: two
    regions: [r2]
    parallelism: 5
    gate: {when: destroys, timeout: 90s, onTimeout: escalate, escalation: {mention: "@x", extend: 1ms}, reminders: [1s, 89s]}
health:
  - {name: h, url: "https://{{with .Outputs.host}}{{.}}{{else}}x{{end}}:8443/{{.Region}}", jsonField: a.0.b, expectValue: "null"}
readiness: {timeout: 0s}
rollback: {policy: none}
notify: {slack: {channel: C123}}
`))
	// Parse resolves paths against the good file's folder, where chart and
	// stack exist, so that fuzzed files can be accepted.
	source := filepath.Join("testdata", "good", "fuzz.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data, source)
		if err != nil {
			var errs *Errors
			if !errors.As(err, &errs) || len(errs.List) == 0 {
				t.Fatalf("refusal is not a non-empty *Errors: %T %v", err, err)
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("accepted spec does not validate again: %v", err)
		}
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		var back Spec
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("unmarshal %s: %v", b, err)
		}
		if !reflect.DeepEqual(*s, back) {
			t.Fatalf("JSON changed the spec:\nbefore %#v\nafter  %#v", *s, back)
		}
		y, err := yaml.Marshal(s)
		if err != nil {
			t.Fatalf("yaml marshal: %v", err)
		}
		again, err := Parse(y, source)
		if err != nil {
			t.Fatalf("completed spec written back does not load:\n%s\n%v", y, err)
		}
		if !reflect.DeepEqual(s, again) {
			t.Fatalf("completed spec changed when loaded again:\nbefore %#v\nafter  %#v", *s, *again)
		}
	})
}

// TestDemoFileAndDocs loads the demo's release file and checks that the
// reference page shows it as it is, so the documented example cannot rot.
func TestDemoFileAndDocs(t *testing.T) {
	demoPath := filepath.Join("..", "infra", "demo", "release.yaml")
	s, err := Load(demoPath)
	if err != nil {
		t.Fatalf("the demo's release file does not load: %v", err)
	}
	if len(s.Regions) != 3 || len(s.Waves) != 2 || s.Waves[1].Gate == nil || s.Waves[1].Gate.Name != "promote-to-rest" {
		t.Errorf("demo file no longer has three regions and a promote-to-rest gate: %+v", s)
	}
	demo, err := os.ReadFile(demoPath)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join("..", "docs", "release-file.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, example, ok := strings.Cut(string(doc), "## Complete example")
	if !ok {
		t.Fatal("docs/release-file.md has no complete example section")
	}
	_, example, _ = strings.Cut(example, "```yaml\n")
	example, _, _ = strings.Cut(example, "```\n")
	if example != string(demo) {
		t.Errorf("docs/release-file.md's example differs from %s; copy the file into the page", demoPath)
	}
}

func BenchmarkParse(b *testing.B) {
	path := filepath.Join("testdata", "good", "release.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Parse(data, path); err != nil {
			b.Fatal(err)
		}
	}
}

// TestStrategyExamples loads the strategy examples of docs/release-file.md
// from docs/examples, and checks the page shows them as they are.
func TestStrategyExamples(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "release-file.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"canary", "blue-green", "rolling"} {
		path := filepath.Join("..", "docs", "examples", name+".yaml")
		s, err := Load(path)
		if err != nil {
			t.Errorf("%s does not load: %v", path, err)
			continue
		}
		want := map[string]StrategyKind{"canary": StrategyCanary, "blue-green": StrategyBlueGreen, "rolling": StrategyRolling}[name]
		if got := s.Strategy.Kind(); got != want {
			t.Errorf("%s: strategy %s, want %s", path, got, want)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(doc), "```yaml\n"+string(data)+"```\n") {
			t.Errorf("docs/release-file.md does not show %s as it is; copy the file into the page", path)
		}
	}
}
