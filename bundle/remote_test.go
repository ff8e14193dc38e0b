package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/repo"

	"github.com/keelson-dev/keelson/release"
)

// TestChartFromRepository serves the demo's chart from a Helm repository
// (a folder with index.yaml over HTTP, what `helm repo index` makes) and
// names it in a spec by repository, name and version: the bundle holds it
// under chart/, and the spec records the archive's digest.
func TestChartFromRepository(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HELM_REPOSITORY_CONFIG", filepath.Join(home, "repositories.yaml"))
	t.Setenv("HELM_REPOSITORY_CACHE", filepath.Join(home, "cache"))
	t.Setenv("HELM_REGISTRY_CONFIG", filepath.Join(home, "registry.json"))

	served := t.TempDir()
	ch, err := loader.Load("../infra/demo/chart")
	if err != nil {
		t.Fatal(err)
	}
	archive, err := chartutil.Save(ch, served)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(served)))
	defer srv.Close()
	idx, err := repo.IndexDirectory(served, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if err := idx.WriteFile(filepath.Join(served, "index.yaml"), 0o644); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	want := "sha256:" + hex.EncodeToString(sum[:])

	spec := &release.Spec{Application: "web", Chart: release.Chart{Repository: srv.URL, Name: ch.Name(), Version: ch.Metadata.Version}}
	b, out, err := ForSpec(spec)
	if err != nil {
		t.Fatalf("ForSpec: %v", err)
	}
	if out.Chart.Path != ChartFolder || out.Chart.Digest != want || out.Chart.Repository != srv.URL {
		t.Errorf("bundled chart %+v, want path %q and digest %s", out.Chart, ChartFolder, want)
	}
	if spec.Chart.Path != "" || spec.Chart.Digest != "" {
		t.Errorf("the caller's spec changed: %+v", spec.Chart)
	}
	names := map[string]bool{}
	for _, f := range b.Files {
		names[f.Path] = true
	}
	for _, p := range []string{"chart/Chart.yaml", "chart/values.yaml"} {
		if !names[p] {
			t.Errorf("bundle has no %s: %v", p, b.Files)
		}
	}

	// A version the repository does not have is an error naming it.
	spec.Chart.Version = "99.0.0"
	if _, _, err := ForSpec(spec); err == nil || !strings.Contains(err.Error(), "99.0.0") {
		t.Errorf("missing version: %v", err)
	}
}
