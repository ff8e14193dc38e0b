package analysis

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/stretchr/testify/require"

	"github.com/keelson-dev/keelson/internal/labtest"
	"github.com/keelson-dev/keelson/release"
)

// TestCloudWatch reads alarms and metrics from moto, through the same
// client (query protocol, endpoint override) as against AWS.
func TestCloudWatch(t *testing.T) {
	endpoint := labtest.StartMoto(t)
	labtest.FakeAWSEnv(t)
	ctx := context.Background()
	a, err := New(ctx, Config{AWSEndpoint: endpoint})
	require.NoError(t, err)
	const region = "us-east-1"
	cw := newCloudWatchClient(a.aws, region, endpoint)

	// The alarm name is a template: web-eu-errors.
	_, err = cw.PutMetricAlarm(ctx, &cloudwatch.PutMetricAlarmInput{
		AlarmName:          aws.String("web-eu-errors"),
		Namespace:          aws.String("Keelson/Test"),
		MetricName:         aws.String("Errors"),
		Statistic:          types.StatisticSum,
		Period:             aws.Int32(60),
		EvaluationPeriods:  aws.Int32(1),
		Threshold:          aws.Float64(5),
		ComparisonOperator: types.ComparisonOperatorGreaterThanThreshold,
	})
	require.NoError(t, err)

	in := func(c release.AnalysisCheck) RunInput {
		c.Interval.Duration = 50 * time.Millisecond
		return RunInput{
			ReleaseID: "rel-1", Application: "web", Region: "eu", AWSRegion: region, Step: "canary 10%",
			CanaryVersion: "2.0.0", StableVersion: "1.0.0", Checks: []release.AnalysisCheck{c},
		}
	}
	alarm := release.AnalysisCheck{
		Name: "alarm", MinSamples: 2,
		CloudWatch: &release.CloudWatchAnalysis{Alarm: "{{.Application}}-{{.Region}}-errors"},
	}
	for _, tc := range []struct {
		state   types.StateValue
		verdict Verdict
		reason  string
	}{
		{types.StateValueAlarm, Failed, "alarm: alarm ALARM"},
		{types.StateValueOk, Passed, "alarm passed (2 samples)"},
		{types.StateValueInsufficientData, Inconclusive, "alarm: no data (alarm INSUFFICIENT_DATA)"},
	} {
		t.Run(string(tc.state), func(t *testing.T) {
			_, err := cw.SetAlarmState(ctx, &cloudwatch.SetAlarmStateInput{
				AlarmName: aws.String("web-eu-errors"), StateValue: tc.state, StateReason: aws.String("test"),
			})
			require.NoError(t, err)
			res, err := a.Run(ctx, in(alarm))
			require.NoError(t, err)
			require.Equal(t, tc.verdict, res.Verdict, res.Reason)
			require.Equal(t, tc.reason, res.Reason)
		})
	}

	t.Run("missing alarm", func(t *testing.T) {
		c := alarm
		c.CloudWatch = &release.CloudWatchAnalysis{Alarm: "nope"}
		res, err := a.Run(ctx, in(c))
		require.NoError(t, err)
		require.Equal(t, Failed, res.Verdict)
		require.Equal(t, "alarm: alarm nope not found", res.Reason)
	})

	// One datapoint per version; the dimension is a template.
	now := time.Now()
	for version, v := range map[string]float64{"2.0.0": 42, "1.0.0": 40} {
		_, err = cw.PutMetricData(ctx, &cloudwatch.PutMetricDataInput{
			Namespace: aws.String("Keelson/Test"),
			MetricData: []types.MetricDatum{{
				MetricName: aws.String("Latency"),
				Dimensions: []types.Dimension{{Name: aws.String("Version"), Value: aws.String(version)}},
				Timestamp:  aws.Time(now.Add(-30 * time.Second)),
				Value:      aws.Float64(v),
			}},
		})
		require.NoError(t, err)
	}
	metric := release.AnalysisCheck{
		Name: "latency", Max: f(10),
		CloudWatch: &release.CloudWatchAnalysis{
			Namespace: "Keelson/Test", Metric: "Latency",
			Dimensions: map[string]string{"Version": "{{.Version}}"},
		},
	}

	t.Run("metric over max", func(t *testing.T) {
		res, err := a.Run(ctx, in(metric))
		require.NoError(t, err)
		require.Equal(t, Failed, res.Verdict, res.Reason)
		require.Equal(t, "latency: 42 > max 10", res.Reason)
	})

	t.Run("metric difference", func(t *testing.T) {
		c := metric
		c.Compare, c.Max = release.CompareDifference, f(1)
		res, err := a.Run(ctx, in(c))
		require.NoError(t, err)
		require.Equal(t, Failed, res.Verdict, res.Reason)
		require.Equal(t, "latency: 2 > max 1", res.Reason)
		s := res.Checks[0].Deciding[0]
		require.Equal(t, 42.0, *s.Canary)
		require.Equal(t, 40.0, *s.Stable)
	})

	t.Run("metric without data", func(t *testing.T) {
		c := metric
		c.CloudWatch = &release.CloudWatchAnalysis{Namespace: "Keelson/Test", Metric: "Nothing"}
		c.NoData = release.NoDataFail
		res, err := a.Run(ctx, in(c))
		require.NoError(t, err)
		require.Equal(t, Failed, res.Verdict)
		require.Equal(t, "latency: no data (no datapoints in the last 5m0s)", res.Reason)
	})
}
