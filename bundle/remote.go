package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"

	"helm.sh/helm/v3/pkg/cli"
	"helm.sh/helm/v3/pkg/downloader"
	"helm.sh/helm/v3/pkg/getter"
	"helm.sh/helm/v3/pkg/registry"
	"helm.sh/helm/v3/pkg/repo"

	"github.com/keelson-dev/keelson/release"
)

// fetchChart downloads the chart a release file names by repository, name
// and version into dir, the way `helm pull` does (Helm's repository and
// registry configuration of the person starting: HELM_* variables, helm
// repo add, helm registry login), and returns the archive's path and its
// digest. It runs once, at start: the bundle then holds the chart, and no
// worker ever reaches the repository.
func fetchChart(c release.Chart, dir string) (path, digest string, err error) {
	settings := cli.New()
	d := downloader.ChartDownloader{
		Out:              io.Discard,
		Verify:           downloader.VerifyNever,
		Getters:          getter.All(settings),
		RepositoryConfig: settings.RepositoryConfig,
		RepositoryCache:  settings.RepositoryCache,
	}
	ref := c.Name
	if registry.IsOCI(c.Repository) {
		rc, err := registry.NewClient(registry.ClientOptCredentialsFile(settings.RegistryConfig))
		if err != nil {
			return "", "", fmt.Errorf("chart %s: registry client: %w", c.Name, err)
		}
		d.RegistryClient = rc
		d.Options = append(d.Options, getter.WithRegistryClient(rc))
		ref = strings.TrimSuffix(c.Repository, "/") + "/" + c.Name
	} else {
		u, err := repo.FindChartInRepoURL(c.Repository, c.Name, c.Version, "", "", "", getter.All(settings))
		if err != nil {
			return "", "", fmt.Errorf("chart %s %s in %s: %w", c.Name, c.Version, c.Repository, err)
		}
		ref = u
	}
	saved, _, err := d.DownloadTo(ref, c.Version, dir)
	if err != nil {
		return "", "", fmt.Errorf("fetch chart %s %s from %s: %w", c.Name, c.Version, c.Repository, err)
	}
	f, err := os.Open(saved)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", "", fmt.Errorf("read chart %s: %w", saved, err)
	}
	return saved, digestPrefix + hex.EncodeToString(h.Sum(nil)), nil
}
