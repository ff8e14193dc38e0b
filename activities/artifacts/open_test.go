package artifacts

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestOpenFilePutGet(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s, err := Open("file://" + dir)
	require.NoError(t, err)
	ctx := context.Background()

	key := "analysis/rel-1/eu-west/canary-10.jsonl"
	require.NoError(t, s.Put(ctx, key, strings.NewReader("{\"a\":1}\n")))
	require.NoError(t, s.Put(ctx, key, strings.NewReader("{\"a\":2}\n")))
	rc, err := s.Get(ctx, key)
	require.NoError(t, err)
	b, err := io.ReadAll(rc)
	require.NoError(t, err)
	require.NoError(t, rc.Close())
	require.Equal(t, "{\"a\":2}\n", string(b))

	// Written in place by rename: no temporary file is left beside it.
	entries, err := os.ReadDir(filepath.Join(dir, "analysis", "rel-1", "eu-west"))
	require.NoError(t, err)
	require.Len(t, entries, 1)

	_, err = s.Get(ctx, "analysis/none.jsonl")
	require.ErrorIs(t, err, ErrNotFound)
}

func TestOpenRejectsKeysOutsideTheStore(t *testing.T) {
	root := t.TempDir()
	s, err := Open("file://" + filepath.Join(root, "store"))
	require.NoError(t, err)
	for _, key := range []string{"", "..", "../escape", "a/../../escape", "/etc/passwd"} {
		require.ErrorIs(t, s.Put(context.Background(), key, strings.NewReader("x")), ErrBadKey, "put %q", key)
		_, err := s.Get(context.Background(), key)
		require.ErrorIs(t, err, ErrBadKey, "get %q", key)
	}
	_, err = os.Stat(filepath.Join(root, "escape"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestOpenBadURLs(t *testing.T) {
	for _, u := range []string{
		"s3://bucket/prefix?bogus=1",
		"https://example.com/artifacts",
		"file://relative/path",
		"file:relative",
		"/abs/without/scheme",
	} {
		_, err := Open(u)
		require.Error(t, err, u)
		require.Contains(t, err.Error(), u, "the error names the URL")
	}
}
