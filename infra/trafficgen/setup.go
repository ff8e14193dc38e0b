package main

// setup creates what the lab's releases steer and read in moto, which keeps
// everything in memory: the hosted zone, each application's weighted
// records per region (all users on stable) and its failover name over the
// regions, and an error alarm per region on the canary's CloudWatch
// metrics. Records that exist are left as they are, so running it again
// (every `make up`) never undoes a weight a running release has set;
// --reset sets them back.

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"
)

const recordTTL = 30

type setupInput struct {
	apps      []string
	namespace string
	regions   []string
	reset     bool
}

// wantedRecords are the records of the applications in the regions.
func wantedRecords(zone string, apps []string, namespace string, regions []string) []types.ResourceRecordSet {
	weighted := func(name, id string, weight int64, value string) types.ResourceRecordSet {
		return types.ResourceRecordSet{
			Name: aws.String(name), Type: types.RRTypeCname, TTL: aws.Int64(recordTTL),
			SetIdentifier: aws.String(id), Weight: aws.Int64(weight),
			ResourceRecords: []types.ResourceRecord{{Value: aws.String(value)}},
		}
	}
	var sets []types.ResourceRecordSet
	for _, app := range apps {
		for _, region := range regions {
			name := fmt.Sprintf("%s.%s.%s", app, region, zone)
			sets = append(sets,
				weighted(name, sideStable, 100, fmt.Sprintf("%s.%s.%s.%s", app, namespace, region, zone)),
				weighted(name, sideCanary, 0, fmt.Sprintf("%s-canary.%s.%s.%s", app, namespace, region, zone)),
			)
		}
		for _, region := range regions {
			sets = append(sets, weighted(app+"."+zone, region, 100, fmt.Sprintf("%s.%s.%s", app, region, zone)))
		}
	}
	return sets
}

func setup(ctx context.Context, zone *r53, cw func(region string) *cloudwatch.Client, in setupInput, log *slog.Logger) error {
	id, err := zone.zoneID(ctx)
	if err != nil {
		return err
	}
	if id == "" {
		out, err := zone.client.CreateHostedZone(ctx, &route53.CreateHostedZoneInput{
			Name:            aws.String(zone.zone),
			CallerReference: aws.String(fmt.Sprintf("keelson-lab-%d", time.Now().UnixNano())),
		})
		if err != nil {
			return fmt.Errorf("create hosted zone %s: %w", zone.zone, err)
		}
		id = aws.ToString(out.HostedZone.Id)
		log.Info("hosted zone created", "zone", zone.zone, "id", id)
	}
	existing, err := zone.records(ctx, id)
	if err != nil {
		return err
	}
	exists := func(s types.ResourceRecordSet) bool {
		return slices.ContainsFunc(existing, func(e types.ResourceRecordSet) bool {
			return trimDot(aws.ToString(e.Name)) == aws.ToString(s.Name) &&
				aws.ToString(e.SetIdentifier) == aws.ToString(s.SetIdentifier)
		})
	}
	var changes []types.Change
	for _, s := range wantedRecords(zone.zone, in.apps, in.namespace, in.regions) {
		switch {
		case in.reset:
			changes = append(changes, types.Change{Action: types.ChangeActionUpsert, ResourceRecordSet: &s})
		case !exists(s):
			changes = append(changes, types.Change{Action: types.ChangeActionCreate, ResourceRecordSet: &s})
		}
	}
	if len(changes) > 0 {
		_, err := zone.client.ChangeResourceRecordSets(ctx, &route53.ChangeResourceRecordSetsInput{
			HostedZoneId: aws.String(id),
			ChangeBatch:  &types.ChangeBatch{Changes: changes, Comment: aws.String("keelson lab setup")},
		})
		if err != nil {
			return fmt.Errorf("change records of zone %s: %w", zone.zone, err)
		}
	}
	log.Info("records", "zone", zone.zone, "written", len(changes), "apps", in.apps, "regions", in.regions)

	for _, app := range in.apps {
		for _, region := range in.regions {
			name := fmt.Sprintf("%s-%s-errors", app, region)
			_, err := cw(region).PutMetricAlarm(ctx, &cloudwatch.PutMetricAlarmInput{
				AlarmName:          aws.String(name),
				AlarmDescription:   aws.String(fmt.Sprintf("More than 5 errors in 10s on the canary side of %s in %s", app, region)),
				Namespace:          aws.String(cloudWatchNamespace),
				MetricName:         aws.String("Errors"),
				Dimensions:         []cwtypes.Dimension{{Name: aws.String("Application"), Value: aws.String(app)}, {Name: aws.String("Region"), Value: aws.String(region)}, {Name: aws.String("Side"), Value: aws.String(sideCanary)}},
				Statistic:          cwtypes.StatisticSum,
				Period:             aws.Int32(10),
				EvaluationPeriods:  aws.Int32(1),
				Threshold:          aws.Float64(5),
				ComparisonOperator: cwtypes.ComparisonOperatorGreaterThanThreshold,
				TreatMissingData:   aws.String("notBreaching"),
			})
			if err != nil {
				return fmt.Errorf("put alarm %s in %s: %w", name, region, err)
			}
		}
	}
	log.Info("alarms", "written", len(in.apps)*len(in.regions), "name", "APP-REGION-errors")
	return nil
}
