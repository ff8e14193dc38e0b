package terraform

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// processesIn lists "PID name" of the processes whose working directory is
// dir.
func processesIn(dir string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if err != nil || cwd != dir {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if state, _, _, ok := procStat(mustAtoi(e.Name())); ok && state == 'Z' {
			continue
		}
		out = append(out, e.Name()+" "+strings.TrimSpace(string(comm)))
	}
	return out
}

func terraformsIn(dir string) []string {
	var tf []string
	for _, p := range processesIn(dir) {
		if strings.HasSuffix(p, " terraform") {
			tf = append(tf, p)
		}
	}
	return tf
}

func mustAtoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Environment of the crash helper: a worker process that runs one Apply and
// gets killed with SIGKILL in the middle of it.
const (
	helperEnv     = "KEELSON_TF_CRASH_HELPER"
	helperWork    = "KEELSON_TF_CRASH_WORKDIR"
	helperStore   = "KEELSON_TF_CRASH_STORE"
	helperPlanKey = "KEELSON_TF_CRASH_PLAN"
)

// TestCrashHelper is not a test: it is the worker process of
// TestWorkerKilledMidApply, and does nothing unless started by it.
func TestCrashHelper(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		return
	}
	f := newFixture(t)
	f.a.WorkDir = os.Getenv(helperWork)
	f.store.Dir = os.Getenv(helperStore)
	st := demoStack(t, "1.0.0")
	st.Vars = map[string]string{"apply_delay": "8"}
	_, err := f.apply(st, os.Getenv(helperPlanKey))
	t.Fatalf("the helper should have been killed during the apply; it returned %v", err)
}

// The worker is killed with SIGKILL while Terraform applies; the activity is
// retried by a fresh worker. Terraform must die with the worker (not apply
// on, unseen), what it left running must not record an apply later, and the
// retry must end with exactly one recorded apply.
func TestWorkerKilledMidApply(t *testing.T) {
	f := newFixture(t)
	st := demoStack(t, "1.0.0")
	st.Vars = map[string]string{"apply_delay": "8"}
	plan := f.mustPlan(st)
	work := f.workCopy(st)

	helper := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.v")
	helper.Env = append(os.Environ(),
		helperEnv+"=1",
		helperWork+"="+f.a.WorkDir,
		helperStore+"="+f.store.Dir,
		helperPlanKey+"="+plan.PlanKey,
	)
	helper.Stdout, helper.Stderr = os.Stdout, os.Stderr
	require.NoError(t, helper.Start())
	exited := make(chan error, 1)
	go func() { exited <- helper.Wait() }()

	// Mid-apply: the rollout resource's provisioner is sleeping.
	waitFor(t, "the helper's apply to reach the rollout's wait", 60*time.Second, func() bool {
		for _, p := range processesIn(work) {
			if strings.HasSuffix(p, " sleep") {
				return true
			}
		}
		return false
	})
	require.NotEmpty(t, terraformsIn(work))
	require.NoError(t, helper.Process.Signal(syscall.SIGKILL))
	<-exited
	killed := time.Now()

	// Terraform dies with the worker (Pdeathsig).
	waitFor(t, "Terraform to die with the worker", 5*time.Second, func() bool { return len(terraformsIn(work)) == 0 })
	t.Logf("left running after the kill: %v", processesIn(work))

	res := f.mustApply(st, plan.PlanKey)
	t.Logf("retry %v after the kill: applied=%v replanned=%v", time.Since(killed).Round(time.Millisecond), res.Applied, res.Replanned)
	require.True(t, res.Applied)
	require.Equal(t, []string{"1.0.0"}, f.applies(st), "exactly one recorded apply")
	require.Empty(t, processesIn(work), "nothing left running in the working copy")

	// Once the dead run's leftovers would have finished, still one.
	time.Sleep(time.Until(killed.Add(9 * time.Second)))
	require.Equal(t, []string{"1.0.0"}, f.applies(st))
}

// Cancelling the activity in the middle of an apply interrupts Terraform:
// the activity returns soon, no Terraform is left running in the working
// copy, and the release was not recorded.
func TestCancelStopsApply(t *testing.T) {
	f := newFixture(t)
	st := demoStack(t, "1.0.0")
	st.Vars = map[string]string{"apply_delay": "60"}
	plan := f.mustPlan(st)

	cancelled := make(chan time.Time, 1)
	go func() {
		for p := range f.heartbeats {
			if p == "terraform apply" {
				// Let Terraform get into the rollout resource's wait.
				time.Sleep(2 * time.Second)
				cancelled <- time.Now()
				f.cancel()
				return
			}
		}
	}()
	start := time.Now()
	_, err := f.apply(st, plan.PlanKey)
	took := time.Since(start)
	select {
	case at := <-cancelled:
		t.Logf("apply returned %v after the cancel: %v", time.Since(at).Round(time.Millisecond), err)
	default:
		t.Fatalf("apply returned before it was cancelled: %v", err)
	}
	require.Error(t, err)
	// The test environment reports a cancelled background context as a
	// failure; a worker reports it as the cancellation Temporal asked for.
	require.ErrorContains(t, err, context.Canceled.Error())
	require.Less(t, took, 45*time.Second, "the 60 s wait was interrupted")
	require.Empty(t, f.applies(st))
	require.Empty(t, terraformsIn(f.workCopy(st)), "no Terraform left running")
}
