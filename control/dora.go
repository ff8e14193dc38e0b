package control

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/temporal"

	"github.com/keelson-dev/keelson/dora"
	"github.com/keelson-dev/keelson/workflows"
)

// DoraQuery selects the releases DORA's figures are computed from: those
// of Application (all when empty) that closed at or after Since.
type DoraQuery struct {
	Application string
	Since       time.Time
	// Limit caps the releases read, newest first; 2000 when zero. A
	// period with more is reported as truncated, never silently cut.
	Limit int
	// Cache, when set, keeps the records of closed runs between calls
	// (they never change): the worker recomputes every minute and reads
	// only the runs it has not seen.
	Cache *RecordCache
}

// DoraData is what DoraRecords gathered.
type DoraData struct {
	Releases []dora.Release
	// Skipped counts the closed releases without a result (terminated,
	// timed out, failed with an error): no figure can use them.
	Skipped int
	// Truncated is set when the period held more releases than Limit.
	Truncated bool
	// Unreadable are the releases whose payloads are encrypted with keys
	// this client lacks (another team's workers in the same namespace, a
	// key not yet given to the reader): not counted, and named so that the
	// figures say what they leave out.
	Unreadable []string
}

// RecordCache keeps release records by run ID. Safe for concurrent use.
type RecordCache struct {
	mu sync.Mutex
	m  map[string]dora.Release
}

// doraFetches bounds the result and input reads in flight at once.
const doraFetches = 8

// DoraRecords lists the period's closed releases through visibility (the
// same Release workflows and search attributes as `keelson release list`),
// then reads each run's result (phase, regions changed, start and end)
// and input (commit time, undo): Temporal is the only store.
func (c *Client) DoraRecords(ctx context.Context, q DoraQuery) (DoraData, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 2000
	}
	query := doraVisibility(q.Application, q.Since)
	type run struct{ id, runID, status string }
	var runs []run
	var out DoraData
	var token []byte
	for {
		resp, err := c.T.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace:     c.Namespace,
			PageSize:      100,
			NextPageToken: token,
			Query:         query,
		})
		if err != nil {
			return DoraData{}, c.translate(op{name: "list", releaseID: "releases for DORA figures"}, err)
		}
		for _, e := range resp.GetExecutions() {
			if len(runs) == limit {
				out.Truncated = true
				break
			}
			runs = append(runs, run{e.GetExecution().GetWorkflowId(), e.GetExecution().GetRunId(), e.GetStatus().String()})
		}
		token = resp.GetNextPageToken()
		if len(token) == 0 || out.Truncated {
			break
		}
	}

	records := make([]*dora.Release, len(runs))
	errs := make([]error, len(runs))
	unreadable := make([]string, len(runs))
	sem := make(chan struct{}, doraFetches)
	var wg sync.WaitGroup
	for i, r := range runs {
		switch r.status {
		case enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED.String(), enumspb.WORKFLOW_EXECUTION_STATUS_FAILED.String():
			// Failed: a release that did not ship, with its result (a run
			// that failed without one is skipped when it is read).
		case enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW.String():
			// Its successor run carries on the same release.
			continue
		default:
			out.Skipped++
			continue
		}
		if rec, ok := q.Cache.get(r.runID); ok {
			records[i] = &rec
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			rec, err := c.doraRecord(ctx, r.id, r.runID)
			if err != nil && encryptedForOthers(err) {
				unreadable[i] = r.id
				return
			}
			if err != nil {
				errs[i] = fmt.Errorf("read release %s (run %s): %w", r.id, r.runID, err)
				return
			}
			records[i] = rec
		}()
	}
	wg.Wait()
	// One unreadable release fails the whole gathering: figures computed
	// without it would be wrong without saying so.
	if err := errors.Join(errs...); err != nil {
		return DoraData{}, err
	}
	for _, id := range unreadable {
		if id != "" {
			out.Unreadable = append(out.Unreadable, id)
		}
	}
	keep := map[string]dora.Release{}
	for _, rec := range records {
		if rec != nil {
			out.Releases = append(out.Releases, *rec)
			keep[rec.RunID] = *rec
		}
	}
	// Only the runs still in the period stay cached, so the cache is as
	// large as one period, whatever the worker's uptime.
	q.Cache.replace(q.Application, keep)
	return out, nil
}

// doraVisibility lists the Release runs that closed since a time. Every
// visibility store (the dev server's SQLite too) supports these clauses.
func doraVisibility(application string, since time.Time) string {
	clauses := []string{
		"WorkflowType = 'Release'",
		"ExecutionStatus != 'Running'",
		"CloseTime >= '" + since.UTC().Format(time.RFC3339Nano) + "'",
	}
	if application != "" {
		clauses = append(clauses, workflows.SearchAttrApplication+" = '"+strings.ReplaceAll(application, "'", "\\'")+"'")
	}
	return strings.Join(clauses, " AND ")
}

// doraRecord reads one completed run's result and input.
func (c *Client) doraRecord(ctx context.Context, id, runID string) (*dora.Release, error) {
	var res workflows.ReleaseResult
	if err := c.T.GetWorkflow(ctx, id, runID).Get(ctx, &res); err != nil {
		r, ok := workflows.ResultFromError(err)
		var we *temporal.WorkflowExecutionError
		switch {
		case ok:
			// A release that did not ship closes as Failed with its result.
			res = *r
		case errors.As(err, &we):
			// Failed without a result (a bug, not an outcome): no record.
			return nil, nil
		default:
			return nil, fmt.Errorf("result: %w", err)
		}
	}
	in, err := c.startInput(ctx, id, runID)
	if err != nil {
		return nil, fmt.Errorf("input: %w", err)
	}
	rec := &dora.Release{
		Application: res.Application,
		ReleaseID:   id,
		RunID:       runID,
		Version:     res.Version,
		Phase:       string(res.Phase),
		Started:     res.Started,
		Finished:    res.Finished,
		CommitTime:  in.CommitTime,
	}
	for _, r := range res.Regions {
		rec.Changed = rec.Changed || r.Changed
	}
	if in.Undo != nil {
		rec.Undo, rec.UndoesReleaseID, rec.UndoesRunID = true, in.Undo.ReleaseID, in.Undo.RunID
	}
	return rec, nil
}

// startInput reads the input a run started with from its first history
// event alone: a page of one event, not the whole history of a long
// release.
func (c *Client) startInput(ctx context.Context, id, runID string) (*workflows.ReleaseInput, error) {
	resp, err := c.T.WorkflowService().GetWorkflowExecutionHistory(ctx, &workflowservice.GetWorkflowExecutionHistoryRequest{
		Namespace:       c.Namespace,
		Execution:       &commonpb.WorkflowExecution{WorkflowId: id, RunId: runID},
		MaximumPageSize: 1,
	})
	if err != nil {
		return nil, err
	}
	events := resp.GetHistory().GetEvents()
	if len(events) == 0 || events[0].GetWorkflowExecutionStartedEventAttributes() == nil {
		return nil, errors.New("history does not start with the release's start")
	}
	var in workflows.ReleaseInput
	if err := c.converter().FromPayloads(events[0].GetWorkflowExecutionStartedEventAttributes().GetInput(), &in); err != nil {
		return nil, fmt.Errorf("decode the release's input: %w", err)
	}
	return &in, nil
}

func (rc *RecordCache) get(runID string) (dora.Release, bool) {
	if rc == nil {
		return dora.Release{}, false
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	r, ok := rc.m[runID]
	return r, ok
}

// replace keeps exactly keep; a query of one application only replaces
// that application's entries.
func (rc *RecordCache) replace(application string, keep map[string]dora.Release) {
	if rc == nil {
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for k, r := range rc.m {
		if application != "" && r.Application != application {
			keep[k] = r
		}
	}
	rc.m = keep
}

// encryptedForOthers tells a payload this client cannot decrypt: encrypted
// while it has no keys, or with a key it does not hold. Any other error
// reading a release still fails the gathering.
func encryptedForOthers(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "encoding binary/encrypted: payload encoding is not supported") ||
		strings.Contains(msg, "decrypt payload: unknown key id")
}
