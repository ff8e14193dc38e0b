package release

import (
	"strings"
	"testing"
	"time"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// Business hours in Dublin open at 09:00 local time on both sides of a
// daylight-saving change: 09:00Z in winter (GMT), 08:00Z in summer (IST).
func TestWindowAcrossDaylightSaving(t *testing.T) {
	p := DeployPolicy{TimeZone: "Europe/Dublin", Windows: []Window{{Days: []string{"Mon-Thu"}, From: "09:00", To: "16:00"}}}
	cases := []struct {
		name     string
		at       string
		open     bool
		until    string
		whyWords string
	}{
		// Spring forward: Sunday 2027-03-28 01:00Z. Friday evening is closed
		// until Monday 09:00 IST, which is 08:00Z.
		{"spring: friday evening", "2027-03-26T17:00:00Z", false, "2027-03-29T08:00:00Z", "outside its deploy windows"},
		{"spring: monday 08:30Z is 09:30 IST", "2027-03-29T08:30:00Z", true, "2027-03-29T15:00:00Z", ""},
		// Fall back: Sunday 2026-10-25 01:00Z. Friday evening (IST) is closed
		// until Monday 09:00 GMT, which is 09:00Z.
		{"fall: friday evening", "2026-10-23T16:00:00Z", false, "2026-10-26T09:00:00Z", "outside its deploy windows"},
		{"fall: monday 08:30Z is 08:30 GMT", "2026-10-26T08:30:00Z", false, "2026-10-26T09:00:00Z", "outside"},
		{"thursday afternoon closes at 16:00", "2026-10-29T15:59:00Z", true, "2026-10-29T16:00:00Z", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := p.At(utc(tc.at))
			if d.Open != tc.open || !d.Until.Equal(utc(tc.until)) {
				t.Errorf("At(%s) = open %v until %s (%s), want open %v until %s", tc.at, d.Open, d.Until.UTC().Format(time.RFC3339), d.Why, tc.open, tc.until)
			}
			if tc.whyWords != "" && !contains(d.Why, tc.whyWords) {
				t.Errorf("why %q, want it to say %q", d.Why, tc.whyWords)
			}
		})
	}
}

// A freeze is a deny window: inside it the region waits for its end, or
// for the next window after it.
func TestFreezeHoldsInsideWindows(t *testing.T) {
	p := DeployPolicy{TimeZone: "Europe/Dublin",
		Windows: []Window{{Days: []string{"Mon-Fri"}, From: "09:00", To: "17:00"}},
		Freezes: []Freeze{{From: "2026-12-21 00:00", To: "2027-01-04 12:00", Reason: "year-end"}}}
	d := p.At(utc("2026-12-22T10:00:00Z"))
	if d.Open || !d.Until.Equal(utc("2027-01-04T12:00:00Z")) || !contains(d.Why, "freeze: year-end") {
		t.Errorf("in the freeze: %+v", d)
	}
	// Open before it, until it starts (Monday 00:00 is outside the window
	// anyway: Friday's window closes first).
	d = p.At(utc("2026-12-18T10:00:00Z"))
	if !d.Open || !d.Until.Equal(utc("2026-12-18T17:00:00Z")) {
		t.Errorf("before the freeze: %+v", d)
	}
	// No windows: only the freeze holds.
	q := DeployPolicy{Freezes: []Freeze{{From: "2026-12-21T00:00:00Z", To: "2026-12-22T00:00:00Z", Reason: "launch"}}}
	if d := q.At(utc("2026-12-20T12:00:00Z")); !d.Open || !d.Until.Equal(utc("2026-12-21T00:00:00Z")) {
		t.Errorf("open until the freeze: %+v", d)
	}
	if d := q.At(utc("2026-12-21T12:00:00Z")); d.Open || !d.Until.Equal(utc("2026-12-22T00:00:00Z")) {
		t.Errorf("frozen until its end: %+v", d)
	}
	if d := (DeployPolicy{}).At(utc("2026-12-21T12:00:00Z")); !d.Open || !d.Until.IsZero() {
		t.Errorf("no policy is always open: %+v", d)
	}
}

// A window crossing midnight belongs to the day it starts.
func TestWindowAcrossMidnight(t *testing.T) {
	p := DeployPolicy{Windows: []Window{{Days: []string{"Sat"}, From: "22:00", To: "02:00"}}}
	if d := p.At(utc("2026-11-29T01:00:00Z")); !d.Open || !d.Until.Equal(utc("2026-11-29T02:00:00Z")) {
		t.Errorf("Sunday 01:00 is in Saturday's window: %+v", d)
	}
	if d := p.At(utc("2026-11-28T21:00:00Z")); d.Open || !d.Until.Equal(utc("2026-11-28T22:00:00Z")) {
		t.Errorf("Saturday 21:00: %+v", d)
	}
}

func TestSpecPolicyRegionReplaces(t *testing.T) {
	s := &Spec{TimeZone: "UTC", Windows: []Window{{Days: []string{"Mon"}, From: "09:00", To: "10:00"}},
		Regions: []Region{{Name: "a"}, {Name: "b", TimeZone: "Asia/Singapore", Windows: []Window{{Days: []string{"Tue"}, From: "09:00", To: "10:00"}}}}}
	if p := s.Policy("a"); p.TimeZone != "UTC" || p.Windows[0].Days[0] != "Mon" {
		t.Errorf("a: %+v", p)
	}
	if p := s.Policy("b"); p.TimeZone != "Asia/Singapore" || p.Windows[0].Days[0] != "Tue" {
		t.Errorf("b: %+v", p)
	}
}

func contains(s, sub string) bool {
	return strings.Contains(s, sub)
}
