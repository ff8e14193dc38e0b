// Package artifacts stores large things a release produces (plan files, full
// plan JSON, logs) outside workflow history; the workflow keeps only keys.
package artifacts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
)

// Store keeps blobs by key. Keys are slash-separated paths.
type Store interface {
	Put(ctx context.Context, key string, r io.Reader) error
	Get(ctx context.Context, key string) (io.ReadCloser, error)
}

var (
	// ErrNotFound is returned (wrapped) by Get when no blob has the key.
	ErrNotFound = errors.New("artifact not found")
	// ErrBadKey is returned (wrapped) for keys that are not relative slash
	// paths inside the store: empty, absolute, or with "." or ".." elements.
	// Retrying cannot fix it; callers report it as bad input.
	ErrBadKey = errors.New("bad artifact key")
)

// Open selects a store by URL: file:///abs/path is a folder on the worker's
// disk, created if needed. S3 comes later; any other scheme is an error
// naming the URL.
func Open(rawURL string) (Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("artifact store %q: %w", rawURL, err)
	}
	switch u.Scheme {
	case "file":
		// file://host/path names a folder on another machine, and
		// file:relative is no path at all: both are mistakes here.
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("artifact store %q: a file URL has no host (file:///abs/path)", rawURL)
		}
		if u.Opaque != "" || !filepath.IsAbs(u.Path) {
			return nil, fmt.Errorf("artifact store %q: the path must be absolute (file:///abs/path)", rawURL)
		}
		return NewLocal(filepath.Clean(u.Path))
	case "":
		return nil, fmt.Errorf("artifact store %q: no scheme; want file:///abs/path", rawURL)
	}
	return nil, fmt.Errorf("artifact store %q: unsupported scheme %q; want file:///abs/path", rawURL, u.Scheme)
}
