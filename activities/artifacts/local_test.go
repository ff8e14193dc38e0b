package artifacts

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func get(t *testing.T, s Store, key string) string {
	t.Helper()
	rc, err := s.Get(context.Background(), key)
	require.NoError(t, err)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	require.NoError(t, err)
	return string(b)
}

func TestLocalPutGetOverwrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s, err := NewLocal(dir)
	require.NoError(t, err)
	ctx := context.Background()

	require.NoError(t, s.Put(ctx, "web/1.0.0/eu-west/plan.json", strings.NewReader(`{"a":1}`)))
	require.Equal(t, `{"a":1}`, get(t, s, "web/1.0.0/eu-west/plan.json"))
	require.FileExists(t, filepath.Join(dir, "web", "1.0.0", "eu-west", "plan.json"))

	require.NoError(t, s.Put(ctx, "web/1.0.0/eu-west/plan.json", strings.NewReader("second")))
	require.Equal(t, "second", get(t, s, "web/1.0.0/eu-west/plan.json"))

	// No temporary files are left beside the blob.
	entries, err := os.ReadDir(filepath.Join(dir, "web", "1.0.0", "eu-west"))
	require.NoError(t, err)
	require.Len(t, entries, 1)
}

func TestLocalGetMissing(t *testing.T) {
	s, err := NewLocal(t.TempDir())
	require.NoError(t, err)
	_, err = s.Get(context.Background(), "web/none")
	require.ErrorIs(t, err, ErrNotFound)
	require.NoError(t, s.Put(context.Background(), "web/dir/blob", strings.NewReader("x")))
	_, err = s.Get(context.Background(), "web/dir")
	require.ErrorIs(t, err, ErrNotFound, "a folder is not a blob")
}

func TestLocalRejectsKeysOutsideTheStore(t *testing.T) {
	root := t.TempDir()
	s, err := NewLocal(filepath.Join(root, "store"))
	require.NoError(t, err)
	for _, key := range []string{"", ".", "..", "../escape", "a/../../escape", "/etc/passwd", "a//b", "a/./b", "a/", `a\..\b`} {
		err := s.Put(context.Background(), key, strings.NewReader("x"))
		require.ErrorIs(t, err, ErrBadKey, "put %q", key)
		_, err = s.Get(context.Background(), key)
		require.ErrorIs(t, err, ErrBadKey, "get %q", key)
	}
	_, err = os.Stat(filepath.Join(root, "escape"))
	require.True(t, errors.Is(err, os.ErrNotExist), "nothing was written outside the store")
}

// A Put whose reader fails half-way leaves the earlier version in place and
// no temporary file behind: what a crash or cancellation in the middle of an
// upload must look like to the next reader.
func TestLocalFailedPutKeepsEarlierVersion(t *testing.T) {
	dir := t.TempDir()
	s, err := NewLocal(dir)
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, s.Put(ctx, "k/blob", strings.NewReader("complete")))

	boom := errors.New("connection reset")
	err = s.Put(ctx, "k/blob", io.MultiReader(strings.NewReader("half"), errReader{boom}))
	require.ErrorIs(t, err, boom)
	require.Equal(t, "complete", get(t, s, "k/blob"))

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	err = s.Put(cctx, "k/blob", strings.NewReader("cancelled"))
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, "complete", get(t, s, "k/blob"))

	entries, err := os.ReadDir(filepath.Join(dir, "k"))
	require.NoError(t, err)
	require.Len(t, entries, 1, "temporary files removed")
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
