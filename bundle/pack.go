package bundle

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/ignore"
)

// Sources are the files on the starting machine that a release reads.
type Sources struct {
	// Chart is a chart folder or a packaged chart (.tgz); required.
	Chart string
	// ValuesFiles are merged in order over the chart's values.
	ValuesFiles []string
	// Terraform is the stack's folder; optional.
	Terraform string
}

// DefaultMaxUnpacked bounds a bundle's content, at packing and unpacking.
const DefaultMaxUnpacked int64 = 1 << 30

// DefaultMaxFiles bounds a bundle's number of files.
const DefaultMaxFiles = 100_000

// epoch is every entry's modification time, so that touching a file does
// not change the digest.
var epoch = time.Unix(0, 0)

// Pack builds the bundle of src. The archive depends only on the paths,
// contents and executable bits of the files packed: packing the same
// sources twice, after touching them, or from another folder gives the same
// digest.
func Pack(src Sources) (*Bundle, error) {
	if src.Chart == "" {
		return nil, errors.New("pack bundle: no chart")
	}
	p := &packer{files: map[string]entry{}}
	if err := p.addChart(src.Chart); err != nil {
		return nil, fmt.Errorf("pack bundle: chart %s: %w", src.Chart, err)
	}
	var names []string
	for i, v := range src.ValuesFiles {
		name := valuesName(i, v)
		if err := p.addFile(v, name); err != nil {
			return nil, fmt.Errorf("pack bundle: values file %s: %w", v, err)
		}
		names = append(names, name)
	}
	if src.Terraform != "" {
		if err := p.addTree(src.Terraform, TerraformFolder, terraformIgnored); err != nil {
			return nil, fmt.Errorf("pack bundle: terraform %s: %w", src.Terraform, err)
		}
	}
	b, err := p.archive()
	if err != nil {
		return nil, fmt.Errorf("pack bundle: %w", err)
	}
	b.ValuesNames = names
	return b, nil
}

type entry struct {
	mode int64 // 0644 or 0755
	data []byte
}

type packer struct {
	files map[string]entry
	size  int64
}

func (p *packer) add(name string, mode fs.FileMode, data []byte) error {
	if _, dup := p.files[name]; dup {
		return fmt.Errorf("%s packed twice", name)
	}
	if len(p.files) >= DefaultMaxFiles {
		return fmt.Errorf("more than %d files", DefaultMaxFiles)
	}
	p.size += int64(len(data))
	if p.size > DefaultMaxUnpacked {
		return fmt.Errorf("more than %s of files", humanSize(DefaultMaxUnpacked))
	}
	p.files[name] = entry{mode: normalMode(mode), data: data}
	return nil
}

// normalMode keeps only whether a file is executable: owners, groups and
// umasks differ between machines, the meaning does not.
func normalMode(m fs.FileMode) int64 {
	if m&0o111 != 0 {
		return 0o755
	}
	return 0o644
}

// addFile packs one regular file (following symlinks: a values file is
// named on its own, not as part of a folder).
func (p *packer) addFile(src, name string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file (%s)", src, fi.Mode().Type())
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return p.add(name, fi.Mode(), data)
}

func (p *packer) addChart(src string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return p.addChartArchive(src)
	}
	// The same rules as Helm's own loader (pkg/chart/loader.LoadDir): the
	// chart's .helmignore plus the defaults, matched on slash paths
	// relative to the chart folder; subcharts under charts/ are part of
	// the walk.
	rules := ignore.Empty()
	if _, err := os.Stat(filepath.Join(src, ignore.HelmIgnore)); err == nil {
		rules, err = ignore.ParseFile(filepath.Join(src, ignore.HelmIgnore))
		if err != nil {
			return err
		}
	}
	rules.AddDefaults()
	return p.addTree(src, ChartFolder, rules.Ignore)
}

// addChartArchive unpacks a packaged chart into chart/, dropping the
// archive's top folder (the chart's name), so a chart packs the same way
// as a folder or as a .tgz.
func (p *packer) addChartArchive(src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("not a chart folder or .tgz: %w", err)
	}
	tr := tar.NewReader(gz)
	top := ""
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read chart archive: %w", err)
		}
		switch h.Typeflag {
		case tar.TypeDir, tar.TypeXGlobalHeader:
			continue
		case tar.TypeReg:
		default:
			return fmt.Errorf("chart archive entry %s is not a regular file", h.Name)
		}
		first, rest, ok := strings.Cut(strings.TrimPrefix(h.Name, "./"), "/")
		if !ok || first == "" || !validPath(rest) {
			return fmt.Errorf("chart archive entry %q is not inside the chart's folder", h.Name)
		}
		if top == "" {
			top = first
		} else if first != top {
			return fmt.Errorf("chart archive has two top folders, %s and %s", top, first)
		}
		if h.Size > DefaultMaxUnpacked-p.size {
			return fmt.Errorf("more than %s of files", humanSize(DefaultMaxUnpacked))
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return fmt.Errorf("read chart archive entry %s: %w", h.Name, err)
		}
		if err := p.add(ChartFolder+"/"+rest, fs.FileMode(h.Mode), data); err != nil {
			return err
		}
	}
	if top == "" {
		return errors.New("chart archive has no files")
	}
	return nil
}

// ignoreFunc reports whether a path (slash, relative to the tree's root)
// is left out. For a folder, its whole content is left out.
type ignoreFunc func(rel string, fi os.FileInfo) bool

// addTree packs the files under root as prefix/<path>. Symlinks are
// followed when they stay inside root (Helm does the same); a link that
// leaves root, a loop, or a special file is an error naming the path,
// because the bundle could not be rebuilt from the folder alone.
func (p *packer) addTree(root, prefix string, ignored ignoreFunc) error {
	abs, err := filepath.Abs(root)
	if err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return err
	}
	fi, err := os.Stat(real)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a folder", root)
	}
	w := walker{p: p, root: real, display: root, prefix: prefix, ignored: ignored}
	return w.dir(real, "", []string{real})
}

type walker struct {
	p       *packer
	root    string // resolved, absolute
	display string // as given, for messages
	prefix  string
	ignored ignoreFunc
}

// dir packs the folder at real (resolved) whose path in the tree is rel;
// stack holds the resolved folders from the root down, to find loops.
func (w *walker) dir(real, rel string, stack []string) error {
	entries, err := os.ReadDir(real)
	if err != nil {
		return err
	}
	// ReadDir sorts by name already; the archive is sorted again anyway.
	for _, e := range entries {
		name := path.Join(rel, e.Name())
		shown := filepath.Join(w.display, filepath.FromSlash(name))
		full := filepath.Join(real, e.Name())
		fi, err := os.Lstat(full)
		if err != nil {
			return err
		}
		// A link is judged after the ignore rules: a .terraform folder
		// linked to a shared plugin cache is left out, not refused.
		var linkErr error
		if fi.Mode()&fs.ModeSymlink != 0 {
			target, err := filepath.EvalSymlinks(full)
			switch {
			case err != nil:
				linkErr = fmt.Errorf("symlink %s: %w", shown, err)
			case !inside(w.root, target):
				linkErr = fmt.Errorf("symlink %s points outside %s (to %s)", shown, w.display, target)
			default:
				full = target
			}
			if st, err := os.Stat(full); err == nil {
				fi = st
			}
		}
		if w.ignored(name, fi) {
			continue
		}
		if linkErr != nil {
			return linkErr
		}
		switch {
		case fi.IsDir():
			for _, s := range stack {
				if s == full {
					return fmt.Errorf("symlink loop at %s", shown)
				}
			}
			if err := w.dir(full, name, append(stack[:len(stack):len(stack)], full)); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(full)
			if err != nil {
				return err
			}
			if err := w.p.add(w.prefix+"/"+name, fi.Mode(), data); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s is a special file (%s)", shown, fi.Mode().Type())
		}
	}
	return nil
}

// inside reports whether path is root or below it; both are resolved.
func inside(root, path string) bool {
	rel, err := filepath.Rel(root, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// terraformIgnored leaves out what Terraform writes into a stack's folder
// (providers and modules under .terraform/, local state and its backups,
// saved plans, crash logs), keeping .terraform.lock.hcl, which pins the
// providers and belongs to the stack.
func terraformIgnored(rel string, fi os.FileInfo) bool {
	base := path.Base(rel)
	if fi.IsDir() {
		return base == ".terraform" || base == "terraform.tfstate.d"
	}
	switch {
	case strings.HasSuffix(base, ".tfstate"),
		strings.HasSuffix(base, ".tfstate.backup"),
		strings.HasSuffix(base, ".tfplan"),
		base == ".terraform.tfstate.lock.info",
		base == "crash.log",
		strings.HasPrefix(base, "crash.") && strings.HasSuffix(base, ".log"):
		return true
	}
	return false
}

// archive writes the sorted entries as tar + gzip with every header field
// that could differ between machines fixed.
func (p *packer) archive() (*Bundle, error) {
	names := make([]string, 0, len(p.files))
	for n := range p.files {
		names = append(names, n)
	}
	sort.Strings(names)

	var buf bytes.Buffer
	gz, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(gz)
	files := make([]File, 0, len(names))
	for _, n := range names {
		e := p.files[n]
		h := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     n,
			Mode:     e.mode,
			Size:     int64(len(e.data)),
			ModTime:  epoch,
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("write %s: %w", n, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("write %s: %w", n, err)
		}
		sum := sha256.Sum256(e.data)
		files = append(files, File{Path: n, Size: int64(len(e.data)), SHA256: hex.EncodeToString(sum[:])})
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	sum := sha256.Sum256(data)
	return &Bundle{
		Digest: digestPrefix + hex.EncodeToString(sum[:]),
		Size:   int64(len(data)),
		Files:  files,
		data:   data,
	}, nil
}

// validPath reports whether name is a clean relative slash path of a file:
// no empty, "." or ".." elements, no leading slash, no backslash.
func validPath(name string) bool {
	return name != "" && name != "." && fs.ValidPath(name) && !strings.Contains(name, `\`)
}
