package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"

	historypb "go.temporal.io/api/history/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

var recordMu sync.Mutex

// record writes a workflow's history to KEELSON_RECORD_DIR (normally
// workflows/testdata) as NAME.json and adds it to that folder's index.json,
// which the replay test reads: the replay corpus grows by running the
// scenarios that reach a new path, as docs/versioning.md says. Without the
// variable it does nothing.
func (l *lab) record(t *testing.T, workflowID, name string) {
	t.Helper()
	dir := os.Getenv("KEELSON_RECORD_DIR")
	if dir == "" {
		return
	}
	// Tests that run in parallel share index.json.
	recordMu.Lock()
	defer recordMu.Unlock()
	// Decrypted: the corpus replays without the lab's key.
	events := l.history(t, workflowID)
	raw, err := protojson.MarshalOptions{Indent: "  "}.Marshal(&historypb.History{Events: events})
	if err != nil {
		t.Fatalf("record %s: %v", workflowID, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".json"), raw, 0o644); err != nil {
		t.Fatalf("record %s: %v", workflowID, err)
	}
	indexPath := filepath.Join(dir, "index.json")
	index := map[string]string{}
	if b, err := os.ReadFile(indexPath); err == nil {
		if err := json.Unmarshal(b, &index); err != nil {
			t.Fatalf("record: %s: %v", indexPath, err)
		}
	}
	index[name+".json"] = workflowID
	keys := make([]string, 0, len(index))
	for k := range index {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b, _ := json.MarshalIndent(index, "", "  ")
	if err := os.WriteFile(indexPath, append(b, '\n'), 0o644); err != nil {
		t.Fatalf("record: %v", err)
	}
	t.Logf("recorded %s (%d events) as %s", workflowID, len(events), name)
}
