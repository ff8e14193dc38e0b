package main

import (
	"testing"
	"time"

	"github.com/keelson-dev/keelson/release"
)

// TestFollowTheSunExample keeps infra/demo/train.yaml, the README's and
// docs/schedules.md's example, loading and meaning what they say: three
// waves of one region each, every region in its own zone, and a Monday
// 08:00 Dublin train that reaches each region when its business day starts.
func TestFollowTheSunExample(t *testing.T) {
	spec, err := release.Load("../infra/demo/train.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ wave, region, zone, opens string }{
		{"emea", "eu-west-1", "Europe/Dublin", "Mon 09:00"},
		{"americas", "us-east-1", "America/New_York", "Mon 09:00"},
		// 16:00 in Singapore when the train leaves: the window just closed.
		{"apac", "ap-southeast-1", "Asia/Singapore", "Tue 09:00"},
	}
	if len(spec.Waves) != len(want) {
		t.Fatalf("%d waves, want %d", len(spec.Waves), len(want))
	}
	dublin, _ := time.LoadLocation("Europe/Dublin")
	train := time.Date(2026, 11, 23, 8, 0, 0, 0, dublin) // a Monday
	for i, w := range want {
		if got := spec.Waves[i]; got.Name != w.wave || len(got.Regions) != 1 || got.Regions[0] != w.region {
			t.Errorf("wave %d: %+v, want %s with %s alone", i, got, w.wave, w.region)
		}
		p := spec.Policy(w.region)
		if p.TimeZone != w.zone {
			t.Errorf("%s: zone %q, want %q", w.region, p.TimeZone, w.zone)
		}
		// At the train's start every window is closed; each opens at
		// 09:00 in its own zone.
		d := p.At(train)
		loc, _ := time.LoadLocation(w.zone)
		if d.Open || d.Until.In(loc).Format("Mon 15:04") != w.opens {
			t.Errorf("%s at the train's start: open %v until %s, want closed until %s local", w.region, d.Open, d.Until.In(loc), w.opens)
		}
	}
}
