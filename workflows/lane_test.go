package workflows

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/keelson-dev/keelson/activities/coord"
)

// laneHarness records what the lane tells the releases.
type laneHarness struct {
	mu      sync.Mutex
	granted []string         // release ids, in grant order
	queued  map[string][]int // release id -> positions told
	gone    map[string]bool  // releases whose signals fail (terminated)
	running map[string]bool  // Describe answers
	events  []string
}

func newLaneEnv(t *testing.T) (*testsuite.TestWorkflowEnvironment, *laneHarness) {
	var ts testsuite.WorkflowTestSuite
	env := ts.NewTestWorkflowEnvironment()
	env.RegisterWorkflow(Lane)
	env.RegisterActivity(&coord.Activities{})
	h := &laneHarness{queued: map[string][]int{}, gone: map[string]bool{}, running: map[string]bool{}}
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, mock.Anything, SignalLaneGranted, mock.Anything).Return(
		func(_, id, _, _ string, _ any) error {
			h.mu.Lock()
			defer h.mu.Unlock()
			if h.gone[id] {
				return errors.New("workflow not found")
			}
			h.granted = append(h.granted, id)
			h.events = append(h.events, "granted "+id)
			return nil
		})
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, mock.Anything, SignalLaneQueued, mock.Anything).Return(
		func(_, id, _, _ string, arg any) error {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.queued[id] = append(h.queued[id], arg.(LaneQueued).Position)
			return nil
		})
	var co *coord.Activities
	env.OnActivity(co.Describe, mock.Anything, mock.Anything).Return(func(_ context.Context, in coord.RunRef) (*coord.RunState, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		return &coord.RunState{Open: h.running[in.WorkflowID]}, nil
	})
	return env, h
}

func laneReq(id string) LaneRequest { return LaneRequest{ReleaseID: id, RunID: "run-" + id} }

func TestLaneGrantsInOrderOneAtATime(t *testing.T) {
	env, h := newLaneEnv(t)
	h.running["r1"], h.running["r2"], h.running["r3"] = true, true, true
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalLaneAcquire, laneReq("r1"))
		env.SignalWorkflow(SignalLaneAcquire, laneReq("r2"))
		env.SignalWorkflow(SignalLaneAcquire, laneReq("r3"))
		env.SignalWorkflow(SignalLaneAcquire, laneReq("r2")) // a retried request changes nothing
	}, time.Second)
	env.RegisterDelayedCallback(func() {
		h.mu.Lock()
		require.Equal(t, []string{"r1"}, h.granted, "only the first holds the lane")
		h.mu.Unlock()
		v, err := env.QueryWorkflow(QueryLane)
		require.NoError(t, err)
		var st LaneState
		require.NoError(t, v.Get(&st))
		require.Equal(t, "r1", st.Holder.ReleaseID)
		require.Len(t, st.Queue, 2)
		env.SignalWorkflow(SignalLaneRelease, laneReq("r1"))
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		// r3 leaves the queue (aborted while queued) before its turn.
		env.SignalWorkflow(SignalLaneRelease, laneReq("r3"))
		env.SignalWorkflow(SignalLaneRelease, laneReq("r2"))
	}, 2*time.Minute)
	env.ExecuteWorkflow(Lane, &LaneInput{Application: "demo"})
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError(), "an idle lane completes")
	require.Equal(t, []string{"r1", "r2"}, h.granted)
	require.Equal(t, []int{1}, h.queued["r2"], "r2 was told it is first in the queue")
	require.Equal(t, []int{2, 1}, h.queued["r3"], "r3 moved up when r1 gave the lane to r2")
}

func TestLaneMovesOnFromAHolderThatEnded(t *testing.T) {
	env, h := newLaneEnv(t)
	h.running["r2"] = true
	h.gone["r0"] = true // terminated while it waited: its grant fails
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalLaneAcquire, laneReq("r0"))
	}, time.Second)
	env.RegisterDelayedCallback(func() {
		h.mu.Lock()
		h.gone["r0"] = false
		h.mu.Unlock()
		env.SignalWorkflow(SignalLaneAcquire, laneReq("r1")) // r1 holds, then is terminated (never releases)
		env.SignalWorkflow(SignalLaneAcquire, laneReq("r2"))
	}, 2*time.Second)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalLaneRelease, laneReq("r2"))
	}, 10*time.Minute)
	env.ExecuteWorkflow(Lane, &LaneInput{Application: "demo"})
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, []string{"r1", "r2"}, h.granted, "r0's grant failed; r1 ended without release and the holder check moved on")
}

func TestLaneCarriesItsQueueAcrossContinueAsNew(t *testing.T) {
	env, h := newLaneEnv(t)
	h.running["r1"], h.running["r2"] = true, true
	q := []LaneRequest{laneReq("r2")}
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryLane)
		require.NoError(t, err)
		var st LaneState
		require.NoError(t, v.Get(&st))
		require.Equal(t, "r1", st.Holder.ReleaseID)
		require.Equal(t, "r2", st.Queue[0].ReleaseID)
		env.SignalWorkflow(SignalLaneRelease, laneReq("r1"))
	}, time.Second)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalLaneRelease, laneReq("r2")) }, time.Minute)
	h1 := laneReq("r1")
	env.ExecuteWorkflow(Lane, &LaneInput{Application: "demo", Holder: &h1, Queue: q})
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, []string{"r2"}, h.granted)
}
