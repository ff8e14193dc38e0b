package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"

	"github.com/keelson-dev/keelson/activities/traffic"
	"github.com/keelson-dev/keelson/internal/labtest"
	"github.com/keelson-dev/keelson/release"
	"github.com/keelson-dev/keelson/workflows"
)

// TestFailoverMovesAShareAndRestoreBringsItBack: us-east-1 finishes a
// version that fails half its requests (all at once, so nothing judged it
// on the way in); while eu-west-1 bakes, the failover check (the stable
// side's error rate, from the lab's Prometheus) fails, us-east-1's weight
// in the application's failover name goes to 0 in Route 53 (moto), the
// line stops and the release rolls back, the last wave first. The weight
// stays at 0 until `keelson traffic restore`.
func TestFailoverMovesAShareAndRestoreBringsItBack(t *testing.T) {
	t.Parallel() // waits on applications of its own (see TestMain)
	l := newLab(t)
	app := l.appName(t, "failover")
	regions := []string{"us-east-1", "eu-west-1"}
	for _, r := range regions {
		sideRecords(t, app, r) // the traffic generator plays users of both regions
	}
	name := fmt.Sprintf("%s.%s", app, labZone)
	records := map[string]release.WeightedRecord{}
	var frs []any
	for _, r := range regions {
		rec := release.WeightedRecord{SetIdentifier: r, Value: fmt.Sprintf("%s.%s.%s", app, r, labZone)}
		records[r] = rec
		frs = append(frs, map[string]any{"region": r, "setIdentifier": rec.SetIdentifier, "value": rec.Value, "weight": 100})
	}
	labtest.Route53Weighted(t, motoEndpoint(), zoneID(t), name, "CNAME", records, map[string]int{"us-east-1": 100, "eu-west-1": 100})

	sel := fmt.Sprintf(`application=%q,region="{{.Region}}",side="{{.Side}}"`, app)
	// fileBaking is the release file with the second wave baking bake: the
	// bad version's bake is long, so that only a failover ends it early.
	fileBaking := func(bake string) string {
		return l.releaseFile(t, app, func(doc map[string]any) {
			delete(doc, "terraform")
			doc["regions"] = []any{region(doc, "us-east-1"), region(doc, "eu-west-1")}
			doc["waves"] = []any{
				// The first region bakes longer than the check's 10s rate
				// window, so that the failover watch's first sample already
				// covers a whole window of the version it installed (the
				// traffic generator sends nothing to a side before it is
				// deployed).
				map[string]any{"name": "first", "regions": []any{"us-east-1"}, "bake": "15s"},
				map[string]any{"name": "second", "regions": []any{"eu-west-1"}, "bake": bake},
			}
			doc["health"] = []any{}
			doc["analysis"] = []any{map[string]any{
				"name": "error-rate",
				"prometheus": map[string]any{"address": promAddress(),
					"query": fmt.Sprintf(`sum(rate(keelson_demo_requests_total{%s,code=~"5.."}[10s])) / sum(rate(keelson_demo_requests_total{%s}[10s]))`, sel, sel)},
				"max": 0.1, "interval": "1s", "failureLimit": 2, "minSamples": 3, "noData": "pass",
			}}
			doc["failover"] = map[string]any{"hostedZone": labZone, "record": name, "check": "error-rate", "regions": frs}
		})
	}
	target := traffic.Target{AWSRegion: "us-east-1", Route53: &traffic.Route53Target{HostedZone: labZone, Name: name, Records: records}}
	weights := func() traffic.Weights {
		t.Helper()
		awsEnv(t)
		ta, err := traffic.New(context.Background(), traffic.Config{Endpoint: motoEndpoint()})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		w, err := ta.GetWeights(ctx, target)
		if err != nil {
			t.Fatalf("read the failover name's weights from moto: %v", err)
		}
		return w
	}

	// A healthy version: watched while the second wave bakes (30 checks of
	// a 1s interval, three times the rate window), never moved.
	first := l.start(t, fileBaking("30s"), "1.0.0")
	if res := l.result(t, first, 6*time.Minute); res.Phase != workflows.PhaseSucceeded || len(res.Failovers) != 0 {
		t.Fatalf("healthy release: %s", writeJSON(res))
	}
	if w := weights(); w["us-east-1"] != 100 || w["eu-west-1"] != 100 {
		t.Fatalf("weights after a healthy release: %v", w)
	}

	// A version that fails half its requests, caught after it finished.
	file := fileBaking("3m")
	bad := l.start(t, file, "1.1.0-errors")
	res := l.result(t, bad, 6*time.Minute)
	if res.Phase != workflows.PhaseRolledBack || len(res.Failovers) != 1 {
		t.Fatalf("bad release ended %s with %d failovers: %s", res.Phase, len(res.Failovers), writeJSON(res))
	}
	fo := res.Failovers[0]
	if fo.Region != "us-east-1" || fo.Error != "" || fo.After["us-east-1"] != 0 || fo.After["eu-west-1"] != 100 || len(fo.Deciding) == 0 {
		t.Errorf("failover record: %s", writeJSON(fo))
	}
	if !strings.Contains(res.Reason, "failover: region us-east-1 failed check error-rate") {
		t.Errorf("reason %q", res.Reason)
	}
	if d := res.Duration(); d > 150*time.Second {
		t.Errorf("the release ran %s: the line did not stop during the second wave's 3m bake", d)
	}
	t.Logf("failover: deciding sample to weights read back %s", fo.TrafficAt.Sub(fo.DecidedAt).Round(time.Millisecond))
	if w := weights(); w["us-east-1"] != 0 || w["eu-west-1"] != 100 {
		t.Errorf("weights in moto after the failover: %v, want us-east-1=0 eu-west-1=100", w)
	}
	for _, r := range res.Regions {
		if r.Phase != workflows.PhaseRolledBack {
			t.Errorf("region %s ended %s, want rolled back", r.Region, r.Phase)
		}
		if got := l.deployedVersion(t, r.Region, app); got != "1.0.0" {
			t.Errorf("%s runs %s after the rollback, want 1.0.0", r.Region, got)
		}
	}
	l.record(t, bad, "failover-rolled-back")
	l.record(t, workflows.RegionID(bad, "us-east-1"), "region-failover-rolled-back-us-east-1")
	l.record(t, workflows.RegionID(bad, "eu-west-1"), "region-failover-rolled-back-eu-west-1")

	// Nothing gives the share back by itself; a person does.
	time.Sleep(2 * time.Second)
	if w := weights(); w["us-east-1"] != 0 {
		t.Fatalf("us-east-1's share came back without a person: %v", w)
	}
	out, code := l.keelson(t, "traffic", "restore", "us-east-1", "--app", app, "--reason", "bad version rolled back", "--user", "erin")
	if code != 0 || !strings.Contains(out, "restored us-east-1's share after the failover of "+bad) {
		t.Fatalf("traffic restore: exit %d\n%s", code, out)
	}
	if w := weights(); w["us-east-1"] != 100 || w["eu-west-1"] != 100 {
		t.Errorf("weights after traffic restore: %v", w)
	}
	out, code = l.keelson(t, "traffic", "restore", "us-east-1", "--release", bad, "--reason", "again", "--user", "erin")
	if code != 0 || !strings.Contains(out, "already restored after "+bad+" by erin") {
		t.Errorf("second restore: exit %d\n%s", code, out)
	}
	out, code = l.keelson(t, "traffic", "restore", "eu-west-1", "--release", bad, "--reason", "x", "--user", "erin")
	if code == 0 || !strings.Contains(out, "did not fail eu-west-1 over") {
		t.Errorf("restore of a region that was not failed over: exit %d\n%s", code, out)
	}
	l.record(t, workflows.TrafficRestoreID(bad, "us-east-1"), "traffic-restore")
}

// zoneID is the lab zone's id in moto.
func zoneID(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := route53.NewFromConfig(labtest.MotoConfig(motoEndpoint())).ListHostedZonesByName(ctx, &route53.ListHostedZonesByNameInput{DNSName: aws.String(labZone)})
	if err != nil || len(out.HostedZones) == 0 {
		t.Fatalf("the lab's zone %s is not in moto (make up creates it): %v", labZone, err)
	}
	return strings.TrimPrefix(aws.ToString(out.HostedZones[0].Id), "/hostedzone/")
}
