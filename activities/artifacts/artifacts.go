// Package artifacts stores large things a release produces (plan files, full
// plan JSON, logs) outside workflow history; the workflow keeps only keys.
package artifacts

import (
	"context"
	"errors"
	"io"
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
