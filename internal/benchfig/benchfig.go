// Package benchfig records the figures of `make bench` (bench/run.sh). A
// figure is printed as a line people read, with its target and whether it
// was met, and appended as one JSON object to the file KEELSON_BENCH_OUT
// names (JSON lines), so that a later run can be compared with this one.
// Figures are measurements, never assertions: a missed target is printed,
// and the benchmark still passes.
package benchfig

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"sort"
	"sync"
	"testing"
	"time"
)

// Figure is one measured value.
type Figure struct {
	// Name is dotted, stable across runs: "helm.upgrade.ratio".
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	// Unit: "ratio", "s", "ms", "MiB", "events", "bytes", "releases".
	Unit string `json:"unit"`
	// Max is the target, when it names one: the value must be at
	// most Max. Met says whether it was.
	Max    *float64 `json:"max,omitempty"`
	Met    *bool    `json:"met,omitempty"`
	Detail string   `json:"detail,omitempty"`
	// Cores is runtime.NumCPU() of the machine that measured it.
	Cores int       `json:"cores"`
	At    time.Time `json:"at"`
}

// AtMost is a target for Figure.Max.
func AtMost(v float64) *float64 { return &v }

var mu sync.Mutex

// Report prints f and appends it to KEELSON_BENCH_OUT when set.
func Report(t testing.TB, f Figure) {
	t.Helper()
	f.Cores = runtime.NumCPU()
	f.At = time.Now().UTC()
	target := ""
	if f.Max != nil {
		met := f.Value <= *f.Max
		f.Met = &met
		word := "met"
		if !met {
			word = "MISSED"
		}
		target = fmt.Sprintf("  (target ≤ %s: %s)", format(*f.Max), word)
	}
	line := fmt.Sprintf("BENCH %-40s %12s %-8s%s", f.Name, format(f.Value), f.Unit, target)
	if f.Detail != "" {
		line += "  " + f.Detail
	}
	fmt.Println(line)
	out := os.Getenv("KEELSON_BENCH_OUT")
	if out == "" {
		return
	}
	raw, err := json.Marshal(f)
	if err != nil {
		t.Fatalf("benchfig: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	file, err := os.OpenFile(out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatalf("benchfig: KEELSON_BENCH_OUT: %v", err)
	}
	defer file.Close()
	if _, err := file.Write(append(raw, '\n')); err != nil {
		t.Fatalf("benchfig: KEELSON_BENCH_OUT: %v", err)
	}
}

func format(v float64) string {
	switch {
	case v == float64(int64(v)) && v < 1e12:
		return fmt.Sprintf("%d", int64(v))
	case v < 10:
		return fmt.Sprintf("%.3f", v)
	default:
		return fmt.Sprintf("%.1f", v)
	}
}

// Median of ds (0 for none).
func Median(ds []time.Duration) time.Duration { return Quantile(ds, 0.5) }

// Quantile of ds by the nearest-rank method (0 for none).
func Quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(q*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// Seconds is d in seconds, for Figure.Value.
func Seconds(d time.Duration) float64 { return d.Seconds() }

// Millis is d in milliseconds, for Figure.Value.
func Millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
