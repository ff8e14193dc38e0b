package control

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/keelson-dev/keelson/activities/train"
	"github.com/keelson-dev/keelson/release"
	"github.com/keelson-dev/keelson/workflows"
)

// A Keelson schedule is a Temporal Schedule whose action starts a Train
// (workflows/train.go) in Keelson's task queue, with the release file's spec
// in the action's input. Its ID is the name people give it; its memo says
// which file, and which digest of it, the schedule releases.

// Memo keys of a Keelson schedule (MemoSchedule and MemoApplication are on
// its trains too).
const (
	MemoSchedule    = "KeelsonSchedule"
	MemoApplication = "KeelsonApplication"
	MemoFile        = "KeelsonFile"
	MemoFileDigest  = "KeelsonFileDigest"
	MemoVersionFrom = "KeelsonVersionFrom"
	MemoWhen        = "KeelsonWhen"
	MemoCreatedBy   = "KeelsonCreatedBy"
)

// ErrExists: a schedule of that name exists already.
var ErrExists = errors.New("already exists")

var scheduleName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

// ValidateScheduleName checks a schedule name: it is the schedule's ID and
// part of its trains' workflow IDs, so it stays short and plain.
func ValidateScheduleName(name string) error {
	if !scheduleName.MatchString(name) {
		return fmt.Errorf("schedule name %q: want letters, digits, '.', '_' and '-', starting with a letter or digit, at most 100 characters", name)
	}
	return nil
}

// Overlap policies by the names the CLI takes.
var overlapNames = []struct {
	name   string
	policy enumspb.ScheduleOverlapPolicy
}{
	{"skip", enumspb.SCHEDULE_OVERLAP_POLICY_SKIP},
	{"buffer-one", enumspb.SCHEDULE_OVERLAP_POLICY_BUFFER_ONE},
	{"buffer-all", enumspb.SCHEDULE_OVERLAP_POLICY_BUFFER_ALL},
	{"cancel-other", enumspb.SCHEDULE_OVERLAP_POLICY_CANCEL_OTHER},
	{"terminate-other", enumspb.SCHEDULE_OVERLAP_POLICY_TERMINATE_OTHER},
	{"allow-all", enumspb.SCHEDULE_OVERLAP_POLICY_ALLOW_ALL},
}

// ParseOverlap reads an overlap policy name: skip, buffer-one, buffer-all,
// cancel-other, terminate-other or allow-all.
func ParseOverlap(s string) (enumspb.ScheduleOverlapPolicy, error) {
	var names []string
	for _, o := range overlapNames {
		if o.name == s {
			return o.policy, nil
		}
		names = append(names, o.name)
	}
	return 0, fmt.Errorf("overlap policy %q: want one of %s", s, strings.Join(names, ", "))
}

// OverlapName is the CLI's name of an overlap policy.
func OverlapName(p enumspb.ScheduleOverlapPolicy) string {
	for _, o := range overlapNames {
		if o.policy == p {
			return o.name
		}
	}
	if p == enumspb.SCHEDULE_OVERLAP_POLICY_UNSPECIFIED {
		return "skip"
	}
	return p.String()
}

// ScheduleOptions are the choices of `keelson schedule create`.
type ScheduleOptions struct {
	Name string
	Spec *release.Spec
	// Bundle is the digest of the bundle Spec's paths are in: every train
	// of the schedule releases that chart and stack.
	Bundle string
	// File is the release file as given and Digest its SHA-256
	// ("sha256:<hex>"), for the memo.
	File   string
	Digest string
	// VersionFrom is where each train finds its version.
	VersionFrom train.VersionSource
	// Cron expressions and calendars (their union); When is how they were
	// written, for describe (the server keeps only its compiled form).
	Cron      []string
	Calendars []client.ScheduleCalendarSpec
	When      string
	// TimeZone is the zone the clock times are read in; UTC when empty.
	TimeZone      string
	Jitter        time.Duration
	CatchupWindow time.Duration
	// Overlap is skip when unspecified.
	Overlap   enumspb.ScheduleOverlapPolicy
	Paused    bool
	Note      string
	CreatedBy string
}

// ScheduleCreated is what create returns.
type ScheduleCreated struct {
	Name string
	Next []time.Time
	URL  string
}

// CreateSchedule creates the schedule. A name already taken is refused with
// ErrExists: changing what a schedule releases is a decision (delete, then
// create), not a side effect of running create twice.
func (c *Client) CreateSchedule(ctx context.Context, o ScheduleOptions) (*ScheduleCreated, error) {
	if err := ValidateScheduleName(o.Name); err != nil {
		return nil, &Error{Message: err.Error()}
	}
	if o.Spec == nil {
		return nil, &Error{Message: "create schedule " + o.Name + ": no release spec"}
	}
	if err := o.VersionFrom.Validate(); err != nil {
		return nil, &Error{Message: "create schedule " + o.Name + ": " + err.Error()}
	}
	if len(o.Cron) == 0 && len(o.Calendars) == 0 {
		return nil, &Error{Message: "create schedule " + o.Name + ": no --cron and no --calendar: when should it run?"}
	}
	overlap := o.Overlap
	if overlap == enumspb.SCHEDULE_OVERLAP_POLICY_UNSPECIFIED {
		overlap = enumspb.SCHEDULE_OVERLAP_POLICY_SKIP
	}
	app := o.Spec.Application
	in := &workflows.TrainInput{Schedule: o.Name, Spec: *o.Spec, VersionFrom: o.VersionFrom, StartedBy: o.CreatedBy, FileDigest: o.Digest, Bundle: o.Bundle}
	if err := c.signSchedule(in); err != nil {
		return nil, err
	}
	note := o.Note
	if note == "" && o.Paused {
		note = "created paused by " + o.CreatedBy
	}
	_, err := c.T.ScheduleClient().Create(ctx, client.ScheduleOptions{
		ID: o.Name,
		Spec: client.ScheduleSpec{
			CronExpressions: o.Cron,
			Calendars:       o.Calendars,
			TimeZoneName:    o.TimeZone,
			Jitter:          o.Jitter,
		},
		Action: &client.ScheduleWorkflowAction{
			ID:            workflows.TrainID(o.Name),
			Workflow:      workflows.TrainWorkflow,
			Args:          []any{in},
			TaskQueue:     c.TaskQueue,
			Memo:          map[string]any{"KeelsonSchedule": o.Name, MemoApplication: app},
			StaticSummary: fmt.Sprintf("train of schedule %s: %s, version from %s", o.Name, app, o.VersionFrom),
		},
		Overlap:       overlap,
		CatchupWindow: o.CatchupWindow,
		Paused:        o.Paused,
		Note:          note,
		Memo: map[string]any{
			MemoApplication: app,
			MemoFile:        o.File,
			MemoFileDigest:  o.Digest,
			MemoVersionFrom: o.VersionFrom.String(),
			MemoWhen:        o.When,
			MemoCreatedBy:   o.CreatedBy,
		},
	})
	if err != nil {
		return nil, c.scheduleError("create", o.Name, err)
	}
	res := &ScheduleCreated{Name: o.Name, URL: c.ScheduleURL(o.Name)}
	// The server computes the times; asking it is the one way to show
	// exactly what it will do (zone rules, jitter aside).
	if d, err := c.T.ScheduleClient().GetHandle(ctx, o.Name).Describe(ctx); err == nil {
		res.Next = d.Info.NextActionTimes
	}
	return res, nil
}

// ScheduleURL is the schedule's page in the Temporal Web UI.
func (c *Client) ScheduleURL(name string) string {
	return strings.TrimRight(c.UIBaseURL, "/") + "/namespaces/" + url.PathEscape(c.Namespace) + "/schedules/" + url.PathEscape(name)
}

// ScheduleSummary is one schedule in a list.
type ScheduleSummary struct {
	Name        string    `json:"name"`
	Application string    `json:"application,omitempty"`
	When        string    `json:"when,omitempty"`
	TimeZone    string    `json:"timeZone,omitempty"`
	VersionFrom string    `json:"versionFrom,omitempty"`
	Paused      bool      `json:"paused,omitempty"`
	Note        string    `json:"note,omitempty"`
	Next        time.Time `json:"next,omitempty"`
	// LastRun is when its latest train started; zero if none yet.
	LastRun time.Time `json:"lastRun,omitempty"`
	LastID  string    `json:"lastId,omitempty"`
}

// ListSchedules lists Keelson's schedules (those whose action starts a
// Train), of one application when application is set, by name.
func (c *Client) ListSchedules(ctx context.Context, application string) ([]ScheduleSummary, error) {
	it, err := c.T.ScheduleClient().List(ctx, client.ScheduleListOptions{PageSize: 100})
	if err != nil {
		return nil, c.scheduleError("list", "schedules", err)
	}
	var out []ScheduleSummary
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return nil, c.scheduleError("list", "schedules", err)
		}
		if e.WorkflowType.Name != workflows.TrainWorkflow {
			continue
		}
		memo := c.decodeMemo(e.Memo)
		s := ScheduleSummary{
			Name:        e.ID,
			Application: memo[MemoApplication],
			When:        memo[MemoWhen],
			VersionFrom: memo[MemoVersionFrom],
			Paused:      e.Paused,
			Note:        e.Note,
		}
		if e.Spec != nil {
			s.TimeZone = e.Spec.TimeZoneName
		}
		if application != "" && s.Application != application {
			continue
		}
		if len(e.NextActionTimes) > 0 {
			s.Next = e.NextActionTimes[0]
		}
		if n := len(e.RecentActions); n > 0 {
			s.LastRun = e.RecentActions[n-1].ActualTime
			if w := e.RecentActions[n-1].StartWorkflowResult; w != nil {
				s.LastID = w.WorkflowID
			}
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b ScheduleSummary) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// ScheduleDetails is what `keelson schedule describe` shows.
type ScheduleDetails struct {
	Name        string `json:"name"`
	Application string `json:"application,omitempty"`
	File        string `json:"file,omitempty"`
	Digest      string `json:"digest,omitempty"`
	VersionFrom string `json:"versionFrom,omitempty"`
	When        string `json:"when,omitempty"`
	CreatedBy   string `json:"createdBy,omitempty"`
	// Calendars are the server's compiled form of the cron expressions and
	// calendars, for when When is empty (made by another tool).
	Calendars     []string      `json:"calendars,omitempty"`
	TimeZone      string        `json:"timeZone,omitempty"`
	Jitter        time.Duration `json:"jitter,omitempty"`
	CatchupWindow time.Duration `json:"catchupWindow,omitempty"`
	Overlap       string        `json:"overlap,omitempty"`
	Paused        bool          `json:"paused"`
	Note          string        `json:"note,omitempty"`
	Created       time.Time     `json:"created,omitempty"`
	Updated       time.Time     `json:"updated,omitempty"`
	// Actions taken, skipped because the last train still ran, and missed
	// because the server was down longer than the catch-up window.
	Actions        int         `json:"actions"`
	SkippedOverlap int         `json:"skippedOverlap"`
	MissedCatchup  int         `json:"missedCatchup"`
	Running        []string    `json:"running,omitempty"`
	Next           []time.Time `json:"next,omitempty"`
	// Runs are the latest trains, newest first, with what they did.
	Runs []TrainRun `json:"runs,omitempty"`
	// Spec is the release file the trains release (the action's input).
	Spec *release.Spec `json:"-"`
	URL  string        `json:"url,omitempty"`
}

// TrainRun is one train a schedule started and what became of it.
type TrainRun struct {
	Scheduled time.Time `json:"scheduled,omitempty"`
	Started   time.Time `json:"started,omitempty"`
	TrainID   string    `json:"trainId,omitempty"`
	RunID     string    `json:"runId,omitempty"`
	// Status is Temporal's: Running, Completed, Failed, Canceled...
	Status    string `json:"status,omitempty"`
	Version   string `json:"version,omitempty"`
	ReleaseID string `json:"releaseId,omitempty"`
	// Outcome is the train's; Phase the release's (from visibility while
	// it runs, from the train's result after).
	Outcome workflows.TrainOutcome `json:"outcome,omitempty"`
	Phase   string                 `json:"phase,omitempty"`
	Message string                 `json:"message,omitempty"`
}

// DescribeSchedule describes a Keelson schedule and its latest trains.
func (c *Client) DescribeSchedule(ctx context.Context, name string) (*ScheduleDetails, error) {
	_, d, in, err := c.keelsonSchedule(ctx, "describe", name)
	if err != nil {
		return nil, err
	}
	memo := c.decodeMemo(d.Memo)
	det := &ScheduleDetails{
		Name:           name,
		Application:    memo[MemoApplication],
		File:           memo[MemoFile],
		Digest:         memo[MemoFileDigest],
		VersionFrom:    memo[MemoVersionFrom],
		When:           memo[MemoWhen],
		CreatedBy:      memo[MemoCreatedBy],
		Created:        d.Info.CreatedAt,
		Updated:        d.Info.LastUpdateAt,
		Actions:        d.Info.NumActions,
		SkippedOverlap: d.Info.NumActionsSkippedOverlap,
		MissedCatchup:  d.Info.NumActionsMissedCatchupWindow,
		Next:           d.Info.NextActionTimes,
		URL:            c.ScheduleURL(name),
	}
	if in != nil {
		spec := in.Spec
		det.Spec = &spec
	}
	if s := d.Schedule.Spec; s != nil {
		det.TimeZone, det.Jitter = s.TimeZoneName, s.Jitter
		for _, cal := range s.Calendars {
			det.Calendars = append(det.Calendars, FormatCalendar(cal))
		}
	}
	if p := d.Schedule.Policy; p != nil {
		det.Overlap, det.CatchupWindow = OverlapName(p.Overlap), p.CatchupWindow
	}
	if st := d.Schedule.State; st != nil {
		det.Paused, det.Note = st.Paused, st.Note
	}
	for _, w := range d.Info.RunningWorkflows {
		det.Running = append(det.Running, w.WorkflowID)
	}
	for i := len(d.Info.RecentActions) - 1; i >= 0; i-- {
		a := d.Info.RecentActions[i]
		run := TrainRun{Scheduled: a.ScheduleTime, Started: a.ActualTime}
		if w := a.StartWorkflowResult; w != nil {
			run.TrainID, run.RunID = w.WorkflowID, w.FirstExecutionRunID
			c.readTrain(ctx, &run)
		}
		det.Runs = append(det.Runs, run)
	}
	return det, nil
}

// readTrain fills in what a train did. Each train costs a describe and, once
// closed, its result; a train that cannot be read says why in its Message
// rather than failing the whole description.
func (c *Client) readTrain(ctx context.Context, run *TrainRun) {
	d, err := c.T.DescribeWorkflowExecution(ctx, run.TrainID, run.RunID)
	if err != nil {
		if isNotFound(err) {
			run.Status, run.Message = "gone", "no longer in Temporal (past the namespace's retention)"
			return
		}
		run.Message = "could not read the train: " + oneLine(err.Error())
		return
	}
	info := d.GetWorkflowExecutionInfo()
	run.Status = statusName(info.GetStatus().String())
	memo := c.decodeMemo(info.GetMemo())
	run.Version, run.ReleaseID = memo[workflows.MemoTrainVersion], memo[workflows.MemoTrainRelease]
	releaseRun := memo[workflows.MemoTrainReleaseRun]
	switch info.GetStatus() {
	case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
		if run.ReleaseID == "" {
			run.Message = "resolving the version"
			if run.Version != "" {
				run.Message = "checking the last successful release"
			}
			return
		}
		rd, err := c.T.DescribeWorkflowExecution(ctx, run.ReleaseID, releaseRun)
		if err != nil {
			run.Message = "could not read " + run.ReleaseID + ": " + oneLine(err.Error())
			return
		}
		run.Phase = keyword(rd.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields(), workflows.SearchAttrPhase)
		run.Message = "waiting for " + run.ReleaseID
	case enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
		var res workflows.TrainResult
		if err := c.T.GetWorkflow(ctx, run.TrainID, run.RunID).Get(ctx, &res); err != nil {
			run.Message = "could not read the train's result: " + oneLine(err.Error())
			return
		}
		run.Version, run.ReleaseID, run.Outcome, run.Phase, run.Message = res.Version, res.ReleaseID, res.Outcome, string(res.Phase), res.Message
	default:
		err := c.T.GetWorkflow(ctx, run.TrainID, run.RunID).Get(ctx, nil)
		var (
			we  *temporal.WorkflowExecutionError
			app *temporal.ApplicationError
		)
		if errors.As(err, &app) {
			run.Message = oneLine(app.Message())
		} else if errors.As(err, &we) {
			run.Message = oneLine(causeOf(we))
		} else if err != nil {
			run.Message = oneLine(err.Error())
		}
	}
}

// PauseSchedule stops the schedule from starting trains until unpaused;
// trains and releases already running go on.
func (c *Client) PauseSchedule(ctx context.Context, name, note string) error {
	h, _, _, err := c.keelsonSchedule(ctx, "pause", name)
	if err != nil {
		return err
	}
	return c.scheduleError("pause", name, h.Pause(ctx, client.SchedulePauseOptions{Note: note}))
}

// UnpauseSchedule lets the schedule start trains again from its next time;
// the times missed while paused are not made up.
func (c *Client) UnpauseSchedule(ctx context.Context, name, note string) error {
	h, _, _, err := c.keelsonSchedule(ctx, "unpause", name)
	if err != nil {
		return err
	}
	return c.scheduleError("unpause", name, h.Unpause(ctx, client.ScheduleUnpauseOptions{Note: note}))
}

// TriggerSchedule starts a train now, under the schedule's overlap policy
// unless overlap is set: with skip, nothing starts while a train runs.
func (c *Client) TriggerSchedule(ctx context.Context, name string, overlap enumspb.ScheduleOverlapPolicy) error {
	h, _, _, err := c.keelsonSchedule(ctx, "trigger", name)
	if err != nil {
		return err
	}
	return c.scheduleError("trigger", name, h.Trigger(ctx, client.ScheduleTriggerOptions{Overlap: overlap}))
}

// BackfillSchedule takes the actions the schedule would have taken between
// start and end, now, under its overlap policy unless overlap is set.
func (c *Client) BackfillSchedule(ctx context.Context, name string, start, end time.Time, overlap enumspb.ScheduleOverlapPolicy) error {
	if !end.After(start) {
		return &Error{Message: fmt.Sprintf("backfill schedule %s: the end %s is not after the start %s", name, end.UTC().Format(time.RFC3339), start.UTC().Format(time.RFC3339))}
	}
	h, _, _, err := c.keelsonSchedule(ctx, "backfill", name)
	if err != nil {
		return err
	}
	return c.scheduleError("backfill", name, h.Backfill(ctx, client.ScheduleBackfillOptions{
		Backfill: []client.ScheduleBackfill{{Start: start, End: end, Overlap: overlap}},
	}))
}

// DeleteSchedule deletes the schedule. Its running train and release are
// not touched: deleting a calendar never stops a rollout (keelson abort does).
func (c *Client) DeleteSchedule(ctx context.Context, name string) error {
	h, _, _, err := c.keelsonSchedule(ctx, "delete", name)
	if err != nil {
		return err
	}
	return c.scheduleError("delete", name, h.Delete(ctx))
}

// keelsonSchedule finds the schedule and checks that it is Keelson's, so
// that a typo does not pause or delete another tool's schedule. It returns
// the train input of its action too.
func (c *Client) keelsonSchedule(ctx context.Context, verb, name string) (client.ScheduleHandle, *client.ScheduleDescription, *workflows.TrainInput, error) {
	if err := ValidateScheduleName(name); err != nil {
		return nil, nil, nil, &Error{Message: err.Error()}
	}
	h := c.T.ScheduleClient().GetHandle(ctx, name)
	d, err := h.Describe(ctx)
	if err != nil {
		return nil, nil, nil, c.scheduleError(verb, name, err)
	}
	act, ok := d.Schedule.Action.(*client.ScheduleWorkflowAction)
	if !ok || act.Workflow != workflows.TrainWorkflow {
		what := "no workflow"
		if ok {
			what = fmt.Sprint(act.Workflow)
		}
		return nil, nil, nil, &Error{Kind: ErrRefused, Message: fmt.Sprintf("%s schedule %s: not a Keelson schedule (its action starts %s, not %s); use the temporal CLI", verb, name, what, workflows.TrainWorkflow)}
	}
	var in *workflows.TrainInput
	if len(act.Args) > 0 {
		if p, ok := act.Args[0].(*commonpb.Payload); ok {
			var ti workflows.TrainInput
			if err := c.converter().FromPayload(p, &ti); err == nil {
				in = &ti
			}
		}
	}
	return h, d, in, nil
}

// scheduleError turns a schedule call's error into an *Error that names the
// schedule.
func (c *Client) scheduleError(verb, name string, err error) error {
	if err == nil {
		return nil
	}
	var already *Error
	if errors.As(err, &already) {
		return err
	}
	var nf *serviceerror.NotFound
	switch {
	case errors.Is(err, temporal.ErrScheduleAlreadyRunning):
		return &Error{Kind: ErrExists, Message: fmt.Sprintf("%s schedule %s: a schedule of that name exists already (keelson schedule describe %s; delete it first to change it)", verb, name, name), Err: err}
	case errors.As(err, &nf):
		return &Error{Kind: ErrNotFound, Message: fmt.Sprintf("schedule %s not found (keelson schedule list)", name), Err: err}
	}
	return c.translate(op{name: verb, releaseID: "schedule " + name}, err)
}

// decodeMemo reads a memo's string fields; others are left out.
func (c *Client) decodeMemo(m *commonpb.Memo) map[string]string {
	out := map[string]string{}
	for k, p := range m.GetFields() {
		var s string
		if err := c.converter().FromPayload(p, &s); err == nil {
			out[k] = s
		}
	}
	return out
}
