package bundle

import (
	"archive/tar"
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

	"github.com/keelson-dev/keelson/activities/artifacts"
)

// Upload puts the bundle in the store under its key, unless a store that
// can Stat already holds a blob of the bundle's size there. Putting it again
// is harmless: the key is the content's address, so it can only hold these
// bytes (a blob of another size is damaged, and is replaced).
func Upload(ctx context.Context, store artifacts.Store, b *Bundle) error {
	if s, ok := store.(interface {
		Stat(context.Context, string) (artifacts.Info, error)
	}); ok {
		if info, err := s.Stat(ctx, b.Key()); err == nil && info.Size == b.Size {
			return nil
		}
	}
	if err := store.Put(ctx, b.Key(), b.Reader()); err != nil {
		return fmt.Errorf("upload bundle %s: %w", b.Digest, err)
	}
	return nil
}

// completeMarker is written last into an unpacked bundle's folder, before
// the folder is renamed into place; a folder without it is debris.
const completeMarker = ".complete"

// Cache unpacks bundles from a store into Dir/<hex>/, once per digest. Any
// number of goroutines may call Open at once, and several processes may
// share Dir: a bundle is unpacked into a temporary folder that is renamed
// into place complete, so a reader never sees half a bundle. A Cache must
// not be copied after first use.
//
// The unpacked folders are shared and must be treated as read-only (files
// are created without write permission); a caller that writes, such as
// Terraform in its working folder, works in a copy made with CopyTree.
type Cache struct {
	Dir   string
	Store artifacts.Store
	// MaxUnpacked bounds the bytes of files a bundle unpacks to;
	// DefaultMaxUnpacked when zero.
	MaxUnpacked int64
	// MaxFiles bounds the number of files in a bundle; DefaultMaxFiles
	// when zero.
	MaxFiles int

	mu    sync.Mutex
	locks map[string]*digestLock
}

// digestLock lets one goroutine at a time fetch a digest; a channel rather
// than a mutex so that waiting gives up when the context ends.
type digestLock struct {
	ch   chan struct{}
	refs int
}

// Open returns the folder holding the unpacked bundle with the digest,
// fetching, verifying and unpacking it if the cache does not have it yet.
// Errors wrap ErrBadDigest, ErrMissing, ErrDigestMismatch or ErrBadArchive
// when retrying cannot help, and name the digest.
func (c *Cache) Open(ctx context.Context, digest string) (string, error) {
	hex, err := ParseDigest(digest)
	if err != nil {
		return "", err
	}
	if c.Dir == "" {
		return "", fmt.Errorf("bundle %s: the cache has no folder", digest)
	}
	dir, err := filepath.Abs(c.Dir)
	if err != nil {
		return "", fmt.Errorf("bundle %s: %w", digest, err)
	}
	final := filepath.Join(dir, hex)
	if complete(final) {
		return final, nil
	}

	unlock, err := c.lock(ctx, hex)
	if err != nil {
		return "", fmt.Errorf("bundle %s: %w", digest, err)
	}
	defer unlock()
	// Another goroutine may have unpacked it while this one waited.
	if complete(final) {
		return final, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("bundle %s: create cache: %w", digest, err)
	}
	if err := c.fetch(ctx, digest, hex, dir, final); err != nil {
		return "", err
	}
	return final, nil
}

func (c *Cache) lock(ctx context.Context, hex string) (func(), error) {
	c.mu.Lock()
	if c.locks == nil {
		c.locks = map[string]*digestLock{}
	}
	l := c.locks[hex]
	if l == nil {
		l = &digestLock{ch: make(chan struct{}, 1)}
		c.locks[hex] = l
	}
	l.refs++
	c.mu.Unlock()

	release := func() {
		c.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(c.locks, hex)
		}
		c.mu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}

// complete reports whether dir is an unpacked bundle.
func complete(dir string) bool {
	fi, err := os.Stat(filepath.Join(dir, completeMarker))
	return err == nil && fi.Mode().IsRegular()
}

func (c *Cache) fetch(ctx context.Context, digest, hexDigest, dir, final string) error {
	key := KeyPrefix + hexDigest + ".tar.gz"
	maxUnpacked, maxFiles := c.limits()

	rc, err := c.Store.Get(ctx, key)
	if errors.Is(err, artifacts.ErrNotFound) {
		return fmt.Errorf("bundle %s: %w (key %s): %w", digest, ErrMissing, key, err)
	}
	if err != nil {
		return fmt.Errorf("bundle %s: %w", digest, err)
	}
	defer rc.Close()

	tmp, err := os.CreateTemp(dir, "."+hexDigest[:16]+"-*.tar.gz.tmp")
	if err != nil {
		return fmt.Errorf("bundle %s: %w", digest, err)
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()

	// A bundle within the limits cannot be much larger than its content:
	// tar adds at most 1 KiB per file, and gzip a few bytes per block of
	// incompressible data. Anything larger is not the bundle asked for,
	// and is not written to disk in full before the digest says so.
	maxArchive := maxUnpacked + maxUnpacked/64 + int64(maxFiles)*1024 + 1<<20
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(artifacts.ContextReader(ctx, rc), maxArchive+1))
	if err != nil {
		return fmt.Errorf("bundle %s: download %s: %w", digest, key, err)
	}
	if n > maxArchive {
		return fmt.Errorf("bundle %s: %w: key %s holds more than %d bytes, more than a bundle within the limits can be", digest, ErrDigestMismatch, key, maxArchive)
	}
	if actual := hex.EncodeToString(h.Sum(nil)); actual != hexDigest {
		return fmt.Errorf("bundle %s: %w: key %s holds sha256:%s", digest, ErrDigestMismatch, key, actual)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("bundle %s: %w", digest, err)
	}

	work, err := os.MkdirTemp(dir, "."+hexDigest[:16]+"-*.tmp")
	if err != nil {
		return fmt.Errorf("bundle %s: %w", digest, err)
	}
	renamed := false
	defer func() {
		if !renamed {
			os.RemoveAll(work)
		}
	}()
	// MkdirTemp makes the folder private; the bundle is not secret, and
	// tools running as other users read it.
	if err := os.Chmod(work, 0o755); err != nil {
		return fmt.Errorf("bundle %s: %w", digest, err)
	}
	if err := unpack(tmp, work, maxUnpacked, maxFiles); err != nil {
		return fmt.Errorf("bundle %s: %w", digest, err)
	}
	if err := writeMarker(work, digest); err != nil {
		return fmt.Errorf("bundle %s: %w", digest, err)
	}

	if _, err := os.Lstat(final); err == nil && !complete(final) {
		setAside(dir, final, hexDigest)
	}
	if err := os.Rename(work, final); err != nil {
		// Lost the race to another process: its copy is as good.
		if complete(final) {
			return nil
		}
		return fmt.Errorf("bundle %s: %w", digest, err)
	}
	renamed = true
	return nil
}

// setAside removes a folder at final that has no marker: debris, such as a
// copy damaged by hand, since rename does not replace a folder that has
// files. Only complete folders are ever renamed into place, so nothing in
// progress is lost; but another process may have set the debris aside and
// renamed its complete copy in since the caller looked, so a complete
// folder taken by mistake goes back.
func setAside(dir, final, hexDigest string) {
	trash, err := os.MkdirTemp(dir, "."+hexDigest[:16]+"-*.old")
	if err != nil {
		return
	}
	defer os.RemoveAll(trash)
	moved := filepath.Join(trash, "old")
	if os.Rename(final, moved) == nil && complete(moved) {
		os.Rename(moved, final)
	}
}

func (c *Cache) limits() (int64, int) {
	maxUnpacked, maxFiles := c.MaxUnpacked, c.MaxFiles
	if maxUnpacked <= 0 {
		maxUnpacked = DefaultMaxUnpacked
	}
	if maxFiles <= 0 {
		maxFiles = DefaultMaxFiles
	}
	return maxUnpacked, maxFiles
}

func writeMarker(dir, digest string) error {
	f, err := os.OpenFile(filepath.Join(dir, completeMarker), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(digest + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// unpack writes the bundle archive r into dst, refusing anything a packed
// bundle does not contain: paths outside chart/, values/ and terraform/,
// absolute or ".." paths, links, special files, the same path twice, and
// more than the limits. Files are created read-only.
func unpack(r io.Reader, dst string, maxUnpacked int64, maxFiles int) error {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadArchive, err)
	}
	tr := tar.NewReader(gz)
	var total int64
	files := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrBadArchive, err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		if !validPath(name) {
			return fmt.Errorf("%w: entry %q is not a clean relative path", ErrBadArchive, h.Name)
		}
		top, _, _ := strings.Cut(name, "/")
		if top != ChartFolder && top != ValuesFolder && top != TerraformFolder || top == name && h.Typeflag != tar.TypeDir {
			return fmt.Errorf("%w: entry %q is outside chart/, values/ and terraform/", ErrBadArchive, h.Name)
		}
		target := filepath.Join(dst, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
			continue
		case tar.TypeReg:
		default:
			return fmt.Errorf("%w: entry %q is not a regular file (type %q)", ErrBadArchive, h.Name, h.Typeflag)
		}
		files++
		if files > maxFiles {
			return fmt.Errorf("%w: more than %d files", ErrBadArchive, maxFiles)
		}
		if h.Size < 0 || h.Size > maxUnpacked-total {
			return fmt.Errorf("%w: unpacks to more than %d bytes", ErrBadArchive, maxUnpacked)
		}
		total += h.Size
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		if err := writeFile(target, tr, h); err != nil {
			return err
		}
	}
	// Read to the end of the gzip stream, so that trailing garbage and a
	// bad checksum are caught; the digest matched, but the packer's
	// output is the only thing that should.
	if _, err := io.Copy(io.Discard, gz); err != nil {
		return fmt.Errorf("%w: %w", ErrBadArchive, err)
	}
	return nil
}

func writeFile(target string, r io.Reader, h *tar.Header) error {
	perm := fs.FileMode(0o444)
	if h.Mode&0o111 != 0 {
		perm = 0o555
	}
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w: entry %q appears twice", ErrBadArchive, h.Name)
	}
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return fmt.Errorf("%w: entry %q: %w", ErrBadArchive, h.Name, err)
	}
	// The folder outlives the process; a crash must not leave a marker
	// beside empty files.
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// CopyTree copies the folder src into dst (created if needed) with
// writable files, for callers that must write into a bundle's folder.
// Only folders and regular files are copied; anything else is an error.
func CopyTree(src, dst string) error {
	srcAbs, err := filepath.Abs(src)
	if err != nil {
		return err
	}
	dstAbs, err := filepath.Abs(dst)
	if err != nil {
		return err
	}
	if inside(srcAbs, dstAbs) {
		return fmt.Errorf("copy %s to %s: the copy would be inside the original", src, dst)
	}
	return filepath.WalkDir(srcAbs, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("copy %s: %w", src, err)
		}
		rel, err := filepath.Rel(srcAbs, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dstAbs, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			return copyFile(p, target, fs.FileMode(normalMode(fi.Mode())))
		default:
			return fmt.Errorf("copy %s: %s is not a regular file", src, p)
		}
	})
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}
