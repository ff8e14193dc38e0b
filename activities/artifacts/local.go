package artifacts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Local is a Store in a folder on the worker's disk: the default when no S3
// bucket is configured. Several workers on one machine may share the folder.
type Local struct {
	Dir string
}

var _ Store = (*Local)(nil)
var _ Statter = (*Local)(nil)

// NewLocal returns a Local store in dir, creating the folder if needed.
func NewLocal(dir string) (*Local, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("artifact store %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("create artifact store: %w", err)
	}
	return &Local{Dir: abs}, nil
}

// CheckKey reports whether key names a blob inside a store: a relative slash
// path without empty, "." or ".." elements. Keys come from workflow input, so
// a key must never reach outside the store's folder.
func CheckKey(key string) error {
	if key == "" || key == "." || !fs.ValidPath(key) || strings.Contains(key, `\`) {
		return fmt.Errorf("%w: %q", ErrBadKey, key)
	}
	return nil
}

func (l *Local) path(key string) (string, error) {
	if err := CheckKey(key); err != nil {
		return "", err
	}
	if l.Dir == "" {
		return "", fmt.Errorf("artifact store has no folder")
	}
	return filepath.Join(l.Dir, filepath.FromSlash(key)), nil
}

// Put writes the blob to a temporary file beside its final name and renames
// it into place, so that a reader (or a worker that crashed mid-write and
// retried) never sees half a blob: a key either holds a complete earlier
// version or the complete new one.
func (l *Local) Put(ctx context.Context, key string, r io.Reader) (err error) {
	dst, err := l.path(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("put artifact %s: %w", key, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*.tmp")
	if err != nil {
		return fmt.Errorf("put artifact %s: %w", key, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, ctxReader{ctx, r}); err != nil {
		return fmt.Errorf("put artifact %s: %w", key, err)
	}
	// Sync before rename: otherwise a machine crash can leave the new name
	// pointing at an empty file.
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("put artifact %s: %w", key, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("put artifact %s: %w", key, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("put artifact %s: %w", key, err)
	}
	return nil
}

// Get opens the blob; the caller closes it. A missing key wraps ErrNotFound.
func (l *Local) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	src, err := l.path(key)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get artifact %s: %w", key, err)
	}
	f, err := os.Open(src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("get artifact %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get artifact %s: %w", key, err)
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("get artifact %s: not a blob: %w", key, ErrNotFound)
	}
	return f, nil
}

// Stat reports the blob's size without opening it. A missing key, or one
// that names a folder, wraps ErrNotFound as for Get.
func (l *Local) Stat(ctx context.Context, key string) (Info, error) {
	src, err := l.path(key)
	if err != nil {
		return Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return Info{}, fmt.Errorf("stat artifact %s: %w", key, err)
	}
	st, err := os.Stat(src)
	if errors.Is(err, fs.ErrNotExist) {
		return Info{}, fmt.Errorf("stat artifact %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return Info{}, fmt.Errorf("stat artifact %s: %w", key, err)
	}
	if !st.Mode().IsRegular() {
		return Info{}, fmt.Errorf("stat artifact %s: not a blob: %w", key, ErrNotFound)
	}
	return Info{Size: st.Size()}, nil
}

// ContextReader is r that stops at its next Read once ctx is done: a long
// copy or download ends when its activity is cancelled.
func ContextReader(ctx context.Context, r io.Reader) io.Reader { return ctxReader{ctx, r} }

// ctxReader stops a long copy when the activity is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
