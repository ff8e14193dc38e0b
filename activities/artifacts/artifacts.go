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
	"strings"
)

// Store keeps blobs by key. Keys are slash-separated paths.
type Store interface {
	Put(ctx context.Context, key string, r io.Reader) error
	Get(ctx context.Context, key string) (io.ReadCloser, error)
}

// Info describes a stored blob.
type Info struct {
	Size int64 // bytes
}

// Statter is implemented by stores that can tell whether a blob exists, and
// how large it is, without reading it. It is separate from Store so that a
// store (or a test double) need not support it; both Local and S3 do.
type Statter interface {
	// Stat returns the blob's Info. A missing key wraps ErrNotFound, a bad
	// one ErrBadKey, as for Get.
	Stat(ctx context.Context, key string) (Info, error)
}

var (
	// ErrNotFound is returned (wrapped) by Get when no blob has the key.
	ErrNotFound = errors.New("artifact not found")
	// ErrBadKey is returned (wrapped) for keys that are not relative slash
	// paths inside the store: empty, absolute, or with "." or ".." elements.
	// Retrying cannot fix it; callers report it as bad input.
	ErrBadKey = errors.New("bad artifact key")
)

// Open is OpenContext with a background context: loading the AWS
// configuration for an s3 URL reads only the environment and local files.
func Open(rawURL string) (Store, error) {
	return OpenContext(context.Background(), rawURL)
}

// OpenContext selects a store by URL:
//
//   - file:///abs/path is a folder on the worker's disk, created if needed.
//   - s3://bucket/prefix keeps blobs in an S3 bucket under prefix (which may
//     be empty). Query parameters: endpoint=http://host:port for an
//     S3-compatible server such as moto; region=us-east-1 (default: the AWS
//     default chain, else us-east-1); pathStyle=true|false (default: true
//     when there is a custom endpoint, from the URL or from
//     AWS_ENDPOINT_URL[_S3], else false). Credentials always come from the
//     AWS default chain: a URL that carries any is refused, since URLs end up
//     in logs and process listings.
//
// Errors name the URL (with any credentials in it removed).
func OpenContext(ctx context.Context, rawURL string) (Store, error) {
	shown := redactURL(rawURL)
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error repeats the unredacted URL; keep only what went wrong.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("artifact store %q: %w", shown, err)
	}
	switch u.Scheme {
	case "file":
		// file://host/path names a folder on another machine, and
		// file:relative is no path at all: both are mistakes here.
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("artifact store %q: a file URL has no host (file:///abs/path)", shown)
		}
		if u.Opaque != "" || !filepath.IsAbs(u.Path) {
			return nil, fmt.Errorf("artifact store %q: the path must be absolute (file:///abs/path)", shown)
		}
		l, err := NewLocal(filepath.Clean(u.Path))
		if err != nil {
			// Not NewLocal's nil *Local: as a Store it would not be nil.
			return nil, err
		}
		return l, nil
	case "s3":
		return openS3(ctx, shown, u)
	case "":
		return nil, fmt.Errorf("artifact store %q: no scheme; want file:///abs/path or s3://bucket/prefix", shown)
	}
	return nil, fmt.Errorf("artifact store %q: unsupported scheme %q; want file:///abs/path or s3://bucket/prefix", shown, u.Scheme)
}

// Describe returns a short human form of the store for logs, e.g.
// "file:///var/lib/keelson/artifacts" or
// "s3://bucket/prefix (region us-east-1, endpoint http://127.0.0.1:5055, path-style)".
func Describe(s Store) string {
	switch s := s.(type) {
	case nil:
		return "none"
	case *Local:
		if s != nil {
			return "file://" + filepath.ToSlash(s.Dir)
		}
	case *S3:
		if s != nil {
			return s.describe()
		}
	}
	return fmt.Sprintf("%T", s)
}

// redactURL replaces the user info of a URL-like string, if it has any,
// so that an error about a URL never repeats a secret. It works on the raw
// string because it must also serve URLs that do not parse.
func redactURL(raw string) string {
	_, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	start := len(raw) - len(rest)
	end := len(rest)
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		end = i
	}
	at := strings.LastIndex(rest[:end], "@")
	if at < 0 {
		return raw
	}
	return raw[:start] + "REDACTED" + raw[start+at:]
}

// OpenLocation opens a store named the way the worker's and the CLI's
// --artifacts takes it: a URL (file:///abs/path, s3://bucket/prefix?...)
// or, as before URLs, an absolute folder.
func OpenLocation(ctx context.Context, location string) (Store, error) {
	if filepath.IsAbs(location) && !strings.Contains(location, "://") {
		return NewLocal(filepath.Clean(location))
	}
	return OpenContext(ctx, location)
}
