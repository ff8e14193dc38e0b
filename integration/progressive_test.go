package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwschemas "github.com/aws/aws-sdk-go-v2/service/cloudwatch/schemas"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/aws/smithy-go/transport/http/protocol/awsquery"
	"gopkg.in/yaml.v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson-dev/keelson/activities/traffic"
	"github.com/keelson-dev/keelson/internal/labtest"
	"github.com/keelson-dev/keelson/release"
	"github.com/keelson-dev/keelson/workflows"
)

// Progressive delivery on the lab (issue 8): canaries whose weights are
// read back from moto after each step, a bad version caught by a real
// Prometheus ratio of the traffic generator's samples, a CloudWatch alarm,
// blue-green, rolling. Each records the history of its path when
// KEELSON_RECORD_DIR is set (docs/versioning.md).

const labZone = "lab.keelson.test"

func motoEndpoint() string { return "http://127.0.0.1:" + envOr("KEELSON_MOTO_PORT", "5055") }

func promAddress() string { return "http://127.0.0.1:" + envOr("KEELSON_PROMETHEUS_PORT", "9390") }

// awsEnv points this process's AWS SDK at the lab's moto. It is set once
// for the whole process and never unset: every test talks to the same moto,
// and t.Setenv would keep the tests that call it from running in parallel.
func awsEnv(t *testing.T) {
	t.Helper()
	awsEnvOnce.Do(func() {
		for k, v := range map[string]string{
			"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
			"AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": motoEndpoint(),
		} {
			if err := os.Setenv(k, v); err != nil {
				t.Fatalf("set %s: %v", k, err)
			}
		}
	})
}

var awsEnvOnce sync.Once

// sideRecords creates app's stable and canary weighted records in region,
// named as the traffic generator expects (it then plays app's users), and
// returns the traffic section of the release file.
func sideRecords(t *testing.T, app, region string) map[string]any {
	t.Helper()
	zone := zoneID(t)
	name := fmt.Sprintf("%s.%s.%s", app, region, labZone)
	stable := release.WeightedRecord{SetIdentifier: "stable", Value: fmt.Sprintf("%s.%s.%s.%s", app, app, region, labZone)}
	canary := release.WeightedRecord{SetIdentifier: "canary", Value: fmt.Sprintf("%s-canary.%s.%s.%s", app, app, region, labZone)}
	labtest.Route53Weighted(t, motoEndpoint(), zone, name, "CNAME",
		map[string]release.WeightedRecord{"stable": stable, "canary": canary}, map[string]int{"stable": 100})
	return map[string]any{"route53": map[string]any{
		"hostedZone": labZone, "record": name,
		"stable": map[string]any{"setIdentifier": stable.SetIdentifier, "value": stable.Value},
		"canary": map[string]any{"setIdentifier": canary.SetIdentifier, "value": canary.Value},
	}}
}

// errorRatio is the demo's check: the canary's share of failed requests
// over the stable side's, from the traffic generator's counters.
func errorRatio(app string) map[string]any {
	sel := fmt.Sprintf(`application=%q,region="{{.Region}}",side="{{.Side}}"`, app)
	return map[string]any{
		"name": "error-ratio",
		"prometheus": map[string]any{"address": promAddress(),
			"query": fmt.Sprintf(`sum(rate(keelson_demo_requests_total{%s,code=~"5.."}[10s])) / sum(rate(keelson_demo_requests_total{%s}[10s]))`, sel, sel)},
		"compare": "ratio", "max": 2, "interval": "1s", "failureLimit": 2, "minSamples": 3, "noData": "inconclusive",
	}
}

// progressiveFile is a one-region (us-east-1) release of app with strategy
// and checks, no Terraform, and traffic when given.
func (l *lab) progressiveFile(t *testing.T, app string, strategy map[string]any, tr map[string]any, checks ...map[string]any) string {
	return l.releaseFile(t, app, func(doc map[string]any) {
		delete(doc, "terraform")
		doc["regions"] = []any{region(doc, "us-east-1")}
		doc["waves"] = []any{map[string]any{"name": "only", "regions": []any{"us-east-1"}, "bake": "2s"}}
		doc["health"] = []any{}
		doc["strategy"] = strategy
		if tr != nil {
			doc["traffic"] = tr
		}
		var cs []any
		for _, c := range checks {
			cs = append(cs, c)
		}
		if len(cs) > 0 {
			doc["analysis"] = cs
		}
	})
}

func canarySteps(checks ...string) map[string]any {
	var cs []any
	for _, c := range checks {
		cs = append(cs, c)
	}
	steps := []any{map[string]any{"setWeight": 10}, map[string]any{"pause": map[string]any{"duration": "5s"}}}
	if len(cs) > 0 {
		steps = append(steps, map[string]any{"analysis": map[string]any{"checks": cs, "duration": "5s"}})
	}
	steps = append(steps, map[string]any{"setWeight": 50}, map[string]any{"pause": map[string]any{"duration": "5s"}})
	if len(cs) > 0 {
		steps = append(steps, map[string]any{"analysis": map[string]any{"checks": cs, "duration": "5s"}})
	}
	steps = append(steps, map[string]any{"setWeight": 100})
	return map[string]any{"canary": map[string]any{"values": map[string]any{"replicas": 1}, "steps": steps}}
}

// watchWeights follows a release's region until it finishes, and each time
// the region reports new weights, reads them back from the provider; it
// returns the canary weights seen, in order.
func (l *lab) watchWeights(t *testing.T, id, regionName string, target traffic.Target) ([]int, *workflows.ReleaseResult) {
	t.Helper()
	awsEnv(t)
	ta, err := traffic.New(context.Background(), traffic.Config{Endpoint: motoEndpoint()})
	if err != nil {
		t.Fatal(err)
	}
	var seen []int
	last := ""
	deadline := time.Now().Add(4 * time.Minute)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := l.ctl.Status(ctx, id)
		cancel()
		if err == nil {
			for _, w := range st.Waves {
				for _, r := range w.Regions {
					if r.Region != regionName || r.Traffic == nil || workflows.Weights(r.Traffic) == last {
						continue
					}
					last = workflows.Weights(r.Traffic)
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					got, err := ta.GetWeights(ctx, target)
					cancel()
					if err != nil {
						t.Fatalf("read weights back: %v", err)
					}
					if got["canary"] != r.Traffic["canary"] || got["stable"] != r.Traffic["stable"] {
						t.Errorf("release reports %s, the provider holds %v", last, got)
					}
					seen = append(seen, got["canary"])
				}
			}
			if st.Phase.Done() {
				return seen, l.result(t, id, time.Minute)
			}
		}
		time.Sleep(150 * time.Millisecond)
	}
	t.Fatalf("release %s did not finish", id)
	return nil, nil
}

func TestCanaryRoute53CatchesABadVersion(t *testing.T) {
	t.Parallel() // waits on applications of its own (see TestMain)
	l := newLab(t)
	app := l.appName(t, "canary-r53")
	tr := sideRecords(t, app, "us-east-1")
	file := l.progressiveFile(t, app, canarySteps("error-ratio"), tr, errorRatio(app))
	target := traffic.Target{AWSRegion: "us-east-1", Route53: &traffic.Route53Target{HostedZone: labZone,
		Name: tr["route53"].(map[string]any)["record"].(string), Records: map[string]release.WeightedRecord{
			"stable": {SetIdentifier: "stable"}, "canary": {SetIdentifier: "canary"}}}}

	// The first install has no stable side: it goes all at once.
	first := l.succeed(t, file, "1.0.0")
	res := l.result(t, first, time.Minute)
	if res.Regions[0].Strategy != "canary (first install: all at once)" {
		t.Errorf("first install strategy %q", res.Regions[0].Strategy)
	}

	// A good version: 10, 50, 100, then all traffic back on the stable
	// side once it runs the new version.
	id := l.start(t, file, "1.1.0")
	seen, res := l.watchWeights(t, id, "us-east-1", target)
	if res.Phase != workflows.PhaseSucceeded {
		t.Fatalf("canary 1.1.0: %s", writeJSON(res))
	}
	if fmt.Sprint(seen) != "[10 50 100 0]" {
		t.Errorf("canary weights read back from Route 53 (moto): %v, want [10 50 100 0]", seen)
	}
	if got := l.deployedVersion(t, "us-east-1", app); got != "1.1.0" {
		t.Errorf("stable release at %s after promotion", got)
	}
	hist := l.helmHistory(t, "us-east-1", app)
	if len(hist) != 2 {
		t.Errorf("the stable release's history has %d revisions, want one per version: %s", len(hist), writeJSON(hist))
	}
	if out := l.helmCLI(t, "us-east-1", "-n", app, "status", app+workflows.SideSuffix); !strings.Contains(out, "STATUS: uninstalled") {
		t.Errorf("the canary side is not uninstalled after promotion:\n%s", out)
	}
	for _, a := range res.Regions[0].Analysis {
		if a.Verdict != "passed" || a.Samples < 3 {
			t.Errorf("analysis %s: %s with %d samples", a.Step, a.Verdict, a.Samples)
		}
	}
	l.record(t, id, "canary-route53-promoted")
	l.record(t, workflows.RegionID(id, "us-east-1"), "region-canary-route53-promoted")

	// A bad version: caught at 10% by the Prometheus ratio of the canary's
	// errors to the stable side's; traffic back to stable, then the side
	// removed, automatically, with the deciding samples in the result.
	bad := l.start(t, file, "1.2.0-errors")
	seen, res = l.watchWeights(t, bad, "us-east-1", target)
	if res.Phase != workflows.PhaseRolledBack {
		t.Fatalf("bad canary ended %s: %s", res.Phase, writeJSON(res))
	}
	if fmt.Sprint(seen) != "[10 0]" {
		t.Errorf("weights of the bad canary: %v, want [10 0] (caught at the 10%% step)", seen)
	}
	rr := res.Regions[0]
	if rr.AutoRollback == nil || rr.AutoRollback.TrafficAt.IsZero() || rr.AutoRollback.HelmAt.IsZero() {
		t.Fatalf("no automatic rollback recorded: %s", writeJSON(rr))
	}
	if len(rr.Analysis) == 0 || rr.Analysis[len(rr.Analysis)-1].Verdict != "failed" || len(rr.Analysis[len(rr.Analysis)-1].Deciding) == 0 {
		t.Errorf("the failed analysis and its deciding samples are not in the result: %s", writeJSON(rr.Analysis))
	}
	if !strings.Contains(res.Reason, "error-ratio") {
		t.Errorf("reason %q does not name the check", res.Reason)
	}
	if got := l.deployedVersion(t, "us-east-1", app); got != "1.1.0" {
		t.Errorf("stable release at %s after the bad canary, want 1.1.0", got)
	}
	if s := lastRevision(t, l.helmHistory(t, "us-east-1", app)); s.Revision != 2 {
		t.Errorf("stable release at revision %d, want 2 (never touched)", s.Revision)
	}
	if out := l.helmCLI(t, "us-east-1", "-n", app, "status", app+workflows.SideSuffix); !strings.Contains(out, "STATUS: uninstalled") {
		t.Errorf("the bad canary's side is not uninstalled:\n%s", out)
	}
	ar := rr.AutoRollback
	t.Logf("ROLLBACK deciding sample -> traffic on stable %s, -> side removed (Helm) %s",
		ar.TrafficAt.Sub(ar.DecidedAt).Round(time.Millisecond), ar.HelmAt.Sub(ar.DecidedAt).Round(time.Millisecond))
	l.record(t, bad, "canary-route53-analysis-failed")
	l.record(t, workflows.RegionID(bad, "us-east-1"), "region-canary-route53-analysis-failed")
}

func TestCanaryELBv2Weights(t *testing.T) {
	l := newLab(t)
	awsEnv(t)
	app := l.appName(t, "canary-elb")
	listener, _, groups := labtest.ELBv2Listener(t, motoEndpoint())
	tr := map[string]any{"elbv2": map[string]any{"listenerArn": listener,
		"stableTargetGroupArn": groups["stable"], "canaryTargetGroupArn": groups["canary"]}}
	file := l.progressiveFile(t, app, canarySteps(), tr)
	l.succeed(t, file, "1.0.0")
	id := l.start(t, file, "1.1.0")
	target := traffic.Target{AWSRegion: "us-east-1", ELBv2: &traffic.ELBv2Target{ListenerARN: listener, TargetGroups: groups}}
	seen, res := l.watchWeights(t, id, "us-east-1", target)
	if res.Phase != workflows.PhaseSucceeded {
		t.Fatalf("canary: %s", writeJSON(res))
	}
	if fmt.Sprint(seen) != "[10 50 100 0]" {
		t.Errorf("canary weights read back from the ELBv2 listener (moto): %v, want [10 50 100 0]", seen)
	}
	l.record(t, id, "canary-elbv2-promoted")
	l.record(t, workflows.RegionID(id, "us-east-1"), "region-canary-elbv2-promoted")
}

func TestCloudWatchAlarmFailsTheCanary(t *testing.T) {
	l := newLab(t)
	awsEnv(t)
	app := l.appName(t, "canary-cw")
	tr := sideRecords(t, app, "us-east-1")
	alarm := app + "-errors"
	// moto speaks CloudWatch's query protocol, not the client's default CBOR.
	cw := cloudwatch.NewFromConfig(labtest.MotoConfig(motoEndpoint()), func(o *cloudwatch.Options) {
		o.Protocol = awsquery.New(cwschemas.GraniteServiceVersion20100801)
	})
	ctx := context.Background()
	if _, err := cw.PutMetricAlarm(ctx, &cloudwatch.PutMetricAlarmInput{
		AlarmName: aws.String(alarm), Namespace: aws.String("Keelson/Test"), MetricName: aws.String("Errors"),
		Statistic: cwtypes.StatisticSum, Period: aws.Int32(10), EvaluationPeriods: aws.Int32(1), Threshold: aws.Float64(5),
		ComparisonOperator: cwtypes.ComparisonOperatorGreaterThanThreshold,
	}); err != nil {
		t.Fatalf("create alarm: %v", err)
	}
	setAlarm := func(state cwtypes.StateValue) {
		if _, err := cw.SetAlarmState(ctx, &cloudwatch.SetAlarmStateInput{AlarmName: aws.String(alarm), StateValue: state, StateReason: aws.String("test")}); err != nil {
			t.Fatalf("set alarm %s: %v", state, err)
		}
	}
	setAlarm(cwtypes.StateValueOk)
	check := map[string]any{"name": "alarm", "cloudwatch": map[string]any{"alarm": alarm}, "interval": "1s", "noData": "fail"}
	strategy := map[string]any{"canary": map[string]any{"steps": []any{
		map[string]any{"setWeight": 10},
		map[string]any{"analysis": map[string]any{"checks": []any{"alarm"}, "duration": "40s"}},
		map[string]any{"setWeight": 100},
	}}}
	file := l.progressiveFile(t, app, strategy, tr, check)
	l.succeed(t, file, "1.0.0")
	id := l.start(t, file, "1.1.0")
	waitUntil(t, 2*time.Minute, 200*time.Millisecond, "the canary's analysis", func() bool {
		st, err := l.ctl.Status(context.Background(), id)
		return err == nil && strings.Contains(st.Waves[0].Regions[0].Step, "analysis")
	})
	time.Sleep(3 * time.Second)
	setAlarm(cwtypes.StateValueAlarm)
	res := l.result(t, id, 2*time.Minute)
	if res.Phase != workflows.PhaseRolledBack || !strings.Contains(res.Reason, "ALARM") {
		t.Fatalf("an alarm in ALARM did not fail the canary: %s", writeJSON(res))
	}
	if got := l.deployedVersion(t, "us-east-1", app); got != "1.0.0" {
		t.Errorf("stable at %s, want 1.0.0", got)
	}
}

func TestBlueGreenSwitchesAtOnceAndBack(t *testing.T) {
	l := newLab(t)
	app := l.appName(t, "bluegreen")
	tr := sideRecords(t, app, "us-east-1")
	// The preview's share of failed requests after the switch; no requests
	// counted yet (0/0) is no errors: the check passes on no data, and a
	// version that fails half its requests is caught all the same.
	sel := fmt.Sprintf(`application=%q,region="{{.Region}}",side="canary"`, app)
	check := map[string]any{"name": "preview-errors", "prometheus": map[string]any{"address": promAddress(),
		"query": fmt.Sprintf(`sum(rate(keelson_demo_requests_total{%s,code=~"5.."}[10s])) / sum(rate(keelson_demo_requests_total{%s}[10s]))`, sel, sel)},
		"max": 0.1, "interval": "1s", "failureLimit": 3, "minSamples": 3, "noData": "pass"}
	strategy := map[string]any{"blueGreen": map[string]any{
		"postPromotionAnalysis": map[string]any{"checks": []any{"preview-errors"}, "duration": "8s"},
		"scaleDownDelay":        "10s",
	}}
	file := l.progressiveFile(t, app, strategy, tr, check)
	target := traffic.Target{AWSRegion: "us-east-1", Route53: &traffic.Route53Target{HostedZone: labZone,
		Name: tr["route53"].(map[string]any)["record"].(string), Records: map[string]release.WeightedRecord{
			"stable": {SetIdentifier: "stable"}, "canary": {SetIdentifier: "canary"}}}}
	l.succeed(t, file, "1.0.0")

	id := l.start(t, file, "1.1.0")
	seen, res := l.watchWeights(t, id, "us-east-1", target)
	if res.Phase != workflows.PhaseSucceeded {
		t.Fatalf("blue-green 1.1.0: %s", writeJSON(res))
	}
	if fmt.Sprint(seen) != "[100 0]" {
		t.Errorf("blue-green weights %v, want [100 0]: one switch of all traffic, then back to the promoted stable release", seen)
	}
	l.record(t, id, "bluegreen-promoted")
	l.record(t, workflows.RegionID(id, "us-east-1"), "region-bluegreen-promoted")

	bad := l.start(t, file, "1.2.0-errors")
	seen, res = l.watchWeights(t, bad, "us-east-1", target)
	if res.Phase != workflows.PhaseRolledBack {
		t.Fatalf("bad blue-green ended %s: %s", res.Phase, writeJSON(res))
	}
	if fmt.Sprint(seen) != "[100 0]" {
		t.Errorf("bad blue-green weights %v, want [100 0]: the switch, then the switch back", seen)
	}
	if got := l.deployedVersion(t, "us-east-1", app); got != "1.1.0" {
		t.Errorf("stable at %s after the switch back, want 1.1.0", got)
	}
	l.record(t, bad, "bluegreen-switched-back")
	l.record(t, workflows.RegionID(bad, "us-east-1"), "region-bluegreen-switched-back")
}

func TestRollingRespectsBatchAndSurge(t *testing.T) {
	l := newLab(t)
	app := l.appName(t, "rolling")
	strategy := map[string]any{"rolling": map[string]any{"maxSurge": 2, "maxUnavailable": 0, "batchPause": "2s"}}
	file := l.progressiveFile(t, app, strategy, nil)
	// Six replicas, replaced two at a time, never more than eight pods.
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(strings.Replace(string(raw), "replicas: 1", "replicas: 6", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	l.succeed(t, file, "1.0.0")

	id := l.start(t, file, "1.1.0")
	maxPods, maxNew := 0, 0
	var growth []int
	kube := l.kube["us-east-1"]
	for {
		rs, err := kube.AppsV1().ReplicaSets(app).List(context.Background(), metav1.ListOptions{})
		if err == nil {
			total, newPods := 0, 0
			for _, r := range rs.Items {
				total += int(r.Status.Replicas)
				if r.Spec.Template.Labels["app.kubernetes.io/version"] == "1.1.0" {
					newPods = int(r.Status.Replicas)
				}
			}
			maxPods = max(maxPods, total)
			if newPods > maxNew {
				growth = append(growth, newPods-maxNew)
				maxNew = newPods
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := l.ctl.Status(ctx, id)
		cancel()
		if err == nil && st.Phase.Done() {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	res := l.result(t, id, time.Minute)
	if res.Phase != workflows.PhaseSucceeded {
		t.Fatalf("rolling: %s", writeJSON(res))
	}
	t.Logf("rolling: at most %d pods at once, new pods grew by %v", maxPods, growth)
	if maxPods > 8 {
		t.Errorf("%d pods at once, more than 6 replicas + maxSurge 2", maxPods)
	}
	if maxNew != 6 {
		t.Errorf("%d pods of the new version at the end, want 6", maxNew)
	}
	if len(growth) < 3 {
		t.Errorf("the new version grew in %d steps (%v): not in batches of 2", len(growth), growth)
	}
	for _, g := range growth {
		if g > 2 {
			t.Errorf("the new version grew by %d pods at once (%v), more than the batch of 2", g, growth)
		}
	}
	if res.Regions[0].Strategy != "rolling" {
		t.Errorf("strategy %q", res.Regions[0].Strategy)
	}
	l.record(t, id, "rolling")
	l.record(t, workflows.RegionID(id, "us-east-1"), "region-rolling")
}

// TestProgressiveWaitsForAPerson: a canary pause without a duration holds
// until `keelson promote`; an analysis with no data under the inconclusive
// rule pauses the region until `keelson resume` accepts it; blue-green with
// manualPromotion holds its switch until `keelson promote`. Each waiting
// point is read from status before the person acts.
func TestProgressiveWaitsForAPerson(t *testing.T) {
	l := newLab(t)
	app := l.appName(t, "person")
	tr := sideRecords(t, app, "us-east-1")
	// A query with no series: no data on every sample.
	nothing := map[string]any{"name": "nothing", "prometheus": map[string]any{"address": promAddress(),
		"query": fmt.Sprintf(`sum(rate(keelson_demo_requests_total{application=%q,region="nowhere"}[10s]))`, app)},
		"max": 1, "interval": "1s", "minSamples": 2, "noData": "inconclusive"}
	canary := map[string]any{"canary": map[string]any{"values": map[string]any{"replicas": 1}, "steps": []any{
		map[string]any{"setWeight": 10},
		map[string]any{"pause": map[string]any{}},
		map[string]any{"analysis": map[string]any{"checks": []any{"nothing"}, "duration": "3s"}},
		map[string]any{"setWeight": 100},
	}}}
	file := l.progressiveFile(t, app, canary, tr, nothing)
	l.succeed(t, file, "1.0.0")
	l.record(t, workflows.ReleaseID(app, "1.0.0"), "canary-first-install")
	l.record(t, workflows.RegionID(workflows.ReleaseID(app, "1.0.0"), "us-east-1"), "region-canary-first-install")

	id := l.start(t, file, "1.1.0")
	regionStep := func(want string) {
		t.Helper()
		waitUntil(t, 2*time.Minute, time.Second, "region step "+want, func() bool {
			st, err := l.ctl.Status(context.Background(), id)
			return err == nil && len(st.Waves[0].Regions) == 1 && strings.Contains(st.Waves[0].Regions[0].Step, want)
		})
	}
	regionStep("keelson promote to go on")
	if out, code := l.keelson(t, "promote", id, "--user", "erin"); code != 0 {
		t.Fatalf("promote: %s", out)
	}
	regionStep("inconclusive")
	if out, code := l.keelson(t, "resume", id, "--user", "erin", "--reason", "no series in the lab"); code != 0 {
		t.Fatalf("resume: %s", out)
	}
	res := l.result(t, id, 3*time.Minute)
	if res.Phase != workflows.PhaseSucceeded {
		t.Fatalf("canary 1.1.0: %s", writeJSON(res))
	}
	an := res.Regions[0].Analysis
	if len(an) != 1 || an[0].Verdict != "inconclusive" || !an[0].Accepted {
		t.Errorf("the inconclusive analysis accepted by a person is not in the result: %s", writeJSON(an))
	}
	if got := l.deployedVersion(t, "us-east-1", app); got != "1.1.0" {
		t.Errorf("stable at %s, want 1.1.0", got)
	}
	l.record(t, id, "canary-promoted-and-resumed")
	l.record(t, workflows.RegionID(id, "us-east-1"), "region-canary-promoted-and-resumed")

	// Blue-green held for a person: the preview runs beside the stable
	// side with no traffic until promote switches it all at once.
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	doc["strategy"] = map[string]any{"blueGreen": map[string]any{"manualPromotion": true, "scaleDownDelay": "3s"}}
	delete(doc, "analysis")
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	bg := filepath.Join(t.TempDir(), app+"-bluegreen.yaml")
	if err := os.WriteFile(bg, out, 0o644); err != nil {
		t.Fatal(err)
	}
	id = l.start(t, bg, "1.2.0")
	regionStep("preview: waiting for promote (keelson promote to go on)")
	st, err := l.ctl.Status(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if w := st.Waves[0].Regions[0].Traffic; w["canary"] != 0 {
		t.Errorf("the preview has traffic before its promotion: %v", w)
	}
	if out, code := l.keelson(t, "promote", id, "--user", "erin"); code != 0 {
		t.Fatalf("promote blue-green: %s", out)
	}
	if res := l.result(t, id, 3*time.Minute); res.Phase != workflows.PhaseSucceeded {
		t.Fatalf("blue-green 1.2.0: %s", writeJSON(res))
	}
	l.record(t, id, "bluegreen-manual-promotion")
	l.record(t, workflows.RegionID(id, "us-east-1"), "region-bluegreen-manual-promotion")
}
