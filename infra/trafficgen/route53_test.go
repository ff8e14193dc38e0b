package main

import (
	"reflect"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"
)

const zone = "lab.keelson.test"

func TestParseRecordName(t *testing.T) {
	for _, tc := range []struct {
		name        string
		app, region string
		ok          bool
	}{
		{"demo.us-east-1.lab.keelson.test.", "demo", "us-east-1", true},
		{"demo.us-east-1.lab.keelson.test", "demo", "us-east-1", true},
		{"shop-api.eu-west-1.lab.keelson.test.", "shop-api", "eu-west-1", true},
		{"demo.lab.keelson.test.", "", "", false},              // the failover name
		{"x.demo.us-east-1.lab.keelson.test.", "", "", false},  // too deep
		{"demo.us-east-1.other.test.", "", "", false},          // another zone
		{"demo.us-east-1.notlab.keelson.test.", "", "", false}, // a suffix, not the zone
		{"lab.keelson.test.", "", "", false},
	} {
		app, region, ok := parseRecordName(tc.name, zone)
		if app != tc.app || region != tc.region || ok != tc.ok {
			t.Errorf("parseRecordName(%q) = %q, %q, %v; want %q, %q, %v", tc.name, app, region, ok, tc.app, tc.region, tc.ok)
		}
	}
}

func TestParseSideValue(t *testing.T) {
	for value, want := range map[string]Side{
		"demo-canary.demo.us-east-1.lab.keelson.test":  {Value: "demo-canary.demo.us-east-1.lab.keelson.test", Release: "demo-canary", Namespace: "demo"},
		"demo.demo.eu-west-1.lab.keelson.test.":        {Value: "demo.demo.eu-west-1.lab.keelson.test", Release: "demo", Namespace: "demo"},
		"shop-preview.shop-ns.ap-southeast-1.example.": {Value: "shop-preview.shop-ns.ap-southeast-1.example", Release: "shop-preview", Namespace: "shop-ns"},
	} {
		got, ok := parseSideValue(value)
		if !ok || got != want {
			t.Errorf("parseSideValue(%q) = %+v, %v; want %+v", value, got, ok, want)
		}
	}
	for _, value := range []string{"", "localhost", ".demo.x", "demo..x"} {
		if got, ok := parseSideValue(value); ok {
			t.Errorf("parseSideValue(%q) = %+v, want not ok", value, got)
		}
	}
}

func weighted(name, id string, weight int64, value string) types.ResourceRecordSet {
	return types.ResourceRecordSet{
		Name: aws.String(name), Type: types.RRTypeCname, TTL: aws.Int64(30),
		SetIdentifier: aws.String(id), Weight: aws.Int64(weight),
		ResourceRecords: []types.ResourceRecord{{Value: aws.String(value)}},
	}
}

func TestTargetsFromRecords(t *testing.T) {
	sets := []types.ResourceRecordSet{
		{Name: aws.String("lab.keelson.test."), Type: types.RRTypeSoa, ResourceRecords: []types.ResourceRecord{{Value: aws.String("ns. hostmaster. 1 7200 900 1209600 86400")}}},
		weighted("demo.us-east-1.lab.keelson.test.", "canary", 20, "demo-canary.demo.us-east-1.lab.keelson.test"),
		weighted("demo.us-east-1.lab.keelson.test.", "stable", 80, "demo.demo.us-east-1.lab.keelson.test"),
		weighted("demo.eu-west-1.lab.keelson.test.", "stable", 100, "demo.demo.eu-west-1.lab.keelson.test"),
		weighted("demo.eu-west-1.lab.keelson.test.", "canary", 0, "demo-canary.demo.eu-west-1.lab.keelson.test"),
		// The failover name: its set identifiers are regions.
		weighted("demo.lab.keelson.test.", "us-east-1", 100, "demo.us-east-1.lab.keelson.test"),
		weighted("demo.lab.keelson.test.", "eu-west-1", 100, "demo.eu-west-1.lab.keelson.test"),
		// A name with a stable side only is no target.
		weighted("lonely.us-east-1.lab.keelson.test.", "stable", 100, "lonely.ns.us-east-1.lab.keelson.test"),
		// Another application a test created.
		weighted("itest-7.ap-southeast-1.lab.keelson.test.", "stable", 50, "itest-7.itest-ns.ap-southeast-1.lab.keelson.test"),
		weighted("itest-7.ap-southeast-1.lab.keelson.test.", "canary", 50, "itest-7-canary.itest-ns.ap-southeast-1.lab.keelson.test"),
	}
	got := targetsFromRecords(zone, sets)
	side := func(name string, weight int64, release, ns, value string) Side {
		return Side{Name: name, Weight: weight, Value: value, Release: release, Namespace: ns}
	}
	want := []Target{
		{Application: "demo", Region: "eu-west-1",
			Stable: side("stable", 100, "demo", "demo", "demo.demo.eu-west-1.lab.keelson.test"),
			Canary: side("canary", 0, "demo-canary", "demo", "demo-canary.demo.eu-west-1.lab.keelson.test")},
		{Application: "demo", Region: "us-east-1",
			Stable: side("stable", 80, "demo", "demo", "demo.demo.us-east-1.lab.keelson.test"),
			Canary: side("canary", 20, "demo-canary", "demo", "demo-canary.demo.us-east-1.lab.keelson.test")},
		{Application: "itest-7", Region: "ap-southeast-1",
			Stable: side("stable", 50, "itest-7", "itest-ns", "itest-7.itest-ns.ap-southeast-1.lab.keelson.test"),
			Canary: side("canary", 50, "itest-7-canary", "itest-ns", "itest-7-canary.itest-ns.ap-southeast-1.lab.keelson.test")},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("targetsFromRecords:\n got %+v\nwant %+v", got, want)
	}
}

// The records setup writes are the ones discovery reads back as targets.
func TestSetupRecordsAreDiscovered(t *testing.T) {
	regions := []string{"ap-southeast-1", "eu-west-1", "us-east-1"}
	got := targetsFromRecords(zone, wantedRecords(zone, []string{"demo"}, "demo", regions))
	if len(got) != 3 {
		t.Fatalf("got %d targets, want 3: %+v", len(got), got)
	}
	for i, tg := range got {
		if tg.Application != "demo" || tg.Region != regions[i] ||
			tg.Stable.Weight != 100 || tg.Stable.Release != "demo" || tg.Stable.Namespace != "demo" ||
			tg.Canary.Weight != 0 || tg.Canary.Release != "demo-canary" || tg.Canary.Namespace != "demo" {
			t.Errorf("target %d: %+v", i, tg)
		}
	}
}
