package workflows

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/keelson-dev/keelson/codec"
)

// testdata/index.json names, for every recorded history, the workflow ID
// it ran under: Release derives its children's IDs and its lane's from its
// own, so a replay must run under the original ID. The histories were
// recorded on the local stack (integration tests with KEELSON_RECORD_DIR;
// the first five with `temporal workflow show --output json`).
func recorded(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile("testdata/index.json")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("testdata/index.json: %v", err)
	}
	return m
}

// TestReplayRecordedHistories replays every recorded history: a change to
// workflow code that would break a release already running fails here
// instead of in production. Guard such changes with workflow.GetVersion,
// record new histories, and keep the old ones.
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	if err != nil {
		t.Fatal(err)
	}
	recorded := recorded(t)
	// With the workers' keys, histories recorded with encryption on replay
	// too; the ones in clear pass through the codec unchanged.
	var opts worker.WorkflowReplayerOptions
	if spec := os.Getenv(codec.EnvKeys); spec != "" {
		keys, err := codec.ParseKeys(spec, os.Getenv)
		if err != nil {
			t.Fatalf("%s: %v", codec.EnvKeys, err)
		}
		opts.DataConverter = codec.NewDataConverter(keys)
		opts.FailureConverter = codec.NewFailureConverter(opts.DataConverter)
	}
	files = slices.DeleteFunc(files, func(f string) bool { return filepath.Base(f) == "index.json" })
	if len(files) != len(recorded) {
		t.Fatalf("testdata holds %d histories, index.json names %d: keep them in step", len(files), len(recorded))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			id, ok := recorded[filepath.Base(f)]
			if !ok {
				t.Fatalf("%s: add its workflow ID to testdata/index.json", f)
			}
			fh, err := os.Open(f)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			hist, err := client.HistoryFromJSON(fh, client.HistoryJSONOptions{})
			if err != nil {
				t.Fatalf("read %s: %v", f, err)
			}
			r, err := worker.NewWorkflowReplayerWithOptions(opts)
			if err != nil {
				t.Fatal(err)
			}
			r.RegisterWorkflow(Release)
			r.RegisterWorkflow(RegionRollout)
			r.RegisterWorkflow(Lane)
			r.RegisterWorkflow(TrafficRestore)
			r.RegisterWorkflow(Freeze)
			r.RegisterWorkflow(Train)
			err = r.ReplayWorkflowHistoryWithOptions(log.NewStructuredLogger(slog.New(slog.DiscardHandler)), hist,
				worker.ReplayWorkflowHistoryOptions{OriginalExecution: workflow.Execution{ID: id}})
			if err != nil {
				t.Fatalf("replay %s: %v", f, err)
			}
		})
	}
}
