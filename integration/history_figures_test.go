//go:build figures

package integration

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

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
	run := func(name, file string) {
		id := l.start(t, file, "1.0.0")
		l.waitPhase(t, id, workflows.PhaseAwaitGate, 3*time.Minute)
		if out, code := l.keelson(t, "approve", id, "--user", "demo-approver"); code != 0 {
			t.Fatalf("approve %s: %s", id, out)
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
	}

	three := l.appName(t, "hist3")
	run("3 regions, gate, Terraform", l.releaseFile(t, three, nil))

	ten := l.appName(t, "hist10")
	run("10 regions, gate", l.releaseFile(t, ten, func(doc map[string]any) {
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
	}))
}
