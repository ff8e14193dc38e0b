//go:build figures

package integration

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"

	"github.com/keelson-dev/keelson/codec"
	"github.com/keelson-dev/keelson/control"
	"github.com/keelson-dev/keelson/release"
	"github.com/keelson-dev/keelson/workflows"
)

// TestFiguresCodecOverhead measures what encrypting payloads adds to a
// release: a two-region chart-only release runs KEELSON_FIGURES_RUNS times
// (5) on a test worker, then every payload of its histories (the release's
// and its regions', decrypted) is encrypted once and decrypted three times
// (the worker that runs it, the worker that replays it after its cache is
// gone, a CLI reading it) with the codec, and that CPU time is set against
// the release's wall time. Encryption adds no round trip, so its cost is
// that CPU time.
func TestFiguresCodecOverhead(t *testing.T) {
	runs := figRuns(t)
	e := newSlackEnv(t)
	app := slackApp("codecfig")
	file := slackReleaseFile(t, e.lab, app, "CCODECFIG", []slackWave{
		{Name: "canary", Region: "us-east-1", KubeContext: "us-east-1"},
		{Name: "rest", Region: "eu-west-1", KubeContext: "eu-west-1"},
	})
	spec, err := release.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	c := codec.New(codecRing(t))
	var walls, costs []time.Duration
	var payloads, bytes int
	for i := 0; i < runs; i++ {
		version := fmt.Sprintf("%s-%d", slackVersion(), i)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		start := time.Now()
		res, err := e.ctl.Start(ctx, spec, version, control.StartOptions{StartedBy: "figures"})
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		r, err := e.ctl.Result(ctx, res.ReleaseID)
		cancel()
		if err != nil || r.Phase != workflows.PhaseSucceeded {
			t.Fatalf("%s: %v %+v", res.ReleaseID, err, r)
		}
		walls = append(walls, time.Since(start))

		var all []*commonpb.Payload
		for _, wid := range []string{res.ReleaseID, workflows.RegionID(res.ReleaseID, "us-east-1"), workflows.RegionID(res.ReleaseID, "eu-west-1")} {
			for _, ev := range e.lab.history(t, wid) {
				all = append(all, payloadsIn(ev)...)
			}
		}
		payloads, bytes = len(all), 0
		for _, p := range all {
			bytes += len(p.GetData())
		}
		// Many rounds, so the clock's resolution does not matter.
		const rounds = 200
		t0 := time.Now()
		for k := 0; k < rounds; k++ {
			enc, err := c.Encode(all)
			if err != nil {
				t.Fatal(err)
			}
			for d := 0; d < 3; d++ {
				if _, err := c.Decode(enc); err != nil {
					t.Fatal(err)
				}
			}
		}
		costs = append(costs, time.Since(t0)/rounds)
	}
	w, cost := medianDuration(walls), medianDuration(costs)
	fmt.Printf("figure: codec on a 2-region release (cores %d, median of %d runs): %d payloads, %d bytes; encrypt once + decrypt 3 times: %s of CPU against a wall time of %s (%.3f%%)\n",
		runtime.NumCPU(), runs, payloads, bytes, cost.Round(time.Microsecond), w.Round(time.Millisecond), 100*float64(cost)/float64(w))
}

func codecRing(t *testing.T) *codec.Keyring {
	t.Helper()
	k := codec.Key{ID: "fig", Secret: []byte(randomHex(t, 16))}
	r, err := codec.NewKeyring(k)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func medianDuration(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
