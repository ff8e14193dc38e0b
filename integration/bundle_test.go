package integration

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/keelson-dev/keelson/activities/artifacts"
	"github.com/keelson-dev/keelson/bundle"
	"github.com/keelson-dev/keelson/control"
	"github.com/keelson-dev/keelson/release"
	"github.com/keelson-dev/keelson/workflows"
)

// demoCopy copies the demo's chart and Terraform stack into a fresh folder
// with a release file naming them relatively, as a CI checkout would hold
// them, and returns the folder and the file.
func (l *lab) demoCopy(t *testing.T, app string, edit func(doc map[string]any)) (dir, file string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "checkout")
	for _, sub := range []string{"chart", "terraform"} {
		if err := bundle.CopyTree(filepath.Join(l.root, "infra/demo", sub), filepath.Join(dir, sub)); err != nil {
			t.Fatalf("copy the demo's %s: %v", sub, err)
		}
	}
	// CopyTree keeps the read-only modes a bundle needs; the test edits.
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			_ = os.Chmod(p, fi.Mode()|0o200)
		}
		return nil
	})
	src := l.releaseFile(t, app, edit)
	raw, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	doc["chart"].(map[string]any)["path"] = "chart"
	if tf, ok := doc["terraform"].(map[string]any); ok {
		tf["path"] = "terraform"
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	file = filepath.Join(dir, "release.yaml")
	if err := os.WriteFile(file, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, file
}

// TestReleaseOutlivesItsCheckout starts a release from a copy of the demo's
// folder and deletes the copy as soon as `keelson release start` returns:
// the release runs from its bundle and completes.
func TestReleaseOutlivesItsCheckout(t *testing.T) {
	l := newLab(t)
	app := l.appName(t, "itbundle")
	dir, file := l.demoCopy(t, app, func(doc map[string]any) {
		delete(wave(doc, "rest"), "gate")
	})
	if out, code := l.keelson(t, "release", "start", "-f", file, "--version", "1.0.0", "--dry-run"); code != 0 ||
		!strings.Contains(out, "sha256:") || !strings.Contains(out, "chart/Chart.yaml") || !strings.Contains(out, "terraform/main.tf") {
		t.Fatalf("--dry-run: exit %d\n%s", code, out)
	}
	id := l.start(t, file, "1.0.0")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	res := l.result(t, id, 5*time.Minute)
	if res.Phase != workflows.PhaseSucceeded {
		t.Fatalf("release from a deleted checkout: %s", writeJSON(res))
	}
	l.record(t, id, "release-bundled")
	l.record(t, workflows.RegionID(id, "us-east-1"), "region-bundled")
	// Since issue 12 the region's input carries the approved plan, which
	// its Apply checks the saved plan file against.
	l.record(t, id, "release-approved-plan")
	l.record(t, workflows.RegionID(id, "us-east-1"), "region-approved-plan")
	// Since the ungated plans of issue 12, a wave without a gate plans
	// without a show (PlanInput.Ungated), which its Apply runs instead.
	l.record(t, id, "release-ungated-plan")
	l.record(t, workflows.RegionID(id, "us-east-1"), "region-ungated-plan")
	for _, r := range []string{"us-east-1", "eu-west-1", "ap-southeast-1"} {
		if v := l.deployedVersion(t, r, app); v != "1.0.0" {
			t.Errorf("%s runs %q, want 1.0.0", r, v)
		}
	}
}

// TestChartEditedBetweenWavesIsNotShipped edits the chart on disk while the
// release waits at the gate between its waves: the second wave deploys the
// bundle's chart, so its Helm manifest is the first wave's.
func TestChartEditedBetweenWavesIsNotShipped(t *testing.T) {
	l := newLab(t)
	app := l.appName(t, "itedit")
	dir, file := l.demoCopy(t, app, func(doc map[string]any) {
		delete(doc, "terraform")
		wave(doc, "rest")["gate"] = map[string]any{"name": "promote-to-rest", "when": "always", "approvers": []any{"demo-approver"}}
	})
	id := l.start(t, file, "1.0.0")
	l.waitPhase(t, id, workflows.PhaseAwaitGate, 3*time.Minute)
	edited := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: edited-after-start\ndata:\n  shipped: \"no\"\n"
	if err := os.WriteFile(filepath.Join(dir, "chart/templates/edited.yaml"), []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := l.keelson(t, "approve", id, "--user", "demo-approver"); code != 0 {
		t.Fatalf("approve: %s", out)
	}
	if res := l.result(t, id, 5*time.Minute); res.Phase != workflows.PhaseSucceeded {
		t.Fatalf("%s", writeJSON(res))
	}
	first := l.helmCLI(t, "us-east-1", "get", "manifest", app, "-n", app)
	for _, r := range []string{"eu-west-1", "ap-southeast-1"} {
		m := l.helmCLI(t, r, "get", "manifest", app, "-n", app)
		if strings.Contains(m, "edited-after-start") {
			t.Errorf("%s: the chart edited after the start was shipped:\n%s", r, m)
		}
		if norm(m, r) != norm(first, "us-east-1") {
			t.Errorf("%s: manifest differs from the first wave's\n--- us-east-1\n%s\n--- %s\n%s", r, first, r, m)
		}
	}
}

// norm replaces the region's name in a manifest: the chart is given it as
// a value, and the rest must be equal.
func norm(manifest, region string) string {
	return strings.ReplaceAll(manifest, region, "REGION")
}

// TestBadBundleAppliesNothing starts releases whose bundle is not what its
// digest says, or not in the store: the first step that needs it fails
// without a retry, naming the digest, and nothing is applied anywhere.
func TestBadBundleAppliesNothing(t *testing.T) {
	l := newLab(t)
	store, err := artifacts.OpenLocation(context.Background(), filepath.Join(l.dir, "artifacts"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, want string }{
		{"tampered", "digest mismatch"},
		{"missing", "not in the artifact store"},
	} {
		t.Run(c.name, func(t *testing.T) {
			app := l.appName(t, "itbad"+c.name[:3])
			dir, file := l.demoCopy(t, app, func(doc map[string]any) { delete(wave(doc, "rest"), "gate") })
			// A digest of its own: the demo's bundle is in the store and
			// in the worker's cache already, checked.
			if err := os.WriteFile(filepath.Join(dir, "chart", "checkout-id"), []byte(app), 0o644); err != nil {
				t.Fatal(err)
			}
			spec, err := release.Load(file)
			if err != nil {
				t.Fatal(err)
			}
			b, bundled, err := bundle.ForSpec(spec)
			if err != nil {
				t.Fatal(err)
			}
			if c.name == "tampered" {
				// What a corrupted or replaced object looks like: other
				// bytes under the digest's key.
				bad := append(bytes.Clone(b.Bytes()), 0)
				if err := store.Put(context.Background(), b.Key(), bytes.NewReader(bad)); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, err := l.ctl.Start(ctx, bundled, "1.0.0", control.StartOptions{StartedBy: "bundle-test", Bundle: b.Digest})
			if err != nil {
				t.Fatal(err)
			}
			out := l.result(t, res.ReleaseID, 3*time.Minute)
			if out.Phase != workflows.PhaseFailed || !strings.Contains(out.Reason, b.Digest) || !strings.Contains(out.Reason, c.want) {
				t.Fatalf("want failed naming %s (%s), got %s", b.Digest, c.want, writeJSON(out))
			}
			t.Logf("%s: %s", res.ReleaseID, out.Reason)
			if c.name == "tampered" {
				l.record(t, res.ReleaseID, "release-bad-bundle")
			}
			if r := retries(l.history(t, res.ReleaseID), "PlanAll"); len(r) > 0 {
				t.Errorf("a bad bundle was retried: %+v", r)
			}
			for _, r := range []string{"us-east-1", "eu-west-1", "ap-southeast-1"} {
				if revs := l.helmRevisions(t, r, app); len(revs) != 0 {
					t.Errorf("%s: %d Helm revisions, want none", r, len(revs))
				}
				if _, err := os.Stat(filepath.Join(l.dir, "work", app, r, "terraform.tfstate")); err == nil {
					t.Errorf("%s: Terraform state exists: something was applied", r)
				}
			}
		})
	}
}
