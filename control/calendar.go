package control

import (
	"fmt"
	"strconv"
	"strings"

	"go.temporal.io/sdk/client"
)

// A calendar, as `keelson schedule create --calendar` takes it, is a list of
// FIELD=VALUES separated by spaces or semicolons:
//
//	dayOfWeek=MON-THU hour=9 minute=30
//	dayOfMonth=1,15 hour=6 comment="payroll"
//
// Fields are second, minute, hour, dayOfMonth, month, dayOfWeek, year and
// comment. VALUES are cron's: a number or name (JAN..DEC, SUN..SAT), a range
// A-B, a step */S or A-B/S, and lists of those separated by commas. Fields
// left out take Temporal's defaults: second, minute and hour 0, every day,
// month and year. It reads the same as a cron line, with names instead of
// positions, and it maps one to one onto Temporal's structured calendar.

type calField struct {
	name     string
	min, max int
	names    []string // names[i] is the value min+i
	get      func(*client.ScheduleCalendarSpec) *[]client.ScheduleRange
}

var (
	monthNames = []string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}
	dayNames   = []string{"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}
)

var calFields = []calField{
	{"second", 0, 59, nil, func(c *client.ScheduleCalendarSpec) *[]client.ScheduleRange { return &c.Second }},
	{"minute", 0, 59, nil, func(c *client.ScheduleCalendarSpec) *[]client.ScheduleRange { return &c.Minute }},
	{"hour", 0, 23, nil, func(c *client.ScheduleCalendarSpec) *[]client.ScheduleRange { return &c.Hour }},
	{"dayOfMonth", 1, 31, nil, func(c *client.ScheduleCalendarSpec) *[]client.ScheduleRange { return &c.DayOfMonth }},
	{"month", 1, 12, monthNames, func(c *client.ScheduleCalendarSpec) *[]client.ScheduleRange { return &c.Month }},
	{"dayOfWeek", 0, 6, dayNames, func(c *client.ScheduleCalendarSpec) *[]client.ScheduleRange { return &c.DayOfWeek }},
	{"year", 1970, 9999, nil, func(c *client.ScheduleCalendarSpec) *[]client.ScheduleRange { return &c.Year }},
}

// ParseCalendar reads one --calendar SPEC.
func ParseCalendar(spec string) (client.ScheduleCalendarSpec, error) {
	var cal client.ScheduleCalendarSpec
	seen := map[string]bool{}
	fields := splitCalendar(spec)
	if len(fields) == 0 {
		return cal, fmt.Errorf("calendar %q is empty: want FIELD=VALUES, like dayOfWeek=MON-FRI hour=9", spec)
	}
	for _, kv := range fields {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || v == "" {
			return cal, fmt.Errorf("calendar %q: %q is not FIELD=VALUES", spec, kv)
		}
		if strings.EqualFold(k, "comment") {
			cal.Comment = strings.Trim(v, `"'`)
			continue
		}
		f, ok := findField(k)
		if !ok {
			return cal, fmt.Errorf("calendar %q: unknown field %q (want second, minute, hour, dayOfMonth, month, dayOfWeek, year or comment)", spec, k)
		}
		if seen[f.name] {
			return cal, fmt.Errorf("calendar %q: %s given twice (list values with commas: %s=1,15)", spec, f.name, f.name)
		}
		seen[f.name] = true
		ranges, err := f.parse(v)
		if err != nil {
			return cal, fmt.Errorf("calendar %q: %s: %v", spec, f.name, err)
		}
		*f.get(&cal) = ranges
	}
	return cal, nil
}

// splitCalendar splits on spaces and semicolons, keeping a quoted comment
// whole.
func splitCalendar(s string) []string {
	var out []string
	var cur strings.Builder
	quote := rune(0)
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
			cur.WriteRune(r)
		case r == '"' || r == '\'':
			quote = r
			cur.WriteRune(r)
		case r == ' ' || r == '\t' || r == ';':
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

func findField(k string) (calField, bool) {
	for _, f := range calFields {
		if strings.EqualFold(k, f.name) {
			return f, true
		}
	}
	return calField{}, false
}

func (f calField) parse(v string) ([]client.ScheduleRange, error) {
	var out []client.ScheduleRange
	for _, item := range strings.Split(v, ",") {
		r, err := f.parseItem(item)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func (f calField) parseItem(item string) (client.ScheduleRange, error) {
	body, stepText, hasStep := strings.Cut(item, "/")
	r := client.ScheduleRange{}
	switch {
	case body == "*":
		r.Start, r.End = f.min, f.max
	case strings.Contains(body, "-"):
		a, b, _ := strings.Cut(body, "-")
		var err error
		if r.Start, err = f.value(a); err != nil {
			return r, err
		}
		if r.End, err = f.value(b); err != nil {
			return r, err
		}
		if r.End < r.Start {
			return r, fmt.Errorf("range %q ends before it starts", item)
		}
	default:
		var err error
		if r.Start, err = f.value(body); err != nil {
			return r, err
		}
		r.End = r.Start
		if hasStep {
			r.End = f.max // "5/15": from 5 to the end, every 15
		}
	}
	if hasStep {
		step, err := strconv.Atoi(stepText)
		if err != nil || step < 1 {
			return r, fmt.Errorf("step %q in %q is not a positive number", stepText, item)
		}
		r.Step = step
	}
	return r, nil
}

func (f calField) value(s string) (int, error) {
	for i, n := range f.names {
		if strings.EqualFold(s, n) {
			return f.min + i, nil
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		if f.names != nil {
			return 0, fmt.Errorf("%q is neither a number nor one of %s", s, strings.Join(f.names, ", "))
		}
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if n < f.min || n > f.max {
		hint := ""
		if f.name == "dayOfWeek" {
			hint = " (0 is Sunday)"
		}
		return 0, fmt.Errorf("%d is out of range %d-%d%s", n, f.min, f.max, hint)
	}
	return n, nil
}

// FormatCalendar writes a calendar back in ParseCalendar's syntax, leaving
// out fields that match their default, for describe.
func FormatCalendar(c client.ScheduleCalendarSpec) string {
	var parts []string
	for _, f := range calFields {
		ranges := *f.get(&c)
		if f.isDefault(ranges) {
			continue
		}
		var items []string
		for _, r := range ranges {
			items = append(items, f.format(r))
		}
		parts = append(parts, f.name+"="+strings.Join(items, ","))
	}
	if c.Comment != "" {
		parts = append(parts, fmt.Sprintf("comment=%q", c.Comment))
	}
	if len(parts) == 0 {
		return "every day at 00:00:00"
	}
	return strings.Join(parts, " ")
}

// isDefault reports whether ranges match what an absent field means.
func (f calField) isDefault(ranges []client.ScheduleRange) bool {
	if len(ranges) == 0 {
		return true
	}
	if len(ranges) != 1 {
		return false
	}
	r := ranges[0]
	end := max(r.End, r.Start)
	switch f.name {
	case "second", "minute", "hour":
		return r.Start == 0 && end == 0
	case "year":
		return false
	}
	return r.Start == f.min && end == f.max && r.Step <= 1
}

func (f calField) format(r client.ScheduleRange) string {
	name := func(v int) string {
		if i := v - f.min; f.names != nil && i >= 0 && i < len(f.names) {
			return f.names[i]
		}
		return strconv.Itoa(v)
	}
	end := max(r.End, r.Start)
	s := name(r.Start)
	switch {
	case r.Start == f.min && end == f.max && r.Step > 1:
		s = "*"
	case end != r.Start:
		s += "-" + name(end)
	}
	if r.Step > 1 {
		s += "/" + strconv.Itoa(r.Step)
	}
	return s
}
