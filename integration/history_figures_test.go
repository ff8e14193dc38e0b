//go:build figures || bench

package integration

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"google.golang.org/protobuf/proto"

	"github.com/keelson-dev/keelson/internal/benchfig"
	"github.com/keelson-dev/keelson/workflows"
)

// TestFiguresHistorySize prints the size of a release's own history (issue
// 13): the demo's three regions with its gate and Terraform, and ten
// regions (on the lab's three clusters, one namespace each) with a gate,
// all at once. Run it against a worker built from an earlier commit
// (KEELSON_WORKER_BIN with infra/lab/worker.sh restart) for the figures
// before a change.
func TestFiguresHistorySize(t *testing.T) {
	l := newLab(t)
	count := func(id string) (events, signals, tasks int) {
		for _, e := range l.rawHistory(t, id) {
			events++
			switch e.GetEventType() {
			case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
				signals++
			case enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
				tasks++
			}
		}
		return
	}
	run := func(name, key, file string, gate bool, version string) {
		id := l.start(t, file, version)
		if gate {
			l.waitPhase(t, id, workflows.PhaseAwaitGate, 3*time.Minute)
			if out, code := l.keelson(t, "approve", id, "--user", "demo-approver"); code != 0 {
				t.Fatalf("approve %s: %s", id, out)
			}
		}
		if res := l.result(t, id, 5*time.Minute); res.Phase != workflows.PhaseSucceeded {
			t.Fatalf("%s: %s", name, writeJSON(res))
		}
		ev, sig, wft := count(id)
		if testing.Verbose() {
			// Where the events go, so the next change knows what to cut.
			kinds := map[string]int{}
			for _, e := range l.rawHistory(t, id) {
				k := strings.TrimPrefix(e.GetEventType().String(), "EVENT_TYPE_")
				if a := e.GetActivityTaskScheduledEventAttributes(); a != nil {
					k += " " + a.GetActivityType().GetName()
				}
				if a := e.GetWorkflowExecutionSignaledEventAttributes(); a != nil {
					k += " " + a.GetSignalName()
				}
				kinds[k]++
			}
			for _, k := range slices.Sorted(maps.Keys(kinds)) {
				fmt.Printf("FIGURES   %4d %s\n", kinds[k], k)
			}
		}
		fmt.Printf("FIGURES history of %-38s %4d events (%d signals, %d workflow tasks completed)\n", name+":", ev, sig, wft)
		t.Logf("%s: %d events, %d signals, %d workflow tasks", name, ev, sig, wft)
		// Bytes as stored (encrypted payloads), and the largest payload.
		bytes, largest := 0, 0
		for _, e := range l.rawHistory(t, id) {
			bytes += proto.Size(e)
			largest = max(largest, largestPayload(e))
		}
		var target *float64
		if key == "10_regions" {
			target = benchfig.AtMost(2000)
		}
		benchfig.Report(t, benchfig.Figure{Name: "history." + key + ".events", Value: float64(ev), Unit: "events", Max: target,
			Detail: fmt.Sprintf("the release's own history: %s (%d signals, %d workflow tasks)", name, sig, wft)})
		benchfig.Report(t, benchfig.Figure{Name: "history." + key + ".bytes", Value: float64(bytes), Unit: "bytes", Detail: name})
		benchfig.Report(t, benchfig.Figure{Name: "history." + key + ".largest_payload", Value: float64(largest), Unit: "bytes", Detail: name})
	}

	three := l.appName(t, "hist3")
	run("3 regions, gate, Terraform", "3_regions", l.releaseFile(t, three, nil), true, "1.0.0")

	ten := l.appName(t, "hist10")
	run("10 regions, gate", "10_regions", l.releaseFile(t, ten, func(doc map[string]any) {
		delete(doc, "terraform")
		doc["health"] = []any{}
		contexts := []string{"us-east-1", "eu-west-1", "ap-southeast-1"}
		var regions, rest []any
		for i := range 10 {
			name := fmt.Sprintf("r%d", i)
			regions = append(regions, map[string]any{"name": name, "kubeContext": contexts[i%3], "namespace": fmt.Sprintf("%s-r%d", ten, i)})
			if i > 0 {
				rest = append(rest, name)
			}
		}
		doc["regions"] = regions
		doc["waves"] = []any{
			map[string]any{"name": "canary", "regions": []any{"r0"}, "bake": "2s"},
			map[string]any{"name": "rest", "regions": rest, "parallelism": 9, "bake": "2s",
				"gate": map[string]any{"name": "promote-to-rest", "when": "always", "approvers": []any{"demo-approver"}}},
		}
	}), true, "1.0.0")

	// A canary of several steps (10 %, pause, analysis, 50 %, pause,
	// analysis, 100 %) in one region, after the first install that has no
	// stable side to compare with.
	awsEnv(t)
	canary := l.appName(t, "histcanary")
	file := l.progressiveFile(t, canary, canarySteps("error-ratio"), sideRecords(t, canary, "us-east-1"), errorRatio(canary))
	if res := l.result(t, l.start(t, file, "1.0.0"), 3*time.Minute); res.Phase != workflows.PhaseSucceeded {
		t.Fatalf("canary's first install: %s", writeJSON(res))
	}
	run("1 region, canary of 7 steps", "canary", file, false, "1.1.0")
}

// largestPayload is the size of the largest payload an event carries.
func largestPayload(e *historypb.HistoryEvent) int {
	n := 0
	for _, p := range e.GetWorkflowExecutionStartedEventAttributes().GetInput().GetPayloads() {
		n = max(n, proto.Size(p))
	}
	for _, p := range e.GetActivityTaskScheduledEventAttributes().GetInput().GetPayloads() {
		n = max(n, proto.Size(p))
	}
	for _, p := range e.GetActivityTaskCompletedEventAttributes().GetResult().GetPayloads() {
		n = max(n, proto.Size(p))
	}
	for _, p := range e.GetStartChildWorkflowExecutionInitiatedEventAttributes().GetInput().GetPayloads() {
		n = max(n, proto.Size(p))
	}
	for _, p := range e.GetWorkflowExecutionCompletedEventAttributes().GetResult().GetPayloads() {
		n = max(n, proto.Size(p))
	}
	return n
}
