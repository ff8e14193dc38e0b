package terraform

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPlanAllKeepsRegionsApart plans two regions in one activity, one of
// them with a stack folder that does not exist: that region's outcome says
// why, the other is planned, and the activity itself succeeds (a retry
// could not fix the bad one).
func TestPlanAllKeepsRegionsApart(t *testing.T) {
	f := newFixture(t)
	good := demoStack(t, "1.0.0")
	bad := good
	bad.Region, bad.Dir = "us-west", "/nonexistent/stack"
	v, err := f.env.ExecuteActivity(f.a.PlanAll, PlanAllInput{Inputs: []PlanInput{{Stack: bad}, {Stack: good}}})
	require.NoError(t, err)
	var out []PlanOutcome
	require.NoError(t, v.Get(&out))
	require.Len(t, out, 2)
	require.Nil(t, out[0].Result)
	require.Contains(t, out[0].Error, "/nonexistent/stack")
	require.NotContains(t, out[0].Error, "retryable", "the message only, without Temporal's cause suffix")
	require.NotNil(t, out[1].Result, out[1].Error)
	require.True(t, out[1].Result.Summary.HasChanges())
	require.NotEmpty(t, f.artifact(out[1].Result.PlanKey))
}
