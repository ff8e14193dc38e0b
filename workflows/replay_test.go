package workflows

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// recorded are histories recorded on the local stack with `temporal
// workflow show --workflow-id ID --output json`, by the workflow ID they ran
// under: Release derives its children's IDs from its own, so a replay must
// run under the original ID.
var recorded = map[string]string{
	"release-demo-gate.json":    "release-itdemo-2.303009.0", // two waves, a gate approved from the CLI
	"region-demo.json":          "release-itdemo-2.303009.0/eu-west-1",
	"release-rollback.json":     "release-itfail-2.303029.0-unready", // readiness failed, canary rolled back
	"release-worker-crash.json": "release-itcrash-1.303278.0",        // worker killed twice with SIGKILL
	"region-worker-crash.json":  "release-itcrash-1.303278.0/us-east-1",
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
	if len(files) != len(recorded) {
		t.Fatalf("testdata holds %d histories, recorded names %d: keep them in step", len(files), len(recorded))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			id, ok := recorded[filepath.Base(f)]
			if !ok {
				t.Fatalf("%s: add its workflow ID to recorded", f)
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
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflow(Release)
			r.RegisterWorkflow(RegionRollout)
			err = r.ReplayWorkflowHistoryWithOptions(log.NewStructuredLogger(slog.New(slog.DiscardHandler)), hist,
				worker.ReplayWorkflowHistoryOptions{OriginalExecution: workflow.Execution{ID: id}})
			if err != nil {
				t.Fatalf("replay %s: %v", f, err)
			}
		})
	}
}
