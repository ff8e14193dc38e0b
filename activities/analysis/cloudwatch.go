package analysis

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwschemas "github.com/aws/aws-sdk-go-v2/service/cloudwatch/schemas"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/aws/smithy-go/transport/http/protocol/awsquery"

	"github.com/keelson-dev/keelson/release"
)

const (
	defaultCloudWatchPeriod = time.Minute
	defaultCloudWatchWindow = 5 * time.Minute
	defaultCloudWatchStat   = "Average"
)

// awsQueryProtocol makes a CloudWatch client speak the AWS query protocol
// (form-encoded requests, XML answers) instead of the client's default,
// Smithy RPC v2 CBOR. CloudWatch itself accepts both; moto and other
// stand-ins for AWS that tests and the lab run against accept only the
// query protocol (and JSON), so this one client works against either.
// The schemas are the service's own, generated with the client, so the
// protocol serializes every operation the same way the client's generated
// code describes it.
func awsQueryProtocol(o *cloudwatch.Options) {
	o.Protocol = awsquery.New(cwschemas.GraniteServiceVersion20100801)
}

// newCloudWatchClient is the client for an AWS region: the query protocol,
// and the endpoint override when there is one.
func newCloudWatchClient(cfg aws.Config, region, endpoint string) *cloudwatch.Client {
	return cloudwatch.NewFromConfig(cfg, func(o *cloudwatch.Options) {
		o.Region = region
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	}, awsQueryProtocol)
}

// cloudWatch is the client for an AWS region, made on first use and kept.
func (a *Activities) cloudWatch(region string) *cloudwatch.Client {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c, ok := a.cloudwatch[region]; ok {
		return c
	}
	c := newCloudWatchClient(a.aws, region, a.cfg.AWSEndpoint)
	a.cloudwatch[region] = c
	return c
}

// cloudWatchRegion is the AWS region a check reads: its own, the run's,
// or the SDK's default (AWS_REGION, the profile).
func (a *Activities) cloudWatchRegion(cw *release.CloudWatchAnalysis, in RunInput) (string, error) {
	for _, r := range []string{cw.AWSRegion, in.AWSRegion, a.aws.Region} {
		if r != "" {
			return r, nil
		}
	}
	return "", errors.New("no AWS region: set the check's awsRegion or the region's awsRegion")
}

// readCloudWatch reads an alarm's state or a metric's latest datapoint.
// API errors (throttling that outlasted the SDK's retries, a missing
// permission) are failing readings.
func (a *Activities) readCloudWatch(ctx context.Context, cw *release.CloudWatchAnalysis, region string, now time.Time) reading {
	c := a.cloudWatch(region)
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	if cw.Alarm != "" {
		return readAlarm(ctx, c, cw.Alarm)
	}
	return readMetric(ctx, c, cw, now)
}

func readAlarm(ctx context.Context, c *cloudwatch.Client, name string) reading {
	out, err := c.DescribeAlarms(ctx, &cloudwatch.DescribeAlarmsInput{
		AlarmNames: []string{name},
		// Without AlarmTypes only metric alarms are returned; a composite
		// alarm is as good a judge of a canary.
		AlarmTypes: []types.AlarmType{types.AlarmTypeMetricAlarm, types.AlarmTypeCompositeAlarm},
	})
	if err != nil {
		return failReading("describe alarm %s: %v", name, err)
	}
	var state types.StateValue
	switch {
	case len(out.MetricAlarms) > 0:
		state = out.MetricAlarms[0].StateValue
	case len(out.CompositeAlarms) > 0:
		state = out.CompositeAlarms[0].StateValue
	default:
		return failReading("alarm %s not found", name)
	}
	switch state {
	case types.StateValueOk:
		return reading{}
	case types.StateValueInsufficientData:
		return noDataReading("alarm " + string(state))
	case types.StateValueAlarm:
		return failReading("alarm %s", state)
	}
	return failReading("alarm %s in unknown state %q", name, state)
}

func readMetric(ctx context.Context, c *cloudwatch.Client, cw *release.CloudWatchAnalysis, now time.Time) reading {
	period := cw.Period.Duration
	if period <= 0 {
		period = defaultCloudWatchPeriod
	}
	window := cw.Window.Duration
	if window <= 0 {
		window = defaultCloudWatchWindow
	}
	stat := cw.Stat
	if stat == "" {
		stat = defaultCloudWatchStat
	}
	metric := &types.Metric{Namespace: aws.String(cw.Namespace), MetricName: aws.String(cw.Metric)}
	for _, k := range slices.Sorted(maps.Keys(cw.Dimensions)) {
		metric.Dimensions = append(metric.Dimensions, types.Dimension{Name: aws.String(k), Value: aws.String(cw.Dimensions[k])})
	}
	out, err := c.GetMetricData(ctx, &cloudwatch.GetMetricDataInput{
		StartTime: aws.Time(now.Add(-window)),
		EndTime:   aws.Time(now),
		ScanBy:    types.ScanByTimestampDescending,
		MetricDataQueries: []types.MetricDataQuery{{
			Id: aws.String("m"),
			MetricStat: &types.MetricStat{
				Metric: metric,
				Period: aws.Int32(int32(max(period/time.Second, 1))),
				Stat:   aws.String(stat),
			},
			ReturnData: aws.Bool(true),
		}},
	})
	if err != nil {
		return failReading("get metric data %s/%s: %v", cw.Namespace, cw.Metric, err)
	}
	// The latest datapoint, whatever order the answer has.
	var latest time.Time
	found := false
	var value float64
	for _, r := range out.MetricDataResults {
		for i, ts := range r.Timestamps {
			if i < len(r.Values) && (!found || ts.After(latest)) {
				latest, value, found = ts, r.Values[i], true
			}
		}
	}
	if !found {
		return noDataReading(fmt.Sprintf("no datapoints in the last %s", window))
	}
	return valueReading(value)
}
