package analysis

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/keelson-dev/keelson/release"
)

// The judge: plain functions over readings and samples, no I/O. Providers
// (http.go, prometheus.go, cloudwatch.go) only read; what a reading means
// for the check, and when a check is decided, is said here once.

const (
	defaultInterval     = 5 * time.Second
	defaultFailureLimit = 1
	defaultMinSamples   = 1
	// maxDeciding bounds CheckResult.Deciding, which goes into workflow
	// history: a failure limit of 100 keeps its last 10 samples.
	maxDeciding = 10
	// passedDeciding is how many of its last samples a passed check shows
	// at least.
	passedDeciding = 3
)

// withDefaults fills the check's unset fields with their defaults.
func withDefaults(c release.AnalysisCheck) release.AnalysisCheck {
	if c.Interval.Duration <= 0 {
		c.Interval.Duration = defaultInterval
	}
	if c.FailureLimit <= 0 {
		c.FailureLimit = defaultFailureLimit
	}
	if c.MinSamples <= 0 {
		c.MinSamples = defaultMinSamples
	}
	if c.NoData == "" {
		c.NoData = release.NoDataInconclusive
	}
	return c
}

// reading is what a provider read from one side for one sample: a number,
// nothing (no data), a failure of its own (a bad status, an alarm in
// ALARM, an error), or none of these (a healthy answer without a number,
// such as an alarm in OK).
type reading struct {
	value    float64
	hasValue bool
	noData   string // why there is no data: "empty result", "alarm INSUFFICIENT_DATA"
	fail     string // why the sample fails whatever the thresholds
}

func valueReading(v float64) reading {
	if math.IsNaN(v) {
		return reading{noData: "NaN"}
	}
	return reading{value: v, hasValue: true}
}

func noDataReading(why string) reading { return reading{noData: why} }

func failReading(format string, args ...any) reading {
	return reading{fail: fmt.Sprintf(format, args...)}
}

// judge makes the sample of a check that measures one side.
func judge(c release.AnalysisCheck, at time.Time, r reading) Sample {
	s := Sample{Time: at, Check: c.Name}
	switch {
	case r.fail != "":
		s.Reason = r.fail
		return s
	case r.noData != "":
		return noData(c, s, "no data ("+r.noData+")")
	case !r.hasValue:
		s.Pass = true
		return s
	}
	s.Value = finite(r.value)
	s.Pass, s.Reason = bounds(c, r.value)
	return s
}

// judgeCompare makes the sample of a check that compares the new side
// (canary or preview, named side) with the stable one.
//
// A ratio over a stable side of zero is 1 when the new side is zero too
// (the sides agree: no errors on either is the healthy case of an error
// ratio, not a lack of data), and +Inf (or -Inf) otherwise, which fails a
// Max and passes a Min. Infinite values have no JSON form: the sample then
// has no Value, and its Reason and its Canary and Stable say what happened.
func judgeCompare(c release.AnalysisCheck, at time.Time, side string, newSide, stable reading) Sample {
	s := Sample{Time: at, Check: c.Name}
	if newSide.hasValue {
		s.Canary = finite(newSide.value)
	}
	if stable.hasValue {
		s.Stable = finite(stable.value)
	}
	switch {
	case newSide.fail != "":
		s.Reason = side + ": " + newSide.fail
		return s
	case stable.fail != "":
		s.Reason = "stable: " + stable.fail
		return s
	case newSide.noData != "":
		return noData(c, s, "no data on the "+side+" side ("+newSide.noData+")")
	case stable.noData != "":
		return noData(c, s, "no data on the stable side ("+stable.noData+")")
	case !newSide.hasValue || !stable.hasValue:
		// Validation keeps number-less checks from comparing; this is a
		// provider that answered without a number where one was due.
		s.Reason = "no number to compare"
		return s
	}
	var v float64
	switch c.Compare {
	case release.CompareRatio:
		v = ratio(newSide.value, stable.value)
	case release.CompareDifference:
		v = newSide.value - stable.value
	default:
		s.Reason = fmt.Sprintf("unknown compare %q", c.Compare)
		return s
	}
	s.Value = finite(v)
	s.Pass, s.Reason = bounds(c, v)
	if !s.Pass && s.Value == nil {
		s.Reason += fmt.Sprintf(" (%s %s, stable %s)", side, fmtNum(newSide.value), fmtNum(stable.value))
	}
	return s
}

func ratio(newSide, stable float64) float64 {
	if stable == 0 {
		switch {
		case newSide == 0:
			return 1
		case newSide > 0:
			return math.Inf(1)
		default:
			return math.Inf(-1)
		}
	}
	return newSide / stable
}

// noData applies the check's no-data rule to a sample without data.
func noData(c release.AnalysisCheck, s Sample, reason string) Sample {
	s.NoData = true
	s.Reason = reason
	s.Pass = c.NoData == release.NoDataPass
	return s
}

// bounds judges a value by Max and Min.
func bounds(c release.AnalysisCheck, v float64) (bool, string) {
	if c.Max != nil && v > *c.Max {
		a, b := fmtPair(v, *c.Max)
		return false, a + " > max " + b
	}
	if c.Min != nil && v < *c.Min {
		a, b := fmtPair(v, *c.Min)
		return false, a + " < min " + b
	}
	return true, ""
}

func finite(v float64) *float64 {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return nil
	}
	return &v
}

// fmtNum writes a number for people: four significant digits, whole
// numbers without an exponent.
func fmtNum(v float64) string {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	if a := math.Abs(v); a >= 1e4 && a < 1e15 {
		return strconv.FormatFloat(math.Round(v), 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// fmtPair writes a value and the bound it crossed, in full when four
// digits would make them look equal ("3 > max 3").
func fmtPair(v, bound float64) (string, string) {
	a, b := fmtNum(v), fmtNum(bound)
	if a == b {
		return strconv.FormatFloat(v, 'g', -1, 64), strconv.FormatFloat(bound, 'g', -1, 64)
	}
	return a, b
}

// checkState follows one check's samples and decides it.
//
// Only a passing sample ends a run: a failing sample does not end a run
// of samples without data, nor the other way round. A check whose samples
// alternate between failing and no data is therefore still decided (by
// whichever run reaches FailureLimit first) rather than passing for want
// of a run of one kind.
type checkState struct {
	check     release.AnalysisCheck // with defaults
	samples   int
	failures  int // failing samples, no data under "fail" included
	noData    int // samples without data, whatever their rule
	failRun   run
	noDataRun run      // no data under "inconclusive"
	last      []Sample // the last few samples
	verdict   Verdict  // empty until decided
	reason    string
	decidedAt time.Time
}

// run is a run of samples of one kind: its length, and its last
// maxDeciding samples.
type run struct {
	n       int
	samples []Sample
}

func (r *run) add(s Sample) int {
	r.n++
	r.samples = appendBounded(r.samples, s, maxDeciding)
	return r.n
}

func (r *run) reset() { *r = run{} }

func newCheckState(c release.AnalysisCheck) *checkState {
	return &checkState{check: withDefaults(c)}
}

// add counts a sample of the check and reports whether it decided the
// check (Failed or Inconclusive). Samples after the decision are ignored.
func (st *checkState) add(s Sample) bool {
	if st.verdict != "" {
		return false
	}
	st.samples++
	st.last = appendBounded(st.last, s, min(max(st.check.FailureLimit, passedDeciding), maxDeciding))
	if s.NoData {
		st.noData++
	}
	limit := st.check.FailureLimit
	switch {
	case s.Pass:
		st.failRun.reset()
		st.noDataRun.reset()
	case s.NoData && st.check.NoData == release.NoDataInconclusive:
		if st.noDataRun.add(s) >= limit {
			st.decide(Inconclusive, s, runReason(st.check.Name, limit, "samples in a row without data", s.Reason))
			return true
		}
	default:
		st.failures++
		if st.failRun.add(s) >= limit {
			st.decide(Failed, s, runReason(st.check.Name, limit, "failing samples in a row", s.Reason))
			return true
		}
	}
	return false
}

func (st *checkState) decide(v Verdict, s Sample, reason string) {
	st.verdict, st.reason, st.decidedAt = v, reason, s.Time
}

// pass decides a check that ran its course without failing.
func (st *checkState) pass() {
	if st.verdict != "" {
		return
	}
	st.verdict = Passed
	st.reason = fmt.Sprintf("%s: passed, %d samples, %d failing, %d without data", st.check.Name, st.samples, st.failures, st.noData)
}

// result is the check's part of the run's result. A check still running
// when another decided the run keeps an empty verdict and no deciding
// samples.
func (st *checkState) result(stoppedBy string) CheckResult {
	r := CheckResult{
		Name: st.check.Name, Verdict: st.verdict,
		Samples: st.samples, Failures: st.failures, NoData: st.noData,
		Reason: st.reason,
	}
	switch st.verdict {
	case Failed:
		r.Deciding = st.failRun.samples
	case Inconclusive:
		r.Deciding = st.noDataRun.samples
	case Passed:
		r.Deciding = st.last
	default:
		// It decided nothing: its samples are in the samples file.
		r.Reason = fmt.Sprintf("%s: not decided, stopped when %s was", st.check.Name, stoppedBy)
	}
	return r
}

func runReason(name string, n int, what, last string) string {
	if n == 1 {
		return fmt.Sprintf("%s: %s", name, last)
	}
	return fmt.Sprintf("%s: %d %s (last %s)", name, n, what, last)
}

func appendBounded(s []Sample, v Sample, n int) []Sample {
	s = append(s, v)
	if len(s) > n {
		s = append(s[:0:0], s[len(s)-n:]...)
	}
	return s
}
