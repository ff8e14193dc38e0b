package control

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/keelson-dev/keelson/workflows"
)

// RestoreOptions are the choices of `keelson traffic restore`.
type RestoreOptions struct {
	Region string
	// ReleaseID is the release whose failover took the region's share;
	// when empty, the latest release of Application that failed the
	// region over.
	ReleaseID   string
	Application string
	User        string
	Reason      string
	Via         string
}

// RestoreResult is a finished restore.
type RestoreResult struct {
	RestoreID string
	ReleaseID string
	// Existing is true when the region had already been restored for this
	// failover: Result is that restore's.
	Existing bool
	Result   workflows.TrafficRestoreResult
	URL      string
}

// RestoreTraffic gives a region back the share a failover took from it,
// through the TrafficRestore workflow, and waits for the weights to be
// read back. The release must have finished: a running release is still
// stopping the line, and its rollback comes first.
func (c *Client) RestoreTraffic(ctx context.Context, o RestoreOptions) (RestoreResult, error) {
	if o.Region == "" {
		return RestoreResult{}, errors.New("traffic restore: no region")
	}
	id := o.ReleaseID
	if id == "" {
		if o.Application == "" {
			return RestoreResult{}, errors.New("traffic restore: name the release or the application")
		}
		found, err := c.lastFailover(ctx, o.Application, o.Region)
		if err != nil {
			return RestoreResult{}, err
		}
		id = found
	}
	opName := op{name: "traffic restore for", releaseID: id}
	d, err := c.T.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return RestoreResult{}, c.translate(opName, err)
	}
	info := d.GetWorkflowExecutionInfo()
	if info.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return RestoreResult{}, &Error{Kind: ErrRefused, Message: fmt.Sprintf(
			"traffic restore %s: release %s is still running; its share comes back once it has finished (`keelson release watch %s`)", o.Region, id, id)}
	}
	res, err := c.Result(ctx, id)
	if err != nil {
		return RestoreResult{}, err
	}
	if !slices.ContainsFunc(res.Failovers, func(f workflows.Failover) bool { return f.Region == o.Region }) {
		return RestoreResult{}, &Error{Kind: ErrRefused, Message: fmt.Sprintf(
			"traffic restore %s: release %s did not fail %s over (failovers: %s)", o.Region, id, o.Region, failoverRegions(res.Failovers))}
	}
	in, err := c.releaseInput(ctx, id, info.GetExecution().GetRunId())
	if err != nil {
		return RestoreResult{}, c.translate(opName, err)
	}
	if in.Spec.Failover == nil {
		return RestoreResult{}, &Error{Kind: ErrRefused, Message: fmt.Sprintf("traffic restore %s: release %s has no failover section", o.Region, id)}
	}
	restoreID := workflows.TrafficRestoreID(id, o.Region)
	out := RestoreResult{RestoreID: restoreID, ReleaseID: id, URL: c.URL(restoreID)}
	if prev := c.T.GetWorkflow(ctx, restoreID, ""); prev != nil {
		if err := prev.Get(ctx, &out.Result); err == nil {
			out.Existing = true
			return out, nil
		}
	}
	sopts := client.StartWorkflowOptions{
		ID:        restoreID,
		TaskQueue: c.TaskQueue,
		// One restore per failover; a failed one (AWS unreachable) may
		// run again.
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		StaticSummary:            fmt.Sprintf("restore %s's share of %s after the failover of %s, asked by %s", o.Region, in.Spec.Failover.Record, id, o.User),
	}
	run, err := c.T.ExecuteWorkflow(ctx, sopts, workflows.TrafficRestoreWorkflow, &workflows.TrafficRestoreInput{
		ReleaseID: id, Application: in.Spec.Application, Region: o.Region, Failover: *in.Spec.Failover,
		User: o.User, Reason: o.Reason, Via: o.Via,
	})
	if err != nil {
		return RestoreResult{}, c.translate(op{name: "start", releaseID: restoreID}, err)
	}
	if err := run.Get(ctx, &out.Result); err != nil {
		return RestoreResult{}, &Error{Message: oneLine(fmt.Sprintf("traffic restore %s (%s) failed: %v", o.Region, restoreID, err)), Err: err}
	}
	return out, nil
}

// lastFailover finds the newest finished release of application that failed
// region over.
func (c *Client) lastFailover(ctx context.Context, application, region string) (string, error) {
	list, err := c.List(ctx, ListQuery{Application: application, Limit: 20})
	if err != nil {
		return "", err
	}
	for _, info := range list {
		if info.Status == "Running" {
			continue
		}
		res, err := c.Result(ctx, info.ReleaseID)
		if err != nil {
			continue
		}
		if slices.ContainsFunc(res.Failovers, func(f workflows.Failover) bool { return f.Region == region }) {
			return info.ReleaseID, nil
		}
	}
	return "", &Error{Kind: ErrRefused, Message: fmt.Sprintf(
		"traffic restore %s: none of the last 20 finished releases of %s failed %s over", region, application, region)}
}

func failoverRegions(fs []workflows.Failover) string {
	if len(fs) == 0 {
		return "none"
	}
	var names []string
	for _, f := range fs {
		names = append(names, f.Region)
	}
	return strings.Join(names, ", ")
}
