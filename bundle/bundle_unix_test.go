//go:build unix

package bundle

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPackRefusesSpecialFiles(t *testing.T) {
	chart := t.TempDir()
	writeTree(t, chart, map[string]string{"Chart.yaml": "apiVersion: v2\nname: app\nversion: 0.1.0\n"})
	require.NoError(t, syscall.Mkfifo(filepath.Join(chart, "templates.pipe"), 0o644))
	_, err := Pack(Sources{Chart: chart})
	require.ErrorContains(t, err, "templates.pipe")
	require.ErrorContains(t, err, "special file")

	values := filepath.Join(t.TempDir(), "values.pipe")
	require.NoError(t, syscall.Mkfifo(values, 0o644))
	require.NoError(t, os.Remove(filepath.Join(chart, "templates.pipe")))
	_, err = Pack(Sources{Chart: chart, ValuesFiles: []string{values}})
	require.ErrorContains(t, err, "values.pipe")
}
