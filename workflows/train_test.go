package workflows

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/keelson-dev/keelson/activities/train"
)

// trainHarness mocks the train's activities and its Release child and
// records what the train asked of them.
type trainHarness struct {
	env *testsuite.TestWorkflowEnvironment

	mu       sync.Mutex
	resolved train.ResolvedVersion
	resolve  error
	// resolveFn, when set, answers ResolveVersion instead.
	resolveFn func(train.ResolveVersionInput) (*train.ResolvedVersion, error)
	last      train.LastReleaseResult
	asked     []train.LastReleaseInput
	releases  []*ReleaseInput
	// release runs as the child Release; by default it succeeds at once.
	release func(ctx workflow.Context, in *ReleaseInput) (*ReleaseResult, error)
}

func newTrainEnv(t *testing.T) *trainHarness {
	t.Helper()
	var ts testsuite.WorkflowTestSuite
	h := &trainHarness{env: ts.NewTestWorkflowEnvironment()}
	h.env.RegisterWorkflow(Train)
	h.env.RegisterActivity(&train.Activities{})
	var a *train.Activities
	h.env.OnActivity(a.ResolveVersion, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in train.ResolveVersionInput) (*train.ResolvedVersion, error) {
			if h.resolveFn != nil {
				return h.resolveFn(in)
			}
			if h.resolve != nil {
				return nil, h.resolve
			}
			r := h.resolved
			r.From = in.Source.String()
			return &r, nil
		})
	h.env.OnActivity(a.LastRelease, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in train.LastReleaseInput) (*train.LastReleaseResult, error) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.asked = append(h.asked, in)
			r := h.last
			return &r, nil
		})
	// A stand-in registered under the Release's name, rather than a mock:
	// the test environment delivers a parent's cancellation to a real child
	// workflow, which is what TestTrainCancelledLeavesItsReleaseRunning checks.
	h.env.RegisterWorkflowWithOptions(func(ctx workflow.Context, in *ReleaseInput) (*ReleaseResult, error) {
		h.mu.Lock()
		h.releases = append(h.releases, in)
		fn := h.release
		h.mu.Unlock()
		if fn != nil {
			return fn(ctx, in)
		}
		return &ReleaseResult{ReleaseID: ReleaseID(in.Spec.Application, in.Version), Application: in.Spec.Application,
			Version: in.Version, Phase: PhaseSucceeded}, nil
	}, workflow.RegisterOptions{Name: "Release"})
	return h
}

func trainInput() *TrainInput {
	return &TrainInput{
		Schedule:    "weekly-train",
		Spec:        testSpec(),
		VersionFrom: train.VersionSource{Command: "cat /srv/demo/VERSION"},
		StartedBy:   "carol",
		FileDigest:  "sha256:abc",
	}
}

func TestTrainResolvesTheVersionAndStartsTheRelease(t *testing.T) {
	h := newTrainEnv(t)
	committed := time.Date(2026, 11, 20, 7, 0, 0, 0, time.UTC)
	h.resolved = train.ResolvedVersion{Version: "1.3.0", CommitTime: committed}
	h.last = train.LastReleaseResult{Last: &train.ReleaseRef{ReleaseID: "release-demo-1.2.0", Version: "1.2.0", Finished: committed}}
	// The release takes a while: the train waits for it, which is what
	// keeps the schedule from starting another meanwhile.
	h.release = func(ctx workflow.Context, in *ReleaseInput) (*ReleaseResult, error) {
		if err := workflow.Sleep(ctx, 2*time.Hour); err != nil {
			return nil, err
		}
		return &ReleaseResult{Application: in.Spec.Application, Version: in.Version, Phase: PhaseSucceeded}, nil
	}
	var during TrainStatus
	h.env.RegisterDelayedCallback(func() {
		v, err := h.env.QueryWorkflow(QueryTrain)
		require.NoError(t, err)
		require.NoError(t, v.Get(&during))
	}, time.Hour)

	h.env.ExecuteWorkflow(Train, trainInput())
	require.True(t, h.env.IsWorkflowCompleted())
	require.NoError(t, h.env.GetWorkflowError())
	var res TrainResult
	require.NoError(t, h.env.GetWorkflowResult(&res))

	require.Equal(t, TrainReleased, res.Outcome)
	require.Equal(t, PhaseSucceeded, res.Phase)
	require.Equal(t, "release-demo-1.3.0", res.ReleaseID)
	require.Equal(t, "1.3.0", res.Version)
	require.GreaterOrEqual(t, res.Finished.Sub(res.Started), 2*time.Hour, "the train lasts as long as its release")

	require.Equal(t, []train.LastReleaseInput{{Application: "demo", ReleaseID: "release-demo-1.3.0"}}, h.asked)
	require.Len(t, h.releases, 1)
	in := h.releases[0]
	require.Equal(t, "1.3.0", in.Version)
	require.Equal(t, "weekly-train", in.Schedule)
	require.Equal(t, "carol", in.StartedBy)
	require.True(t, in.CommitTime.Equal(committed), "commit time from the version source: %v", in.CommitTime)
	require.Equal(t, "demo", in.Spec.Application)

	require.Equal(t, TrainStepReleasing, during.Step)
	require.Equal(t, "release-demo-1.3.0", during.ReleaseID)
	require.Equal(t, "1.3.0", during.Version)
	require.Contains(t, during.Message, "overlap skip")
}

func TestTrainWithTheLastSuccessfulVersionStartsNothing(t *testing.T) {
	h := newTrainEnv(t)
	h.resolved = train.ResolvedVersion{Version: "1.2.0"}
	h.last = train.LastReleaseResult{
		Last: &train.ReleaseRef{ReleaseID: "release-demo-1.2.0", Version: "1.2.0", Finished: time.Date(2026, 11, 16, 8, 30, 0, 0, time.UTC)},
		Same: &train.ReleaseRef{ReleaseID: "release-demo-1.2.0", Version: "1.2.0"},
	}
	h.env.ExecuteWorkflow(Train, trainInput())
	require.NoError(t, h.env.GetWorkflowError())
	var res TrainResult
	require.NoError(t, h.env.GetWorkflowResult(&res))
	require.Equal(t, TrainUpToDate, res.Outcome)
	require.Empty(t, res.ReleaseID)
	require.Empty(t, h.releases, "no release may start")
	require.Equal(t, "nothing to release: demo 1.2.0 is already the last successful release (release-demo-1.2.0, finished 2026-11-16T08:30:00Z)", res.Message)

	v, err := h.env.QueryWorkflow(QueryTrain)
	require.NoError(t, err)
	var st TrainStatus
	require.NoError(t, v.Get(&st))
	require.Equal(t, TrainStepDone, st.Step)
	require.Equal(t, TrainUpToDate, st.Outcome)
}

func TestTrainDoesNotGoBackToAnOlderRelease(t *testing.T) {
	h := newTrainEnv(t)
	h.resolved = train.ResolvedVersion{Version: "1.2.0"}
	h.last = train.LastReleaseResult{
		Last: &train.ReleaseRef{ReleaseID: "release-demo-1.3.0", Version: "1.3.0"},
		Same: &train.ReleaseRef{ReleaseID: "release-demo-1.2.0", Version: "1.2.0"},
	}
	h.env.ExecuteWorkflow(Train, trainInput())
	require.NoError(t, h.env.GetWorkflowError())
	var res TrainResult
	require.NoError(t, h.env.GetWorkflowResult(&res))
	require.Equal(t, TrainAlreadyReleased, res.Outcome)
	require.Empty(t, h.releases)
	require.Contains(t, res.Message, "--rerun")
}

func TestTrainFailsClearlyWhenTheVersionCannotBeResolved(t *testing.T) {
	h := newTrainEnv(t)
	h.resolve = temporal.NewNonRetryableApplicationError("version command `cat /srv/demo/VERSION` exited with status 1: cat: /srv/demo/VERSION: No such file or directory", train.ErrBadVersion, nil)
	h.env.ExecuteWorkflow(Train, trainInput())
	require.True(t, h.env.IsWorkflowCompleted())
	err := h.env.GetWorkflowError()
	require.Error(t, err)
	var app *temporal.ApplicationError
	require.True(t, errors.As(err, &app), "want an application error, got %v", err)
	require.Equal(t, ErrTrainVersion, app.Type())
	require.Equal(t, "train of schedule weekly-train: cannot resolve the version of demo from command `cat /srv/demo/VERSION`: "+
		"version command `cat /srv/demo/VERSION` exited with status 1: cat: /srv/demo/VERSION: No such file or directory", app.Message())
	require.Empty(t, h.asked, "nothing is looked up without a version")
	require.Empty(t, h.releases)
}

func TestTrainRetriesASourceThatDoesNotAnswer(t *testing.T) {
	h := newTrainEnv(t)
	attempts := 0
	h.resolveFn = func(train.ResolveVersionInput) (*train.ResolvedVersion, error) {
		attempts++
		if attempts < 3 {
			return nil, errors.New("version command `git ls-remote` exited with status 128: could not resolve host")
		}
		return &train.ResolvedVersion{Version: "1.4.0"}, nil
	}
	h.env.ExecuteWorkflow(Train, trainInput())
	require.NoError(t, h.env.GetWorkflowError())
	require.Equal(t, 3, attempts)
	require.Len(t, h.releases, 1)
	require.Equal(t, "1.4.0", h.releases[0].Version)
}

func TestTrainCancelledLeavesItsReleaseRunning(t *testing.T) {
	h := newTrainEnv(t)
	h.resolved = train.ResolvedVersion{Version: "1.3.0"}
	releaseCancelled := false
	h.release = func(ctx workflow.Context, in *ReleaseInput) (*ReleaseResult, error) {
		err := workflow.Sleep(ctx, 3*time.Hour)
		if temporal.IsCanceledError(err) {
			releaseCancelled = true
		}
		return &ReleaseResult{Version: in.Version, Phase: PhaseSucceeded}, nil
	}
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, time.Hour)
	h.env.ExecuteWorkflow(Train, trainInput())
	err := h.env.GetWorkflowError()
	require.Error(t, err)
	require.True(t, temporal.IsCanceledError(err), "want the train cancelled, got %v", err)
	require.False(t, releaseCancelled, "a cancelled train must not cancel its release: the release would abort and roll back")
}

func TestTrainRefusesAnInputWithoutASource(t *testing.T) {
	h := newTrainEnv(t)
	in := trainInput()
	in.VersionFrom = train.VersionSource{}
	h.env.ExecuteWorkflow(Train, in)
	err := h.env.GetWorkflowError()
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), "no version source"), err.Error())
}
