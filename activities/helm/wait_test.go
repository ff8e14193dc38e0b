package helm

import (
	"slices"
	"testing"
	"time"
)

// Readiness is checked soon after an upgrade, then less and less often,
// never less often than Helm's --wait.
func TestReadinessPolls(t *testing.T) {
	var got []time.Duration
	for d := firstPoll; len(got) < 6; d = nextPoll(d) {
		got = append(got, d)
	}
	want := []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 2 * time.Second, 2 * time.Second}
	if !slices.Equal(got, want) {
		t.Fatalf("polls %v, want %v", got, want)
	}
}
