//go:build figures

package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/keelson-dev/keelson/codec"
	"github.com/keelson-dev/keelson/control"
	"github.com/keelson-dev/keelson/release"
	"github.com/keelson-dev/keelson/workflows"
)

// TestFiguresCodecOverhead measures what encrypting payloads adds to a
// release's wall time: the same two-region release (one region per wave, a
// gate-free chart-only release like the Slack tests') KEELSON_FIGURES_RUNS
// times (5) on a test worker without keys, then on one with keys, the
// release started through a client with the same keys.
func TestFiguresCodecOverhead(t *testing.T) {
	runs := figRuns(t)
	keyFile := filepath.Join(t.TempDir(), "codec.key")
	if err := os.WriteFile(keyFile, []byte(randomHex(t, 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	keys := "fig=file:" + keyFile
	wall := map[string][]time.Duration{}
	for _, mode := range []string{"plain", "encrypted"} {
		t.Run(mode, func(t *testing.T) {
			x := workerExtra{}
			if mode == "encrypted" {
				x.args = []string{"--codec-keys", keys}
			}
			e := newSlackEnvWith(t, x)
			ctl := e.ctl
			if mode == "encrypted" {
				kr, err := codec.ParseKeys(keys, os.Getenv)
				if err != nil {
					t.Fatal(err)
				}
				dc := codec.NewDataConverter(kr)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				tc, err := control.Dial(ctx, control.DialOptions{Address: e.lab.address, Namespace: "default", DataConverter: dc, FailureConverter: codec.NewFailureConverter(dc)})
				if err != nil {
					t.Fatal(err)
				}
				defer tc.Close()
				ctl = &control.Client{T: tc, Namespace: "default", TaskQueue: slackTaskQueue, DataConverter: dc}
			}
			app := slackApp("codecfig-" + mode)
			file := slackReleaseFile(t, e.lab, app, "CCODECFIG", []slackWave{
				{Name: "canary", Region: "us-east-1", KubeContext: "us-east-1"},
				{Name: "rest", Region: "eu-west-1", KubeContext: "eu-west-1"},
			})
			spec, err := release.Load(file)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < runs; i++ {
				version := fmt.Sprintf("%s-%d", slackVersion(), i)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				start := time.Now()
				res, err := ctl.Start(ctx, spec, version, control.StartOptions{StartedBy: "figures"})
				if err != nil {
					cancel()
					t.Fatal(err)
				}
				r, err := ctl.Result(ctx, res.ReleaseID)
				cancel()
				if err != nil || r.Phase != workflows.PhaseSucceeded {
					t.Fatalf("%s: %v %+v", res.ReleaseID, err, r)
				}
				wall[mode] = append(wall[mode], time.Since(start))
			}
		})
	}
	med := func(ds []time.Duration) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[len(s)/2]
	}
	p, e := med(wall["plain"]), med(wall["encrypted"])
	fmt.Printf("figure: codec overhead on a 2-region release's wall time (median of %d, cores %d): plain %s, encrypted %s, difference %s (%.1f%%)\n",
		runs, runtime.NumCPU(), p.Round(time.Millisecond), e.Round(time.Millisecond), (e - p).Round(time.Millisecond), 100*float64(e-p)/float64(p))
	fmt.Printf("figure: runs plain %v\nfigure: runs encrypted %v\n", wall["plain"], wall["encrypted"])
}
