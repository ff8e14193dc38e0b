// Package bundle makes a release hermetic. The CLI packs everything a
// release reads from disk (the Helm chart, the values files, the Terraform
// stack) into one deterministic, content-addressed archive and uploads it to
// the artifact store; the workflow carries only the archive's digest, and
// each worker fetches, verifies and unpacks it once into a local cache.
//
// Archive layout (tar + gzip, regular files only, sorted by path):
//
//	chart/...          the chart: Chart.yaml, templates/, charts/ (subcharts), ...
//	values/0-<name>    the values files, in the order given
//	values/1-<name>
//	terraform/...      the Terraform stack, without state, plans and .terraform/
package bundle

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Top-level folders of a bundle.
const (
	ChartFolder     = "chart"
	ValuesFolder    = "values"
	TerraformFolder = "terraform"
)

// KeyPrefix is where bundles live in the artifact store.
const KeyPrefix = "bundles/sha256/"

const digestPrefix = "sha256:"

var (
	// ErrBadDigest is returned (wrapped) for a digest that is not
	// "sha256:" followed by 64 lowercase hex digits.
	ErrBadDigest = errors.New("bad bundle digest")
	// ErrMissing is returned (wrapped) when the artifact store has no
	// bundle under the digest's key.
	ErrMissing = errors.New("bundle not in the artifact store")
	// ErrDigestMismatch is returned (wrapped) when the bytes stored under a
	// digest's key hash to something else.
	ErrDigestMismatch = errors.New("bundle digest mismatch")
	// ErrBadArchive is returned (wrapped) for an archive that is not a
	// bundle: entries outside chart/, values/ and terraform/, absolute or
	// ".." paths, links, special files, or more than the cache's limits.
	ErrBadArchive = errors.New("bad bundle archive")
)

// None of the errors above can be fixed by retrying: the digest came from
// the workflow input and the bytes under a content address never change.

// File is one entry of a bundle.
type File struct {
	Path   string `json:"path"`   // slash path inside the bundle, e.g. "chart/Chart.yaml"
	Size   int64  `json:"size"`   // bytes
	SHA256 string `json:"sha256"` // lowercase hex of the content
}

// Bundle is a packed archive, held in memory: charts, values and stacks are
// small, and the CLI uploads it once.
type Bundle struct {
	// Digest is "sha256:<hex>" of the archive bytes.
	Digest string
	// Size is the archive's size in bytes.
	Size int64
	// Files lists the archive's entries sorted by path.
	Files []File
	// ValuesNames are the bundle paths of the values files, in the order
	// they were given ("values/0-values.yaml", ...).
	ValuesNames []string

	data []byte
}

// Bytes returns the archive. The caller must not modify it.
func (b *Bundle) Bytes() []byte { return b.data }

// Reader returns a reader over the archive.
func (b *Bundle) Reader() io.Reader { return bytes.NewReader(b.data) }

// Key returns the artifact store key of the bundle.
func (b *Bundle) Key() string {
	return KeyPrefix + strings.TrimPrefix(b.Digest, digestPrefix) + ".tar.gz"
}

// ParseDigest checks a "sha256:<hex>" digest and returns its hex part. Only
// the canonical form is accepted (lowercase, 64 digits), so that one bundle
// has exactly one key and one cache folder.
func ParseDigest(s string) (string, error) {
	hex, ok := strings.CutPrefix(s, digestPrefix)
	if !ok || len(hex) != 64 || strings.Trim(hex, "0123456789abcdef") != "" {
		return "", fmt.Errorf("%w %q: want sha256: and 64 lowercase hex digits", ErrBadDigest, s)
	}
	return hex, nil
}

// KeyOf returns the artifact store key of the bundle with the digest.
func KeyOf(digest string) (string, error) {
	hex, err := ParseDigest(digest)
	if err != nil {
		return "", err
	}
	return KeyPrefix + hex + ".tar.gz", nil
}

// Layout names the parts of a bundle unpacked at Root.
type Layout struct {
	Root string
}

// ChartDir is the chart's folder.
func (l Layout) ChartDir() string { return filepath.Join(l.Root, ChartFolder) }

// TerraformDir is the Terraform stack's folder. It is read-only; Terraform
// writes into its working folder, so run it in a copy (CopyTree).
func (l Layout) TerraformDir() string { return filepath.Join(l.Root, TerraformFolder) }

// Path turns a bundle path ("values/0-values.yaml", from
// Bundle.ValuesNames) into a path on disk.
func (l Layout) Path(rel string) string {
	return filepath.Join(l.Root, filepath.FromSlash(rel))
}

// ValuesFile returns the i-th values file (values/<i>-<name>), or "" when
// the bundle has fewer values files.
func (l Layout) ValuesFile(i int) string {
	files, err := l.ValuesFiles()
	if err != nil || i < 0 || i >= len(files) {
		return ""
	}
	return files[i]
}

// ValuesFiles returns the values files in the order they were packed.
func (l Layout) ValuesFiles() ([]string, error) {
	dir := filepath.Join(l.Root, ValuesFolder)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list values files: %w", err)
	}
	type indexed struct {
		i    int
		path string
	}
	var found []indexed
	for _, e := range entries {
		n, _, ok := strings.Cut(e.Name(), "-")
		i, err := strconv.Atoi(n)
		if !ok || err != nil || e.IsDir() {
			continue
		}
		found = append(found, indexed{i, filepath.Join(dir, e.Name())})
	}
	sort.Slice(found, func(a, b int) bool { return found[a].i < found[b].i })
	paths := make([]string, len(found))
	for k, f := range found {
		paths[k] = f.path
	}
	return paths, nil
}

// valuesName is the bundle path of the i-th values file.
func valuesName(i int, src string) string {
	return fmt.Sprintf("%s/%d-%s", ValuesFolder, i, filepath.Base(src))
}

// Describe lists a bundle for people: digest, sizes, then every file with
// its size, grouped by chart, values and terraform.
func Describe(b *Bundle) string {
	var sb strings.Builder
	var total int64
	for _, f := range b.Files {
		total += f.Size
	}
	fmt.Fprintf(&sb, "bundle %s\n", b.Digest)
	fmt.Fprintf(&sb, "  key     %s\n", b.Key())
	fmt.Fprintf(&sb, "  archive %s\n", humanSize(b.Size))
	fmt.Fprintf(&sb, "  content %s in %s\n", humanSize(total), plural(len(b.Files), "file"))

	width := 0
	for _, f := range b.Files {
		width = max(width, len(f.Path))
	}
	for _, group := range []string{ChartFolder, ValuesFolder, TerraformFolder} {
		var files []File
		var size int64
		for _, f := range b.Files {
			if strings.HasPrefix(f.Path, group+"/") {
				files = append(files, f)
				size += f.Size
			}
		}
		if len(files) == 0 {
			fmt.Fprintf(&sb, "%s/: none\n", group)
			continue
		}
		fmt.Fprintf(&sb, "%s/: %s, %s\n", group, plural(len(files), "file"), humanSize(size))
		for _, f := range files {
			fmt.Fprintf(&sb, "  %-*s  %10s\n", width, f.Path, humanSize(f.Size))
		}
	}
	return sb.String()
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 3; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGT"[exp])
}
