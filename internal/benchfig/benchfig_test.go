package benchfig

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReportAppendsJSONWithTarget(t *testing.T) {
	out := filepath.Join(t.TempDir(), "bench.jsonl")
	t.Setenv("KEELSON_BENCH_OUT", out)
	Report(t, Figure{Name: "a.ratio", Value: 1.2, Unit: "ratio", Max: AtMost(1.05)})
	Report(t, Figure{Name: "b.ms", Value: 250, Unit: "ms", Max: AtMost(300)})
	Report(t, Figure{Name: "c.events", Value: 812, Unit: "events"})
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3:\n%s", len(lines), raw)
	}
	var figs []Figure
	for _, l := range lines {
		var f Figure
		if err := json.Unmarshal([]byte(l), &f); err != nil {
			t.Fatal(err)
		}
		figs = append(figs, f)
	}
	if figs[0].Met == nil || *figs[0].Met {
		t.Errorf("1.2 against at most 1.05: Met = %v, want false", figs[0].Met)
	}
	if figs[1].Met == nil || !*figs[1].Met {
		t.Errorf("250 against at most 300: Met = %v, want true", figs[1].Met)
	}
	if figs[2].Met != nil || figs[2].Max != nil {
		t.Errorf("a figure without target has Met %v, Max %v", figs[2].Met, figs[2].Max)
	}
	if figs[0].Cores < 1 {
		t.Errorf("cores = %d", figs[0].Cores)
	}
}

func TestQuantile(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3}
	if got := Median(ds); got != 3 {
		t.Errorf("median = %v, want 3", got)
	}
	if got := Quantile(ds, 0.95); got != 5 {
		t.Errorf("p95 = %v, want 5", got)
	}
	if got := Median(nil); got != 0 {
		t.Errorf("median of nothing = %v", got)
	}
}
