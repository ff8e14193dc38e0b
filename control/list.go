package control

import (
	"context"
	"fmt"
	"strings"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"

	"github.com/keelson-dev/keelson/workflows"
)

// ListQuery filters releases; empty fields match everything.
type ListQuery struct {
	Application string
	Version     string
	Phase       string
	// Limit caps the number of releases returned, newest first; 50 when zero.
	Limit int
	// Attention keeps the releases a person should look at: waiting for an
	// approval, paused or held now, or failed or rolled back since
	// AttentionSince (AttentionQuery).
	Attention      bool
	AttentionSince time.Time
}

// AttentionQuery is the visibility filter of the releases that need a
// person: the same text works in the Web UI's search box.
func AttentionQuery(since time.Time) string {
	return fmt.Sprintf("(%s IN ('%s', '%s', '%s') OR (%s IN ('%s', '%s') AND CloseTime > '%s'))",
		workflows.SearchAttrPhase, workflows.PhaseAwaitGate, workflows.PhasePaused, workflows.PhaseHeld,
		workflows.SearchAttrPhase, workflows.PhaseFailed, workflows.PhaseRolledBack, since.UTC().Format(time.RFC3339))
}

// ReleaseInfo is one release as visibility sees it.
type ReleaseInfo struct {
	ReleaseID   string
	RunID       string
	Application string
	Version     string
	// Phase is the release's own phase (search attribute KeelsonPhase).
	Phase string
	// Status is Temporal's view: Running, Completed, Failed, Terminated...
	Status  string
	Started time.Time
	Closed  time.Time
}

// Visibility turns the filter into a visibility query.
func (q ListQuery) Visibility() string {
	clauses := []string{"WorkflowType = 'Release'"}
	add := func(attr, v string) {
		if v != "" {
			clauses = append(clauses, attr+" = '"+strings.ReplaceAll(v, "'", "\\'")+"'")
		}
	}
	add(workflows.SearchAttrApplication, q.Application)
	add(workflows.SearchAttrVersion, q.Version)
	add(workflows.SearchAttrPhase, q.Phase)
	if q.Attention {
		clauses = append(clauses, AttentionQuery(q.AttentionSince))
	}
	// No ORDER BY: the dev server's SQLite visibility refuses it, and every
	// store already lists newest first.
	return strings.Join(clauses, " AND ")
}

// List lists releases newest first.
func (c *Client) List(ctx context.Context, q ListQuery) ([]ReleaseInfo, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 50
	}
	var out []ReleaseInfo
	var token []byte
	for len(out) < limit {
		resp, err := c.T.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace:     c.Namespace,
			PageSize:      int32(min(limit-len(out), 100)),
			NextPageToken: token,
			Query:         q.Visibility(),
		})
		if err != nil {
			return nil, c.translate(op{name: "list", releaseID: "releases"}, err)
		}
		for _, e := range resp.GetExecutions() {
			info := ReleaseInfo{
				ReleaseID: e.GetExecution().GetWorkflowId(),
				RunID:     e.GetExecution().GetRunId(),
				Status:    statusName(e.GetStatus().String()),
				Started:   e.GetStartTime().AsTime(),
			}
			if e.GetCloseTime() != nil {
				info.Closed = e.GetCloseTime().AsTime()
			}
			fields := e.GetSearchAttributes().GetIndexedFields()
			info.Application = keyword(fields, workflows.SearchAttrApplication)
			info.Version = keyword(fields, workflows.SearchAttrVersion)
			info.Phase = keyword(fields, workflows.SearchAttrPhase)
			out = append(out, info)
		}
		token = resp.GetNextPageToken()
		if len(token) == 0 {
			break
		}
	}
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// statusName turns WORKFLOW_EXECUTION_STATUS_RUNNING into Running.
func statusName(s string) string {
	s = strings.TrimPrefix(s, "WORKFLOW_EXECUTION_STATUS_")
	if s == "" {
		return ""
	}
	s = strings.ToLower(strings.ReplaceAll(s, "_", "-"))
	return strings.ToUpper(s[:1]) + s[1:]
}

// keyword decodes a Keyword search attribute; they are plain JSON, never
// run through a payload codec.
func keyword(fields map[string]*commonpb.Payload, name string) string {
	p, ok := fields[name]
	if !ok {
		return ""
	}
	var s string
	if err := converter.GetDefaultDataConverter().FromPayload(p, &s); err != nil {
		return ""
	}
	return s
}
