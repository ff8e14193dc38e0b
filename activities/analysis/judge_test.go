package analysis

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keelson-dev/keelson/release"
)

func f(v float64) *float64 { return &v }

func TestJudge(t *testing.T) {
	at := time.Unix(1700000000, 0)
	for _, tc := range []struct {
		name   string
		check  release.AnalysisCheck
		r      reading
		pass   bool
		noData bool
		value  *float64
		reason string
	}{
		{"under max", release.AnalysisCheck{Max: f(2)}, valueReading(1.5), true, false, f(1.5), ""},
		{"over max", release.AnalysisCheck{Max: f(2)}, valueReading(4.1), false, false, f(4.1), "4.1 > max 2"},
		{"under min", release.AnalysisCheck{Min: f(0.5)}, valueReading(0.41666), false, false, f(0.41666), "0.4167 < min 0.5"},
		{"close to the bound", release.AnalysisCheck{Max: f(3)}, valueReading(3.0000001), false, false, f(3.0000001), "3.0000001 > max 3"},
		{"large", release.AnalysisCheck{Max: f(10000)}, valueReading(12345.6), false, false, f(12345.6), "12346 > max 10000"},
		{"no number, no failure", release.AnalysisCheck{}, reading{}, true, false, nil, ""},
		{"failure", release.AnalysisCheck{Max: f(2)}, failReading("status %d, want %d", 500, 200), false, false, nil, "status 500, want 200"},
		{"NaN is no data", release.AnalysisCheck{Max: f(2)}, valueReading(math.NaN()), false, true, nil, "no data (NaN)"},
		{"no data, fail", release.AnalysisCheck{NoData: release.NoDataFail}, noDataReading("empty result"), false, true, nil, "no data (empty result)"},
		{"no data, pass", release.AnalysisCheck{NoData: release.NoDataPass}, noDataReading("empty result"), true, true, nil, "no data (empty result)"},
		{"no data, inconclusive", release.AnalysisCheck{}, noDataReading("alarm INSUFFICIENT_DATA"), false, true, nil, "no data (alarm INSUFFICIENT_DATA)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.check.Name = "c"
			s := judge(withDefaults(tc.check), at, tc.r)
			require.Equal(t, Sample{Time: at, Check: "c", Value: tc.value, NoData: tc.noData, Pass: tc.pass, Reason: tc.reason}, s)
		})
	}
}

func TestJudgeCompare(t *testing.T) {
	at := time.Unix(1700000000, 0)
	ratio := release.AnalysisCheck{Name: "c", Compare: release.CompareRatio, Max: f(2)}
	diff := release.AnalysisCheck{Name: "c", Compare: release.CompareDifference, Max: f(0.05), Min: f(-1)}
	for _, tc := range []struct {
		name           string
		check          release.AnalysisCheck
		canary, stable reading
		pass, noData   bool
		value          *float64
		reason         string
	}{
		{"ratio under max", ratio, valueReading(3), valueReading(2), true, false, f(1.5), ""},
		{"ratio over max", ratio, valueReading(10), valueReading(2), false, false, f(5), "5 > max 2"},
		{"both zero is equal", ratio, valueReading(0), valueReading(0), true, false, f(1), ""},
		{"stable zero is infinite", ratio, valueReading(3), valueReading(0), false, false, nil, "+Inf > max 2 (canary 3, stable 0)"},
		{"stable zero passes a min", release.AnalysisCheck{Name: "c", Compare: release.CompareRatio, Min: f(0.5)},
			valueReading(3), valueReading(0), true, false, nil, ""},
		{"difference", diff, valueReading(0.12), valueReading(0.02), false, false, f(0.09999999999999999), "0.1 > max 0.05"},
		{"difference under min", diff, valueReading(0), valueReading(2), false, false, f(-2), "-2 < min -1"},
		{"canary fails", ratio, failReading("status 500, want 200"), valueReading(1), false, false, nil, "canary: status 500, want 200"},
		{"stable fails", ratio, valueReading(1), failReading("prometheus query: boom"), false, false, nil, "stable: prometheus query: boom"},
		{"stable no data", ratio, valueReading(1), noDataReading("empty result"), false, true, nil, "no data on the stable side (empty result)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := judgeCompare(withDefaults(tc.check), at, SideCanary, tc.canary, tc.stable)
			require.Equal(t, tc.pass, s.Pass, s.Reason)
			require.Equal(t, tc.noData, s.NoData)
			require.Equal(t, tc.value, s.Value)
			require.Equal(t, tc.reason, s.Reason)
			if tc.canary.hasValue {
				require.Equal(t, tc.canary.value, *s.Canary)
			}
			if tc.stable.hasValue {
				require.Equal(t, tc.stable.value, *s.Stable)
			}
		})
	}
}

// The judge's decisions over a series of samples: P passing, F failing,
// N without data.
func TestCheckState(t *testing.T) {
	for _, tc := range []struct {
		name     string
		check    release.AnalysisCheck
		series   string
		verdict  Verdict // empty: not decided by the series
		at       int     // index of the deciding sample
		reason   string
		deciding int
		failures int
		noData   int
	}{
		{name: "one failure fails by default", series: "PF", verdict: Failed, at: 1, reason: "c: bad 1", deciding: 1, failures: 1},
		{name: "failures in a row", check: release.AnalysisCheck{FailureLimit: 3}, series: "FFPFFF", verdict: Failed, at: 5,
			reason: "c: 3 failing samples in a row (last bad 5)", deciding: 3, failures: 5},
		{name: "a pass ends the run", check: release.AnalysisCheck{FailureLimit: 3}, series: "FFPFFP", failures: 4},
		{name: "no data counts as failing under fail", check: release.AnalysisCheck{FailureLimit: 2, NoData: release.NoDataFail},
			series: "NN", verdict: Failed, at: 1, reason: "c: 2 failing samples in a row (last no data 1)", deciding: 2, failures: 2, noData: 2},
		{name: "no data passes under pass", check: release.AnalysisCheck{NoData: release.NoDataPass}, series: "NNNN", noData: 4},
		{name: "no data is inconclusive", check: release.AnalysisCheck{FailureLimit: 2}, series: "NPNN", verdict: Inconclusive, at: 3,
			reason: "c: 2 samples in a row without data (last no data 3)", deciding: 2, noData: 3},
		{name: "no data does not end a failing run", check: release.AnalysisCheck{FailureLimit: 2}, series: "FNF", verdict: Failed, at: 2,
			reason: "c: 2 failing samples in a row (last bad 2)", deciding: 2, failures: 2, noData: 1},
		{name: "a long limit keeps the last ten", check: release.AnalysisCheck{FailureLimit: 12}, series: "FFFFFFFFFFFFF", verdict: Failed, at: 11,
			reason: "c: 12 failing samples in a row (last bad 1)", deciding: 10, failures: 12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.check.Name = "c"
			st := newCheckState(tc.check)
			t0 := time.Unix(1700000000, 0)
			decidedAt := -1
			for i, k := range tc.series {
				s := Sample{Time: t0.Add(time.Duration(i) * time.Second), Check: "c"}
				switch k {
				case 'P':
					s.Pass = true
				case 'F':
					s.Reason = "bad " + string(rune('0'+i%10))
				case 'N':
					s = noData(st.check, s, "no data "+string(rune('0'+i%10)))
				}
				if st.add(s) {
					require.Equal(t, -1, decidedAt, "decided twice")
					decidedAt = i
				}
			}
			r := st.result("other")
			if tc.verdict == "" {
				require.Equal(t, -1, decidedAt)
				st.pass()
				r = st.result("")
				require.Equal(t, Passed, r.Verdict)
			} else {
				require.Equal(t, tc.at, decidedAt)
				require.Equal(t, tc.verdict, r.Verdict)
				require.Equal(t, tc.reason, r.Reason)
				require.Len(t, r.Deciding, tc.deciding)
				require.Equal(t, t0.Add(time.Duration(tc.at)*time.Second), st.decidedAt)
				require.Equal(t, st.decidedAt, r.Deciding[len(r.Deciding)-1].Time)
			}
			require.Equal(t, tc.failures, r.Failures, "failures")
			require.Equal(t, tc.noData, r.NoData, "no data")
			wantSamples := len(tc.series)
			if tc.verdict != "" {
				wantSamples = tc.at + 1
			}
			require.Equal(t, wantSamples, r.Samples)
		})
	}
}

func TestStoppedCheckHasNoVerdict(t *testing.T) {
	st := newCheckState(release.AnalysisCheck{Name: "latency"})
	st.add(Sample{Check: "latency", Pass: true})
	r := st.result("errors")
	require.Empty(t, r.Verdict)
	require.Equal(t, "latency: not decided, stopped when errors was", r.Reason)
	require.Empty(t, r.Deciding)
}

func TestDefaultSamplesKey(t *testing.T) {
	require.Equal(t, "analysis/rel-42/eu-west-1/canary-10.jsonl",
		defaultSamplesKey(RunInput{ReleaseID: "rel-42", Region: "eu-west-1", Step: "canary 10%"}))
	require.Equal(t, "analysis/release/region/analysis.jsonl", defaultSamplesKey(RunInput{Step: "../"}))
}

func nan() float64 { return math.NaN() }
