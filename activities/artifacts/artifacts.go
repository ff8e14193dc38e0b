// Package artifacts stores large things a release produces (plan files, full
// plan JSON, logs) outside workflow history; the workflow keeps only keys.
package artifacts

import (
	"context"
	"io"
)

// Store keeps blobs by key. Keys are slash-separated paths.
type Store interface {
	Put(ctx context.Context, key string, r io.Reader) error
	Get(ctx context.Context, key string) (io.ReadCloser, error)
}
