package bundle

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keelson-dev/keelson/activities/artifacts"
)

// The repository's demo application.
var (
	demoChart     = filepath.Join("..", "infra", "demo", "chart")
	demoTerraform = filepath.Join("..", "infra", "demo", "terraform")
)

// memStore is an artifact store in memory that counts Gets.
type memStore struct {
	mu    sync.Mutex
	blobs map[string][]byte
	gets  atomic.Int64
	delay time.Duration
}

func newMemStore() *memStore { return &memStore{blobs: map[string][]byte{}} }

func (m *memStore) Put(_ context.Context, key string, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.blobs[key] = b
	return nil
}

func (m *memStore) Get(_ context.Context, key string) (io.ReadCloser, error) {
	m.gets.Add(1)
	time.Sleep(m.delay)
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.blobs[key]
	if !ok {
		return nil, fmt.Errorf("get artifact %s: %w", key, artifacts.ErrNotFound)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// writeTree creates files (slash paths → contents) under root.
func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	}
}

func paths(b *Bundle) []string {
	var ps []string
	for _, f := range b.Files {
		ps = append(ps, f.Path)
	}
	return ps
}

func demoSources(t *testing.T) Sources {
	t.Helper()
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"base.yaml":      "replicas: 2\n",
		"prod/base.yaml": "replicas: 3\n",
	})
	return Sources{
		Chart:       demoChart,
		ValuesFiles: []string{filepath.Join(dir, "base.yaml"), filepath.Join(dir, "prod", "base.yaml")},
		Terraform:   demoTerraform,
	}
}

func packDemo(t *testing.T) *Bundle {
	t.Helper()
	b, err := Pack(demoSources(t))
	require.NoError(t, err)
	return b
}

func TestPackDemoLayout(t *testing.T) {
	b := packDemo(t)
	ps := paths(b)
	require.IsIncreasing(t, ps)
	for _, want := range []string{
		"chart/.helmignore", "chart/Chart.yaml", "chart/values.yaml",
		"chart/templates/deployment.yaml", "chart/templates/_helpers.tpl",
		"values/0-base.yaml", "values/1-base.yaml",
		"terraform/main.tf",
	} {
		require.Contains(t, ps, want)
	}
	require.Equal(t, []string{"values/0-base.yaml", "values/1-base.yaml"}, b.ValuesNames)
	require.Regexp(t, `^sha256:[0-9a-f]{64}$`, b.Digest)
	require.Equal(t, int64(len(b.Bytes())), b.Size)
	sum := sha256.Sum256(b.Bytes())
	require.Equal(t, "sha256:"+hex.EncodeToString(sum[:]), b.Digest)
	require.Equal(t, "bundles/sha256/"+hex.EncodeToString(sum[:])+".tar.gz", b.Key())
	key, err := KeyOf(b.Digest)
	require.NoError(t, err)
	require.Equal(t, b.Key(), key)

	for _, f := range b.Files {
		if f.Path == "chart/Chart.yaml" {
			data, err := os.ReadFile(filepath.Join(demoChart, "Chart.yaml"))
			require.NoError(t, err)
			s := sha256.Sum256(data)
			require.Equal(t, hex.EncodeToString(s[:]), f.SHA256)
			require.Equal(t, int64(len(data)), f.Size)
		}
	}

	// The archive has fixed headers and no folders.
	gz, err := gzip.NewReader(b.Reader())
	require.NoError(t, err)
	require.Equal(t, "", gz.Name)
	tr := tar.NewReader(gz)
	n := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		require.Equal(t, byte(tar.TypeReg), h.Typeflag)
		require.Contains(t, []int64{0o644, 0o755}, h.Mode)
		require.Equal(t, int64(0), h.ModTime.Unix())
		require.Zero(t, h.Uid)
		require.Zero(t, h.Gid)
		require.Empty(t, h.Uname)
		require.Empty(t, h.Gname)
		require.Equal(t, ps[n], h.Name)
		n++
	}
	require.Equal(t, len(ps), n)
}

func TestPackDeterministic(t *testing.T) {
	src := demoSources(t)
	first := packDemoFrom(t, src)
	again := packDemoFrom(t, src)
	require.Equal(t, first.Digest, again.Digest)
	require.Equal(t, first.Bytes(), again.Bytes())

	// Elsewhere on disk, touched, with other permission bits that mean
	// the same: the same bundle.
	moved := t.TempDir()
	chart := filepath.Join(moved, "deep", "chart")
	stack := filepath.Join(moved, "other", "stack")
	require.NoError(t, CopyTree(demoChart, chart))
	require.NoError(t, CopyTree(demoTerraform, stack))
	values := make([]string, len(src.ValuesFiles))
	for i, v := range src.ValuesFiles {
		values[i] = filepath.Join(moved, fmt.Sprintf("v%d", i), filepath.Base(v))
		require.NoError(t, os.MkdirAll(filepath.Dir(values[i]), 0o755))
		require.NoError(t, copyFile(v, values[i], 0o600))
	}
	later := time.Now().Add(48 * time.Hour)
	require.NoError(t, filepath.WalkDir(moved, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		return os.Chtimes(p, later, later)
	}))
	require.NoError(t, os.Chmod(filepath.Join(chart, "Chart.yaml"), 0o600))
	other, err := Pack(Sources{Chart: chart, ValuesFiles: values, Terraform: stack})
	require.NoError(t, err)
	require.Equal(t, first.Digest, other.Digest)

	// Content and executable bits do count.
	require.NoError(t, os.Chmod(filepath.Join(stack, "main.tf"), 0o755))
	execBit, err := Pack(Sources{Chart: chart, ValuesFiles: values, Terraform: stack})
	require.NoError(t, err)
	require.NotEqual(t, first.Digest, execBit.Digest)
	require.NoError(t, os.WriteFile(filepath.Join(chart, "values.yaml"), []byte("changed: true\n"), 0o644))
	changed, err := Pack(Sources{Chart: chart, ValuesFiles: values, Terraform: stack})
	require.NoError(t, err)
	require.NotEqual(t, execBit.Digest, changed.Digest)

	// The values files' order counts.
	swapped, err := Pack(Sources{Chart: demoChart, ValuesFiles: []string{src.ValuesFiles[1], src.ValuesFiles[0]}, Terraform: demoTerraform})
	require.NoError(t, err)
	require.NotEqual(t, first.Digest, swapped.Digest)
}

func packDemoFrom(t *testing.T, src Sources) *Bundle {
	t.Helper()
	b, err := Pack(src)
	require.NoError(t, err)
	return b
}

func TestPackHelmignoreAndSubcharts(t *testing.T) {
	chart := t.TempDir()
	writeTree(t, chart, map[string]string{
		".helmignore":                  "# comment\n*.bak\nsecrets/\nREADME.md\n",
		"Chart.yaml":                   "apiVersion: v2\nname: app\nversion: 0.1.0\n",
		"values.yaml":                  "a: 1\n",
		"values.yaml.bak":              "old\n",
		"README.md":                    "docs\n",
		"secrets/key.pem":              "secret\n",
		"templates/cm.yaml":            "kind: ConfigMap\n",
		"templates/.hidden.yaml":       "ignored by Helm's defaults\n",
		"files/config.json":            "{}\n",
		"charts/sub/Chart.yaml":        "apiVersion: v2\nname: sub\nversion: 0.1.0\n",
		"charts/sub/values.yaml":       "b: 2\n",
		"charts/sub/templates/x.yaml":  "kind: Secret\n",
		"charts/sub/templates/old.bak": "ignored\n",
		"charts/dep-1.0.0.tgz":         "packed subchart bytes\n",
	})
	b, err := Pack(Sources{Chart: chart})
	require.NoError(t, err)
	require.Equal(t, []string{
		"chart/.helmignore",
		"chart/Chart.yaml",
		"chart/charts/dep-1.0.0.tgz",
		"chart/charts/sub/Chart.yaml",
		"chart/charts/sub/templates/x.yaml",
		"chart/charts/sub/values.yaml",
		"chart/files/config.json",
		"chart/templates/cm.yaml",
		"chart/values.yaml",
	}, paths(b))
	require.Empty(t, b.ValuesNames)
}

// A packaged chart unpacks into the same layout, and so the same bundle,
// as its folder.
func TestPackChartArchive(t *testing.T) {
	dir, err := Pack(Sources{Chart: demoChart})
	require.NoError(t, err)

	tgz := filepath.Join(t.TempDir(), "demo-0.1.0.tgz")
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	require.NoError(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "demo/", Mode: 0o755}))
	for _, f := range dir.Files {
		data, err := os.ReadFile(filepath.Join(demoChart, filepath.FromSlash(strings.TrimPrefix(f.Path, "chart/"))))
		require.NoError(t, err)
		require.NoError(t, tw.WriteHeader(&tar.Header{
			Typeflag: tar.TypeReg, Name: "demo/" + strings.TrimPrefix(f.Path, "chart/"),
			Mode: 0o664, Size: int64(len(data)), ModTime: time.Now(), Uname: "someone",
		}))
		_, err = tw.Write(data)
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	require.NoError(t, gz.Close())
	require.NoError(t, os.WriteFile(tgz, buf.Bytes(), 0o644))

	archive, err := Pack(Sources{Chart: tgz})
	require.NoError(t, err)
	require.Equal(t, paths(dir), paths(archive))
	require.Equal(t, dir.Digest, archive.Digest)

	// An archive whose entries escape the chart's folder is refused.
	buf.Reset()
	gz = gzip.NewWriter(&buf)
	tw = tar.NewWriter(gz)
	require.NoError(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "demo/../evil", Size: 1}))
	_, err = tw.Write([]byte("x"))
	require.NoError(t, err)
	require.NoError(t, tw.Close())
	require.NoError(t, gz.Close())
	require.NoError(t, os.WriteFile(tgz, buf.Bytes(), 0o644))
	_, err = Pack(Sources{Chart: tgz})
	require.ErrorContains(t, err, "demo/../evil")
}

func TestPackTerraformExclusions(t *testing.T) {
	stack := t.TempDir()
	writeTree(t, stack, map[string]string{
		"main.tf":                                  "terraform {}\n",
		"variables.tf":                             "variable \"x\" {}\n",
		".terraform.lock.hcl":                      "# pins\n",
		"modules/net/main.tf":                      "# module\n",
		"prod.tfvars":                              "x = 1\n",
		".terraform/providers/p/bin":               "binary",
		".terraform/environment":                   "default",
		"modules/net/.terraform/x":                 "nested",
		"terraform.tfstate":                        "{}",
		"terraform.tfstate.backup":                 "{}",
		"other.tfstate":                            "{}",
		".terraform.tfstate.lock.info":             "{}",
		"terraform.tfstate.d/ws/terraform.tfstate": "{}",
		"release.tfplan":                           "plan",
		"crash.log":                                "panic",
		"crash.1700000000.log":                     "panic",
	})
	b, err := Pack(Sources{Chart: demoChart, Terraform: stack})
	require.NoError(t, err)
	var tf []string
	for _, p := range paths(b) {
		if strings.HasPrefix(p, "terraform/") {
			tf = append(tf, p)
		}
	}
	require.Equal(t, []string{
		"terraform/.terraform.lock.hcl",
		"terraform/main.tf",
		"terraform/modules/net/main.tf",
		"terraform/prod.tfvars",
		"terraform/variables.tf",
	}, tf)
}

func TestPackSymlinks(t *testing.T) {
	root := t.TempDir()
	chart := filepath.Join(root, "chart")
	writeTree(t, chart, map[string]string{
		"Chart.yaml":        "apiVersion: v2\nname: app\nversion: 0.1.0\n",
		"shared/common.tpl": "{{/* shared */}}\n",
	})
	writeTree(t, root, map[string]string{"outside.yaml": "secret: true\n"})

	// Links that stay inside the chart are followed.
	require.NoError(t, os.Symlink("shared/common.tpl", filepath.Join(chart, "templates-link.tpl")))
	require.NoError(t, os.Symlink("shared", filepath.Join(chart, "linked")))
	b, err := Pack(Sources{Chart: chart})
	require.NoError(t, err)
	require.Contains(t, paths(b), "chart/templates-link.tpl")
	require.Contains(t, paths(b), "chart/linked/common.tpl")

	// A link out of the chart is refused, naming it.
	out := filepath.Join(chart, "templates", "leak.yaml")
	require.NoError(t, os.MkdirAll(filepath.Dir(out), 0o755))
	require.NoError(t, os.Symlink(filepath.Join(root, "outside.yaml"), out))
	_, err = Pack(Sources{Chart: chart})
	require.ErrorContains(t, err, "leak.yaml")
	require.ErrorContains(t, err, "points outside")
	require.NoError(t, os.Remove(out))

	// So is a loop.
	require.NoError(t, os.Symlink("..", filepath.Join(chart, "shared", "up")))
	_, err = Pack(Sources{Chart: chart})
	require.ErrorContains(t, err, "loop")
	require.NoError(t, os.Remove(filepath.Join(chart, "shared", "up")))

	// And in the Terraform stack.
	stack := filepath.Join(root, "stack")
	writeTree(t, stack, map[string]string{"main.tf": "terraform {}\n"})
	require.NoError(t, os.Symlink(filepath.Join(root, "outside.yaml"), filepath.Join(stack, "secrets.auto.tfvars")))
	_, err = Pack(Sources{Chart: chart, Terraform: stack})
	require.ErrorContains(t, err, "secrets.auto.tfvars")

	// Links that the ignore rules leave out are not judged.
	require.NoError(t, os.Symlink(t.TempDir(), filepath.Join(stack, ".terraform")))
	require.NoError(t, os.Remove(filepath.Join(stack, "secrets.auto.tfvars")))
	require.NoError(t, os.Symlink(filepath.Join(root, "outside.yaml"), filepath.Join(stack, "terraform.tfstate")))
	writeTree(t, chart, map[string]string{".helmignore": "private/\n"})
	require.NoError(t, os.Symlink(root, filepath.Join(chart, "private")))
	b, err = Pack(Sources{Chart: chart, Terraform: stack})
	require.NoError(t, err)
	require.Contains(t, paths(b), "terraform/main.tf")
	require.NotContains(t, paths(b), "terraform/terraform.tfstate")

	// A dangling link names itself too.
	require.NoError(t, os.Symlink("missing", filepath.Join(chart, "dangling")))
	_, err = Pack(Sources{Chart: chart})
	require.ErrorContains(t, err, "dangling")
}

func TestPackErrors(t *testing.T) {
	_, err := Pack(Sources{})
	require.ErrorContains(t, err, "no chart")
	_, err = Pack(Sources{Chart: filepath.Join(t.TempDir(), "nope")})
	require.ErrorContains(t, err, "nope")
	_, err = Pack(Sources{Chart: demoChart, ValuesFiles: []string{t.TempDir()}})
	require.ErrorContains(t, err, "not a regular file")
	notTgz := filepath.Join(t.TempDir(), "chart.tgz")
	require.NoError(t, os.WriteFile(notTgz, []byte("plain text"), 0o644))
	_, err = Pack(Sources{Chart: notTgz})
	require.ErrorContains(t, err, "not a chart folder or .tgz")
}

func newCache(t *testing.T, store artifacts.Store) *Cache {
	t.Helper()
	return &Cache{Dir: filepath.Join(t.TempDir(), "cache"), Store: store}
}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	src := demoSources(t)
	b, err := Pack(src)
	require.NoError(t, err)
	store := newMemStore()
	require.NoError(t, Upload(ctx, store, b))
	require.NoError(t, Upload(ctx, store, b)) // idempotent

	c := newCache(t, store)
	dir, err := c.Open(ctx, b.Digest)
	require.NoError(t, err)
	hexDigest, _ := ParseDigest(b.Digest)
	require.Equal(t, filepath.Join(c.Dir, hexDigest), dir)
	st, err := os.Stat(dir)
	require.NoError(t, err)
	require.Equal(t, fs.FileMode(0o755), st.Mode().Perm())

	// Every file of the manifest, with the source's bytes.
	l := Layout{Root: dir}
	for _, f := range b.Files {
		got, err := os.ReadFile(l.Path(f.Path))
		require.NoError(t, err, f.Path)
		sum := sha256.Sum256(got)
		require.Equal(t, f.SHA256, hex.EncodeToString(sum[:]), f.Path)
	}
	var unpacked []string
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		if !d.IsDir() && d.Name() != completeMarker {
			rel, _ := filepath.Rel(dir, p)
			unpacked = append(unpacked, filepath.ToSlash(rel))
			fi, err := d.Info()
			require.NoError(t, err)
			require.Zero(t, fi.Mode().Perm()&0o222, "%s is writable", rel)
		}
		return nil
	}))
	require.ElementsMatch(t, paths(b), unpacked)

	for name, want := range map[string]string{
		filepath.Join(l.ChartDir(), "Chart.yaml"):  filepath.Join(demoChart, "Chart.yaml"),
		filepath.Join(l.TerraformDir(), "main.tf"): filepath.Join(demoTerraform, "main.tf"),
		l.ValuesFile(0):          src.ValuesFiles[0],
		l.ValuesFile(1):          src.ValuesFiles[1],
		l.Path(b.ValuesNames[1]): src.ValuesFiles[1],
	} {
		got, err := os.ReadFile(name)
		require.NoError(t, err)
		exp, err := os.ReadFile(want)
		require.NoError(t, err)
		require.Equal(t, string(exp), string(got), name)
	}
	require.Equal(t, "", l.ValuesFile(2))
	vf, err := l.ValuesFiles()
	require.NoError(t, err)
	require.Equal(t, []string{l.Path(b.ValuesNames[0]), l.Path(b.ValuesNames[1])}, vf)

	// Terraform works in a writable copy.
	work := filepath.Join(t.TempDir(), "work")
	require.NoError(t, CopyTree(l.TerraformDir(), work))
	require.NoError(t, os.WriteFile(filepath.Join(work, "main.tf"), []byte("# edited\n"), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(work, ".terraform"), 0o755))
	orig, err := os.ReadFile(filepath.Join(l.TerraformDir(), "main.tf"))
	require.NoError(t, err)
	require.NotEqual(t, "# edited\n", string(orig))
	require.Error(t, CopyTree(dir, filepath.Join(dir, "chart", "inside")))
}

func TestCacheHit(t *testing.T) {
	ctx := context.Background()
	b := packDemo(t)
	store := newMemStore()
	require.NoError(t, Upload(ctx, store, b))
	c := newCache(t, store)
	first, err := c.Open(ctx, b.Digest)
	require.NoError(t, err)
	second, err := c.Open(ctx, b.Digest)
	require.NoError(t, err)
	require.Equal(t, first, second)
	require.Equal(t, int64(1), store.gets.Load())

	// Another process sharing the folder finds it too.
	other := &Cache{Dir: c.Dir, Store: store}
	third, err := other.Open(ctx, b.Digest)
	require.NoError(t, err)
	require.Equal(t, first, third)
	require.Equal(t, int64(1), store.gets.Load())
}

// A folder in place of the bundle without the marker is debris, replaced.
func TestCacheReplacesIncomplete(t *testing.T) {
	ctx := context.Background()
	b := packDemo(t)
	store := newMemStore()
	require.NoError(t, Upload(ctx, store, b))
	c := newCache(t, store)
	hexDigest, _ := ParseDigest(b.Digest)
	writeTree(t, filepath.Join(c.Dir, hexDigest), map[string]string{"chart/half.yaml": "x"})
	dir, err := c.Open(ctx, b.Digest)
	require.NoError(t, err)
	require.NoFileExists(t, filepath.Join(dir, "chart", "half.yaml"))
	require.FileExists(t, filepath.Join(dir, "chart", "Chart.yaml"))
	entries, err := os.ReadDir(c.Dir)
	require.NoError(t, err)
	require.Len(t, entries, 1)
}

func TestCacheDigestMismatch(t *testing.T) {
	ctx := context.Background()
	b := packDemo(t)
	store := newMemStore()
	tampered := bytes.Clone(b.Bytes())
	tampered[len(tampered)/2] ^= 0xff
	require.NoError(t, store.Put(ctx, b.Key(), bytes.NewReader(tampered)))
	c := newCache(t, store)
	_, err := c.Open(ctx, b.Digest)
	require.ErrorIs(t, err, ErrDigestMismatch)
	sum := sha256.Sum256(tampered)
	require.ErrorContains(t, err, b.Digest)
	require.ErrorContains(t, err, "sha256:"+hex.EncodeToString(sum[:]))
	entries, err := os.ReadDir(c.Dir)
	require.NoError(t, err)
	require.Empty(t, entries, "nothing left in the cache")
}

func TestCacheMissing(t *testing.T) {
	b := packDemo(t)
	c := newCache(t, newMemStore())
	_, err := c.Open(context.Background(), b.Digest)
	require.ErrorIs(t, err, ErrMissing)
	require.ErrorIs(t, err, artifacts.ErrNotFound)
	require.ErrorContains(t, err, b.Digest)
	require.False(t, errors.Is(err, ErrDigestMismatch))
}

func TestBadDigest(t *testing.T) {
	good := "sha256:" + strings.Repeat("ab", 32)
	_, err := ParseDigest(good)
	require.NoError(t, err)
	store := newMemStore()
	c := newCache(t, store)
	for _, d := range []string{
		"",
		"sha256:",
		"sha256:abc",
		strings.Repeat("ab", 32),
		"md5:" + strings.Repeat("ab", 32),
		"SHA256:" + strings.Repeat("ab", 32),
		"sha256:" + strings.Repeat("AB", 32),
		"sha256:" + strings.Repeat("ab", 32) + "00",
		"sha256:" + strings.Repeat("ab", 31) + "zz",
		"sha256:../../../../etc/passwd" + strings.Repeat("a", 36),
		good + "\n",
	} {
		_, err := ParseDigest(d)
		require.ErrorIs(t, err, ErrBadDigest, "%q", d)
		_, err = c.Open(context.Background(), d)
		require.ErrorIs(t, err, ErrBadDigest, "%q", d)
		require.ErrorContains(t, err, fmt.Sprintf("%q", d))
		_, err = KeyOf(d)
		require.ErrorIs(t, err, ErrBadDigest, "%q", d)
	}
	require.Zero(t, store.gets.Load())
}

func TestCacheConcurrentOpen(t *testing.T) {
	ctx := context.Background()
	b := packDemo(t)
	store := newMemStore()
	store.delay = 20 * time.Millisecond
	require.NoError(t, Upload(ctx, store, b))
	c := newCache(t, store)

	dirs := make([]string, 8)
	errs := make([]error, 8)
	var wg sync.WaitGroup
	for i := range dirs {
		wg.Go(func() { dirs[i], errs[i] = c.Open(ctx, b.Digest) })
	}
	wg.Wait()
	for i := range dirs {
		require.NoError(t, errs[i])
		require.Equal(t, dirs[0], dirs[i])
	}
	require.Equal(t, int64(1), store.gets.Load())
	require.FileExists(t, filepath.Join(dirs[0], completeMarker))
}

// Caches in several processes share the folder: each may fetch, one
// rename wins, and every caller gets the complete folder.
func TestCacheConcurrentProcesses(t *testing.T) {
	ctx := context.Background()
	b := packDemo(t)
	store := newMemStore()
	store.delay = 10 * time.Millisecond
	require.NoError(t, Upload(ctx, store, b))
	dir := filepath.Join(t.TempDir(), "cache")

	const n = 6
	dirs := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range dirs {
		c := &Cache{Dir: dir, Store: store} // one per "process"
		wg.Go(func() { dirs[i], errs[i] = c.Open(ctx, b.Digest) })
	}
	wg.Wait()
	for i := range dirs {
		require.NoError(t, errs[i])
		require.Equal(t, dirs[0], dirs[i])
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary files or folders left")
	l := Layout{Root: dirs[0]}
	require.FileExists(t, filepath.Join(l.ChartDir(), "Chart.yaml"))
}

func TestCacheContextCancelled(t *testing.T) {
	b := packDemo(t)
	store := newMemStore()
	require.NoError(t, Upload(context.Background(), store, b))
	c := newCache(t, store)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Open(ctx, b.Digest)
	require.ErrorIs(t, err, context.Canceled)
}

type tarEntry struct {
	name     string
	typeflag byte
	body     string
	linkname string
}

func rawArchive(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		tf := e.typeflag
		if tf == 0 {
			tf = tar.TypeReg
		}
		h := &tar.Header{Name: e.name, Typeflag: tf, Mode: 0o644, Linkname: e.linkname}
		if tf == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		require.NoError(t, tw.WriteHeader(h))
		if tf == tar.TypeReg {
			_, err := tw.Write([]byte(e.body))
			require.NoError(t, err)
		}
	}
	require.NoError(t, tw.Close())
	require.NoError(t, gz.Close())
	return buf.Bytes()
}

// openRaw stores archive under its digest and opens it.
func openRaw(t *testing.T, c *Cache, store *memStore, archive []byte) (string, error) {
	t.Helper()
	sum := sha256.Sum256(archive)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	key, err := KeyOf(digest)
	require.NoError(t, err)
	require.NoError(t, store.Put(context.Background(), key, bytes.NewReader(archive)))
	return c.Open(context.Background(), digest)
}

func TestCacheRefusesBadArchives(t *testing.T) {
	ok := tarEntry{name: "chart/Chart.yaml", body: "name: x\n"}
	for name, entries := range map[string][]tarEntry{
		"dot-dot":       {ok, {name: "../evil", body: "x"}},
		"dot-dot-inner": {ok, {name: "chart/../../evil", body: "x"}},
		"absolute":      {ok, {name: "/tmp/evil", body: "x"}},
		"backslash":     {ok, {name: `chart\..\..\evil`, body: "x"}},
		"outside":       {ok, {name: "other/file", body: "x"}},
		"marker":        {ok, {name: completeMarker, body: "x"}},
		"symlink":       {ok, {name: "chart/link", typeflag: tar.TypeSymlink, linkname: "/etc/passwd"}},
		"hardlink":      {ok, {name: "chart/link", typeflag: tar.TypeLink, linkname: "chart/Chart.yaml"}},
		"fifo":          {ok, {name: "chart/fifo", typeflag: tar.TypeFifo}},
		"twice":         {ok, ok},
	} {
		t.Run(name, func(t *testing.T) {
			store := newMemStore()
			root := t.TempDir()
			c := &Cache{Dir: filepath.Join(root, "a", "cache"), Store: store}
			_, err := openRaw(t, c, store, rawArchive(t, entries...))
			require.ErrorIs(t, err, ErrBadArchive)
			require.NoFileExists(t, filepath.Join(root, "a", "evil"))
			require.NoFileExists(t, filepath.Join(root, "evil"))
			left, err := os.ReadDir(c.Dir)
			require.NoError(t, err)
			require.Empty(t, left)
		})
	}

	// Not gzip at all.
	store := newMemStore()
	c := newCache(t, store)
	_, err := openRaw(t, c, store, []byte("not an archive"))
	require.ErrorIs(t, err, ErrBadArchive)
}

func TestCacheLimits(t *testing.T) {
	store := newMemStore()
	c := newCache(t, store)
	c.MaxUnpacked = 10
	_, err := openRaw(t, c, store, rawArchive(t,
		tarEntry{name: "chart/a", body: "123456"},
		tarEntry{name: "chart/b", body: "123456"},
	))
	require.ErrorIs(t, err, ErrBadArchive)
	require.ErrorContains(t, err, "more than 10 bytes")

	c = newCache(t, store)
	c.MaxFiles = 1
	_, err = openRaw(t, c, store, rawArchive(t,
		tarEntry{name: "chart/a", body: "1"},
		tarEntry{name: "chart/b", body: "2"},
	))
	require.ErrorIs(t, err, ErrBadArchive)
	require.ErrorContains(t, err, "more than 1 files")

	// A blob far larger than any bundle within the limits is refused
	// before it is all read.
	c = newCache(t, store)
	c.MaxUnpacked, c.MaxFiles = 1, 1
	huge := bytes.Repeat([]byte{'x'}, 2<<20)
	_, err = openRaw(t, c, store, huge)
	require.ErrorIs(t, err, ErrDigestMismatch)
}

func TestDescribe(t *testing.T) {
	b := packDemo(t)
	out := Describe(b)
	require.Contains(t, out, b.Digest)
	require.Contains(t, out, b.Key())
	require.Contains(t, out, fmt.Sprintf("%d files", len(b.Files)))
	for _, g := range []string{"chart/:", "values/: 2 files", "terraform/: 1 file,"} {
		require.Contains(t, out, g)
	}
	for _, f := range b.Files {
		require.Contains(t, out, f.Path)
	}
	require.Less(t, strings.Index(out, "chart/Chart.yaml"), strings.Index(out, "values/0-base.yaml"))
	require.Less(t, strings.Index(out, "values/1-base.yaml"), strings.Index(out, "terraform/main.tf"))

	noTF, err := Pack(Sources{Chart: demoChart})
	require.NoError(t, err)
	require.Contains(t, Describe(noTF), "terraform/: none")
	t.Log("\n" + out)
}

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		require.Equal(t, want, humanSize(n))
	}
}

// statStore is a memStore that can Stat, counting Puts.
type statStore struct {
	*memStore
	puts atomic.Int64
}

func (s *statStore) Put(ctx context.Context, key string, r io.Reader) error {
	s.puts.Add(1)
	return s.memStore.Put(ctx, key, r)
}

func (s *statStore) Stat(_ context.Context, key string) (artifacts.Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.blobs[key]
	if !ok {
		return artifacts.Info{}, fmt.Errorf("stat artifact %s: %w", key, artifacts.ErrNotFound)
	}
	return artifacts.Info{Size: int64(len(b))}, nil
}

func TestUploadSkipsWhatTheStoreHas(t *testing.T) {
	ctx := context.Background()
	b := packDemo(t)
	s := &statStore{memStore: newMemStore()}
	require.NoError(t, Upload(ctx, s, b))
	require.NoError(t, Upload(ctx, s, b))
	require.Equal(t, int64(1), s.puts.Load())

	// A damaged blob (another size) is replaced.
	s.blobs[b.Key()] = []byte("short")
	require.NoError(t, Upload(ctx, s, b))
	require.Equal(t, int64(2), s.puts.Load())
	require.Equal(t, b.Bytes(), s.blobs[b.Key()])
}

// The same round trip through the real folder store the worker uses.
func TestRoundTripLocalStore(t *testing.T) {
	ctx := context.Background()
	store, err := artifacts.NewLocal(filepath.Join(t.TempDir(), "store"))
	require.NoError(t, err)
	b := packDemo(t)
	require.NoError(t, Upload(ctx, store, b))
	require.NoError(t, Upload(ctx, store, b))
	c := newCache(t, store)
	dir, err := c.Open(ctx, b.Digest)
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(Layout{Root: dir}.ChartDir(), "Chart.yaml"))

	missing := "sha256:" + strings.Repeat("0", 64)
	_, err = c.Open(ctx, missing)
	require.ErrorIs(t, err, ErrMissing)
	require.ErrorContains(t, err, missing)
}

// Folder entries, which the packer does not write but other tars do, are
// accepted.
func TestCacheAcceptsFolderEntries(t *testing.T) {
	store := newMemStore()
	c := newCache(t, store)
	dir, err := openRaw(t, c, store, rawArchive(t,
		tarEntry{name: "chart/", typeflag: tar.TypeDir},
		tarEntry{name: "chart/templates/", typeflag: tar.TypeDir},
		tarEntry{name: "chart/Chart.yaml", body: "name: x\n"},
		tarEntry{name: "values/0-a.yaml", body: "a: 1\n"},
	))
	require.NoError(t, err)
	require.DirExists(t, filepath.Join(dir, "chart", "templates"))
	require.Equal(t, filepath.Join(dir, "values", "0-a.yaml"), Layout{Root: dir}.ValuesFile(0))
}
