package bundle

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/keelson-dev/keelson/release"
)

// ForSpec packs what a loaded release file names on disk (its chart, its
// Terraform stack: absolute paths after release.Load) into a bundle, and
// returns a copy of spec whose paths name the same things inside the
// bundle (chart, terraform). The workflow carries the copy and the
// bundle's digest; nothing of the starting machine's disk.
func ForSpec(spec *release.Spec) (*Bundle, *release.Spec, error) {
	if spec == nil {
		return nil, nil, errors.New("bundle: no release spec")
	}
	src := Sources{Chart: spec.Chart.Path}
	chartDigest := ""
	if spec.Chart.Repository != "" {
		tmp, err := os.MkdirTemp("", "keelson-chart-")
		if err != nil {
			return nil, nil, err
		}
		defer os.RemoveAll(tmp)
		if src.Chart, chartDigest, err = fetchChart(spec.Chart, tmp); err != nil {
			return nil, nil, err
		}
	}
	if spec.Terraform != nil {
		src.Terraform = spec.Terraform.Path
	}
	b, err := Pack(src)
	if err != nil {
		return nil, nil, fmt.Errorf("pack the release's bundle: %w", err)
	}
	out := *spec
	out.Chart.Path = ChartFolder
	// Where the chart came from stays in the release's input, with the
	// archive's digest: what was fetched is on record.
	out.Chart.Digest = chartDigest
	if spec.Terraform != nil {
		tf := *spec.Terraform
		tf.Path = TerraformFolder
		out.Terraform = &tf
	}
	return b, &out, nil
}

// Resolve turns a path of a bundled spec (chart, terraform) into a folder
// of the bundle with digest, fetched and checked through the cache. A path
// that leaves the bundle is refused (ErrBadArchive): paths come from
// workflow input.
func (c *Cache) Resolve(ctx context.Context, digest, rel string) (string, error) {
	if rel == "" || filepath.IsAbs(rel) || strings.Contains(rel, "\\") {
		return "", fmt.Errorf("%w: path %q in bundle %s", ErrBadArchive, rel, digest)
	}
	clean := filepath.Clean(filepath.FromSlash(rel))
	if clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("%w: path %q leaves bundle %s", ErrBadArchive, rel, digest)
	}
	root, err := c.Open(ctx, digest)
	if err != nil {
		return "", err
	}
	return filepath.Join(root, clean), nil
}

// Invalid reports whether err means the bundle itself is bad (a malformed
// digest, missing from the store, not matching its digest, a bad archive):
// retrying cannot help, and nothing was changed.
func Invalid(err error) bool {
	return errors.Is(err, ErrBadDigest) || errors.Is(err, ErrMissing) ||
		errors.Is(err, ErrDigestMismatch) || errors.Is(err, ErrBadArchive)
}
