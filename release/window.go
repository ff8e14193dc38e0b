package release

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	// Every binary that evaluates windows carries the same time-zone
	// database, so that every worker computes the same instant whatever
	// the machine has in /usr/share/zoneinfo.
	_ "time/tzdata"
)

// Deploy windows and freezes say when a region may change (docs/release-file.md,
// "Deploy windows and freezes"). Temporal Schedules match clock times
// literally, with no special case for daylight saving; windows are
// therefore evaluated here, in the region's own zone, by workflow code.

// Window is a recurring period, in the region's time zone, when a region
// may change: days of the week and a time of day range. A To before From
// crosses midnight (22:00 to 02:00 ends the next day).
type Window struct {
	// Days are day names (Mon, Tue, ... Sun) or ranges (Mon-Thu).
	Days []string `json:"days" yaml:"days"`
	From string   `json:"from" yaml:"from"` // HH:MM
	To   string   `json:"to" yaml:"to"`     // HH:MM
}

// Freeze is an absolute period when a region may not change: a deny window.
// From and To are RFC 3339 times, or "2006-01-02 15:04" in the region's zone.
type Freeze struct {
	From   string `json:"from" yaml:"from"`
	To     string `json:"to" yaml:"to"`
	Reason string `json:"reason" yaml:"reason"`
}

// OnWindowClose says what a region does when its window closes while it
// rolls out.
type OnWindowClose string

const (
	// WindowCloseHold finishes the current step and holds before the next
	// until the window opens again (the default).
	WindowCloseHold OnWindowClose = "hold"
	// WindowCloseFinish lets the region finish its rollout.
	WindowCloseFinish OnWindowClose = "finish"
)

// DeployPolicy is what applies to one region: its zone, windows (none means
// always open) and freezes.
type DeployPolicy struct {
	TimeZone string   `json:"timeZone,omitempty"`
	Windows  []Window `json:"windows,omitempty"`
	Freezes  []Freeze `json:"freezes,omitempty"`
}

// Empty reports whether the policy never holds anything.
func (p DeployPolicy) Empty() bool { return len(p.Windows) == 0 && len(p.Freezes) == 0 }

// Policy is the deploy policy of the region named name: the region's own
// windows and freezes replace the application's, and its zone (UTC by
// default) applies to both.
func (s *Spec) Policy(name string) DeployPolicy {
	p := DeployPolicy{TimeZone: s.TimeZone, Windows: s.Windows, Freezes: s.Freezes}
	for _, r := range s.Regions {
		if r.Name != name {
			continue
		}
		if r.TimeZone != "" {
			p.TimeZone = r.TimeZone
		}
		if r.Windows != nil {
			p.Windows = r.Windows
		}
		if r.Freezes != nil {
			p.Freezes = r.Freezes
		}
	}
	return p
}

// HasDeployPolicy reports whether any region has windows or freezes.
func (s *Spec) HasDeployPolicy() bool {
	for _, r := range s.Regions {
		if !s.Policy(r.Name).Empty() {
			return true
		}
	}
	return false
}

// Decision is what a policy says about an instant.
type Decision struct {
	Open bool
	// Until is, when closed, the next instant the region may go (zero if
	// none within the search horizon); when open, the instant the current
	// window closes or a freeze starts (zero if never within the horizon).
	Until time.Time
	// Why says what holds the region: "outside its windows (Mon-Thu
	// 09:00-16:00 Europe/Dublin)" or "freeze: year-end (until ...)".
	Why string
}

// horizon bounds the search for the next open instant: a policy that does
// not open within it holds until a person overrides it.
const horizon = 400 * 24 * time.Hour

// At says whether the region may change at t, and until when that holds.
// The policy must have been validated.
func (p DeployPolicy) At(t time.Time) Decision {
	loc, err := p.location()
	if err != nil {
		return Decision{Why: err.Error()}
	}
	open, why := p.openAt(t, loc)
	next := p.nextChange(t, loc, open)
	if open {
		return Decision{Open: true, Until: next}
	}
	return Decision{Until: next, Why: why}
}

func (p DeployPolicy) location() (*time.Location, error) {
	if p.TimeZone == "" {
		return time.UTC, nil
	}
	loc, err := time.LoadLocation(p.TimeZone)
	if err != nil {
		return nil, fmt.Errorf("time zone %q: %w", p.TimeZone, err)
	}
	return loc, nil
}

func (p DeployPolicy) openAt(t time.Time, loc *time.Location) (bool, string) {
	for _, f := range p.Freezes {
		from, to, err := f.span(loc)
		if err == nil && !t.Before(from) && t.Before(to) {
			return false, fmt.Sprintf("freeze: %s (%s to %s)", f.Reason, from.In(loc).Format("2006-01-02 15:04 MST"), to.In(loc).Format("2006-01-02 15:04 MST"))
		}
	}
	if len(p.Windows) == 0 {
		return true, ""
	}
	for _, w := range p.Windows {
		if w.contains(t, loc) {
			return true, ""
		}
	}
	return false, fmt.Sprintf("outside its deploy windows (%s, %s)", p.describeWindows(), loc)
}

// nextChange finds the first instant after t where openAt differs from
// open. Windows and freezes change only at their edges, so the candidates
// are those edges; each is checked in order.
func (p DeployPolicy) nextChange(t time.Time, loc *time.Location, open bool) time.Time {
	for _, c := range p.edges(t, loc) {
		if o, _ := p.openAt(c, loc); o != open {
			return c
		}
	}
	return time.Time{}
}

// edges are the window and freeze boundaries after t, sorted, up to the
// horizon.
func (p DeployPolicy) edges(t time.Time, loc *time.Location) []time.Time {
	var out []time.Time
	end := t.Add(horizon)
	for _, f := range p.Freezes {
		if from, to, err := f.span(loc); err == nil {
			for _, e := range []time.Time{from, to} {
				if e.After(t) && e.Before(end) {
					out = append(out, e)
				}
			}
		}
	}
	if len(p.Windows) > 0 {
		day := time.Date(t.In(loc).Year(), t.In(loc).Month(), t.In(loc).Day(), 0, 0, 0, 0, loc).AddDate(0, 0, -1)
		for ; day.Before(end); day = day.AddDate(0, 0, 1) {
			for _, w := range p.Windows {
				if !w.onDay(day.Weekday()) {
					continue
				}
				from, to := w.span(day, loc)
				for _, e := range []time.Time{from, to} {
					if e.After(t) && e.Before(end) {
						out = append(out, e)
					}
				}
			}
			// Enough candidates for a year of weekly windows; stop early
			// once a few weeks are covered and some edges were found.
			if len(out) > 0 && day.Sub(t) > 15*24*time.Hour && len(p.Freezes) == 0 {
				break
			}
		}
	}
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return slices.CompactFunc(out, func(a, b time.Time) bool { return a.Equal(b) })
}

// contains reports whether t falls in the window: in a span that started
// on t's day or, for windows crossing midnight, the day before.
func (w Window) contains(t time.Time, loc *time.Location) bool {
	lt := t.In(loc)
	today := time.Date(lt.Year(), lt.Month(), lt.Day(), 0, 0, 0, 0, loc)
	for _, day := range []time.Time{today, today.AddDate(0, 0, -1)} {
		if !w.onDay(day.Weekday()) {
			continue
		}
		from, to := w.span(day, loc)
		if !t.Before(from) && t.Before(to) {
			return true
		}
	}
	return false
}

// span is the window's period that starts on day. A wall-clock time that
// does not exist that day (inside a spring-forward gap) is normalised by
// time.Date, the same way on every worker.
func (w Window) span(day time.Time, loc *time.Location) (time.Time, time.Time) {
	fh, fm, _ := clock(w.From)
	th, tm, _ := clock(w.To)
	from := time.Date(day.Year(), day.Month(), day.Day(), fh, fm, 0, 0, loc)
	to := time.Date(day.Year(), day.Month(), day.Day(), th, tm, 0, 0, loc)
	if th*60+tm <= fh*60+fm {
		to = time.Date(day.Year(), day.Month(), day.Day()+1, th, tm, 0, 0, loc)
	}
	return from, to
}

func (w Window) onDay(d time.Weekday) bool {
	for _, spec := range w.Days {
		lo, hi, err := dayRange(spec)
		if err != nil {
			continue
		}
		if lo <= hi && d >= lo && d <= hi || lo > hi && (d >= lo || d <= hi) {
			return true
		}
	}
	return false
}

func (p DeployPolicy) describeWindows() string {
	var parts []string
	for _, w := range p.Windows {
		parts = append(parts, fmt.Sprintf("%s %s-%s", strings.Join(w.Days, ","), w.From, w.To))
	}
	return strings.Join(parts, "; ")
}

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// dayRange reads "Mon" or "Mon-Thu" (a range may wrap: Fri-Mon).
func dayRange(s string) (time.Weekday, time.Weekday, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	a, ok := dayNames[strings.ToLower(strings.TrimSpace(lo))[:min(3, len(strings.TrimSpace(lo)))]]
	if !ok || len(strings.TrimSpace(lo)) < 3 {
		return 0, 0, fmt.Errorf("%q is not a day (Mon, Tue, ... Sun, or a range Mon-Thu)", s)
	}
	if !isRange {
		return a, a, nil
	}
	h := strings.TrimSpace(hi)
	b, ok := dayNames[strings.ToLower(h)[:min(3, len(h))]]
	if !ok || len(h) < 3 {
		return 0, 0, fmt.Errorf("%q is not a day range (Mon-Thu)", s)
	}
	return a, b, nil
}

// clock reads HH:MM.
func clock(s string) (int, int, error) {
	hs, ms, ok := strings.Cut(s, ":")
	h, err1 := strconv.Atoi(hs)
	m, err2 := strconv.Atoi(ms)
	if !ok || err1 != nil || err2 != nil || len(hs) != 2 || len(ms) != 2 || h < 0 || h > 24 || m < 0 || m > 59 || (h == 24 && m != 0) {
		return 0, 0, fmt.Errorf("%q is not a time of day (HH:MM, 00:00 to 24:00)", s)
	}
	return h, m, nil
}

// span reads the freeze's period in loc.
func (f Freeze) span(loc *time.Location) (time.Time, time.Time, error) {
	from, err := freezeTime(f.From, loc)
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	to, err := freezeTime(f.To, loc)
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	return from, to, nil
}

func freezeTime(s string, loc *time.Location) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time (RFC 3339, or 2006-01-02 15:04 in the region's zone)", s)
}

// validateWindows checks windows, freezes and the zone at path.
func validateDeployPolicy(path, zone string, windows []Window, freezes []Freeze, ps *problems) {
	loc := time.UTC
	if zone != "" {
		l, err := time.LoadLocation(zone)
		if err != nil {
			ps.add(join(path, "timeZone"), "unknown time zone %q (an IANA name such as Europe/Dublin)", zone)
		} else {
			loc = l
		}
	}
	for i, w := range windows {
		at := fmt.Sprintf("%s[%d]", join(path, "windows"), i)
		if len(w.Days) == 0 {
			ps.add(at+".days", "required field is missing (Mon, Tue, ... Sun, or ranges such as Mon-Thu)")
		}
		for j, d := range w.Days {
			if _, _, err := dayRange(d); err != nil {
				ps.add(fmt.Sprintf("%s.days[%d]", at, j), "%v", err)
			}
		}
		_, _, errFrom := clock(w.From)
		if errFrom != nil {
			ps.add(at+".from", "%v", errFrom)
		}
		_, _, errTo := clock(w.To)
		if errTo != nil {
			ps.add(at+".to", "%v", errTo)
		}
		if errFrom == nil && errTo == nil && w.From == w.To {
			ps.add(at+".to", "the window opens and closes at %s: it is empty", w.From)
		}
	}
	for i, f := range freezes {
		at := fmt.Sprintf("%s[%d]", join(path, "freezes"), i)
		from, errFrom := freezeTime(f.From, loc)
		if errFrom != nil {
			ps.add(at+".from", "%v", errFrom)
		}
		to, errTo := freezeTime(f.To, loc)
		if errTo != nil {
			ps.add(at+".to", "%v", errTo)
		}
		if errFrom == nil && errTo == nil && !to.After(from) {
			ps.add(at+".to", "the freeze ends (%s) before it starts (%s)", f.To, f.From)
		}
		if f.Reason == "" {
			ps.add(at+".reason", "required field is missing (people held by the freeze read it)")
		}
	}
}
