package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/keelson-dev/keelson/activities/traffic"
	"github.com/keelson-dev/keelson/release"
)

// TrafficRestoreWorkflow is the restore's workflow type name, as registered.
const TrafficRestoreWorkflow = "TrafficRestore"

// TrafficRestoreID is the workflow ID of the restore of region's share
// after the failover of releaseID: one restore per failover, so a repeated
// command finds the first.
func TrafficRestoreID(releaseID, region string) string {
	return "traffic-restore-" + releaseID + "-" + sanitize(region)
}

// TrafficRestoreInput gives a region its share of the failover name back.
type TrafficRestoreInput struct {
	// ReleaseID is the release whose failover took the share.
	ReleaseID   string           `json:"releaseId"`
	Application string           `json:"application"`
	Region      string           `json:"region"`
	Failover    release.Failover `json:"failover"`
	User        string           `json:"user"`
	Reason      string           `json:"reason,omitempty"`
	Via         string           `json:"via,omitempty"`
}

// TrafficRestoreResult is what the restore found and left.
type TrafficRestoreResult struct {
	Region string         `json:"region"`
	Weight int            `json:"weight"`
	Before map[string]int `json:"before"`
	After  map[string]int `json:"after"`
	User   string         `json:"user"`
	Reason string         `json:"reason,omitempty"`
	At     time.Time      `json:"at"`
}

// TrafficRestore sets a region's weight in the failover name back to the
// file's: the person's answer to a failover. It is a workflow, not a call
// from the CLI, so that the change is made with the worker's AWS
// credentials and stays in a history with who asked and why.
func TrafficRestore(ctx workflow.Context, in *TrafficRestoreInput) (*TrafficRestoreResult, error) {
	if in == nil || in.Region == "" || in.User == "" {
		return nil, temporal.NewNonRetryableApplicationError("traffic restore needs a region and a user", "BadInput", nil)
	}
	weight, found := 0, false
	for _, fr := range in.Failover.Regions {
		if fr.Region == in.Region {
			weight, found = fr.Weight, true
		}
	}
	if !found {
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("region %s has no record in the failover name %s", in.Region, in.Failover.Record), "BadInput", nil)
	}
	var t *traffic.Activities
	target := traffic.RegionsTarget("", in.Failover)
	res := &TrafficRestoreResult{Region: in.Region, Weight: weight, User: in.User, Reason: in.Reason}
	var before traffic.Weights
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, trafficOptions("read the regions' weights")), t.GetWeights, target).Get(ctx, &before); err != nil {
		return nil, fmt.Errorf("read the weights of %s: %w", in.Failover.Record, err)
	}
	res.Before = before
	var set traffic.SetResult
	opts := trafficOptions(fmt.Sprintf("restore %s's share: weight %d, asked by %s", in.Region, weight, in.User))
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), t.SetWeights,
		traffic.SetInput{Target: target, Weights: traffic.Weights{in.Region: weight}}).Get(ctx, &set); err != nil {
		return nil, fmt.Errorf("restore %s's weight in %s: %w", in.Region, in.Failover.Record, err)
	}
	res.After, res.At = set.After, workflow.Now(ctx)
	workflow.GetLogger(ctx).Info("Traffic restored", "release", in.ReleaseID, "region", in.Region, "weight", weight, "user", in.User, "before", before, "after", set.After)
	return res, nil
}
