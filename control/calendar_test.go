package control

import (
	"reflect"
	"strings"
	"testing"

	"go.temporal.io/sdk/client"
)

func TestParseCalendar(t *testing.T) {
	rng := func(a, b, s int) client.ScheduleRange { return client.ScheduleRange{Start: a, End: b, Step: s} }
	cases := []struct {
		in   string
		want client.ScheduleCalendarSpec
		back string
	}{
		{"dayOfWeek=MON-THU hour=9 minute=30", client.ScheduleCalendarSpec{
			DayOfWeek: []client.ScheduleRange{rng(1, 4, 0)}, Hour: []client.ScheduleRange{rng(9, 9, 0)}, Minute: []client.ScheduleRange{rng(30, 30, 0)},
		}, "minute=30 hour=9 dayOfWeek=MON-THU"},
		{"dayofmonth=1,15;hour=6;comment=\"pay day\"", client.ScheduleCalendarSpec{
			DayOfMonth: []client.ScheduleRange{rng(1, 1, 0), rng(15, 15, 0)}, Hour: []client.ScheduleRange{rng(6, 6, 0)}, Comment: "pay day",
		}, "hour=6 dayOfMonth=1,15 comment=\"pay day\""},
		{"minute=*/15 month=jan-mar,DEC", client.ScheduleCalendarSpec{
			Minute: []client.ScheduleRange{rng(0, 59, 15)}, Month: []client.ScheduleRange{rng(1, 3, 0), rng(12, 12, 0)},
		}, "minute=*/15 month=JAN-MAR,DEC"},
		{"hour=8/4 dayOfWeek=SUN", client.ScheduleCalendarSpec{
			Hour: []client.ScheduleRange{rng(8, 23, 4)}, DayOfWeek: []client.ScheduleRange{rng(0, 0, 0)},
		}, "hour=8-23/4 dayOfWeek=SUN"},
	}
	for _, c := range cases {
		got, err := ParseCalendar(c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q:\n got %+v\nwant %+v", c.in, got, c.want)
		}
		if back := FormatCalendar(got); back != c.back {
			t.Errorf("%q formats as %q, want %q", c.in, back, c.back)
		}
	}
}

func TestParseCalendarErrors(t *testing.T) {
	for in, want := range map[string]string{
		"":                  "is empty",
		"hour":              "not FIELD=VALUES",
		"weekday=MON":       `unknown field "weekday"`,
		"dayOfWeek=7":       "out of range 0-6 (0 is Sunday)",
		"hour=24":           "out of range 0-23",
		"month=FOO":         "neither a number nor one of JAN",
		"hour=9 hour=10":    "hour given twice",
		"minute=*/0":        "not a positive number",
		"dayOfWeek=FRI-MON": "ends before it starts",
		"dayOfMonth=1-15/x": "not a positive number",
	} {
		_, err := ParseCalendar(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want it to say %q", in, err, want)
		}
	}
}

func TestFormatCalendarOfTheServersCron(t *testing.T) {
	// What the server returns for `0 8 * * MON`: every field explicit.
	c := client.ScheduleCalendarSpec{
		Second: []client.ScheduleRange{{}}, Minute: []client.ScheduleRange{{}}, Hour: []client.ScheduleRange{{Start: 8}},
		DayOfMonth: []client.ScheduleRange{{Start: 1, End: 31, Step: 1}}, Month: []client.ScheduleRange{{Start: 1, End: 12, Step: 1}},
		DayOfWeek: []client.ScheduleRange{{Start: 1}},
	}
	if got := FormatCalendar(c); got != "hour=8 dayOfWeek=MON" {
		t.Errorf("got %q", got)
	}
}

func TestOverlapNames(t *testing.T) {
	for _, n := range []string{"skip", "buffer-one", "buffer-all", "cancel-other", "terminate-other", "allow-all"} {
		p, err := ParseOverlap(n)
		if err != nil || OverlapName(p) != n {
			t.Errorf("%s: %v %v", n, p, err)
		}
	}
	if _, err := ParseOverlap("queue"); err == nil || !strings.Contains(err.Error(), "want one of skip, buffer-one") {
		t.Errorf("queue: %v", err)
	}
}

func TestValidateScheduleName(t *testing.T) {
	for name, ok := range map[string]bool{"weekly-train": true, "demo.eu_1": true, "-x": false, "a b": false, "": false, strings.Repeat("a", 101): false} {
		if err := ValidateScheduleName(name); (err == nil) != ok {
			t.Errorf("%q: %v", name, err)
		}
	}
}
