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

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/keelson-dev/keelson/activities/artifacts"
	"github.com/keelson-dev/keelson/internal/labtest"
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

// Environment of the S3 crash helper: the moto endpoint and bucket the
// state lives in.
const (
	helperS3Endpoint = "KEELSON_TF_CRASH_S3"
	helperS3Bucket   = "KEELSON_TF_CRASH_BUCKET"
)

// s3Fixture is a fixture whose artifacts and state are in one moto bucket.
func s3Fixture(t *testing.T, endpoint, bucket string, create bool) (*fixture, *S3Backend) {
	t.Helper()
	creds := map[string]string{"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
	for k, v := range creds {
		t.Setenv(k, v)
	}
	ctx := context.Background()
	store, err := artifacts.OpenContext(ctx, "s3://"+bucket+"/crash?endpoint="+endpoint+"&region=us-east-1")
	require.NoError(t, err)
	s3s := store.(*artifacts.S3)
	if create {
		_, err = s3s.Client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
		require.NoError(t, err)
	}
	loc := s3s.Location()
	backend := &S3Backend{Bucket: loc.Bucket, Prefix: loc.Prefix, Region: loc.Region, Endpoint: loc.Endpoint,
		PathStyle: loc.PathStyle, Client: s3s.Client, LeaseTTL: 6 * time.Second}
	f := newFixture(t)
	f.a.Artifacts, f.a.Backend, f.a.Env = store, backend, creds
	return f, backend
}

// TestS3CrashHelper is not a test: it is the worker process of
// TestWorkerKilledMidApplyS3, and does nothing unless started by it.
func TestS3CrashHelper(t *testing.T) {
	if os.Getenv(helperS3Endpoint) == "" {
		return
	}
	f, _ := s3Fixture(t, os.Getenv(helperS3Endpoint), os.Getenv(helperS3Bucket), false)
	f.a.WorkDir = os.Getenv(helperWork)
	st := demoStack(t, "1.0.0")
	st.Vars = map[string]string{"apply_delay": "8"}
	_, err := f.apply(st, os.Getenv(helperPlanKey))
	t.Fatalf("the helper should have been killed during the apply; it returned %v", err)
}

// With state in S3, a worker killed in the middle of an apply leaves the
// state's lock file: nothing releases it. The retry (here, this process,
// as the same activity) must take back that lock, and only after the dead
// attempt's lease expired, then apply exactly once; a lock that is not its
// own stays (TestReclaimDecision).
func TestWorkerKilledMidApplyS3(t *testing.T) {
	endpoint := labtest.StartMoto(t)
	f, backend := s3Fixture(t, endpoint, "keelson-crash", true)
	st := demoStack(t, "1.0.0")
	st.Vars = map[string]string{"apply_delay": "8"}
	plan := f.mustPlan(st)
	work := f.workCopy(st)

	helper := exec.Command(os.Args[0], "-test.run=^TestS3CrashHelper$", "-test.v")
	helper.Env = append(os.Environ(),
		helperS3Endpoint+"="+endpoint,
		helperS3Bucket+"=keelson-crash",
		helperWork+"="+f.a.WorkDir,
		helperPlanKey+"="+plan.PlanKey,
	)
	helper.Stdout, helper.Stderr = os.Stdout, os.Stderr
	require.NoError(t, helper.Start())
	exited := make(chan error, 1)
	go func() { exited <- helper.Wait() }()

	ctx := context.Background()
	var lease leaseRecord
	waitFor(t, "the helper's apply to take the lock and record it in its lease", 60*time.Second, func() bool {
		found, err := backend.getJSON(ctx, backend.leaseKey(st), &lease)
		return err == nil && found && lease.LockID != ""
	})
	waitFor(t, "the helper's apply to reach the rollout's wait", 60*time.Second, func() bool {
		for _, p := range processesIn(work) {
			if strings.HasSuffix(p, " sleep") {
				return true
			}
		}
		return false
	})
	require.NoError(t, helper.Process.Signal(syscall.SIGKILL))
	<-exited
	killed := time.Now()
	waitFor(t, "Terraform to die with the worker", 5*time.Second, func() bool { return len(terraformsIn(work)) == 0 })

	var left lockFile
	found, err := backend.getJSON(ctx, backend.lockKey(st), &left)
	require.NoError(t, err)
	require.True(t, found, "the killed Terraform left its lock file")
	require.Equal(t, lease.LockID, left.ID, "the lease recorded the lock Terraform took")
	require.Equal(t, terraformWho(), left.Who, "Keelson names the lock's holder as Terraform does")

	// The retry is the same activity: a fresh test environment numbers
	// its first activity as the helper's numbered its apply.
	retry, _ := s3Fixture(t, endpoint, "keelson-crash", false)
	retry.a.WorkDir = f.a.WorkDir
	res := retry.mustApply(st, plan.PlanKey)
	took := time.Since(killed)
	t.Logf("retry done %v after the kill (lease TTL %v): applied=%v replanned=%v", took.Round(time.Millisecond), backend.LeaseTTL, res.Applied, res.Replanned)
	require.True(t, res.Applied)
	require.GreaterOrEqual(t, took, backend.LeaseTTL, "the lock is taken back only once the lease expired")
	require.Equal(t, []string{"1.0.0"}, f.applies(st), "exactly one recorded apply")
	found, err = backend.getJSON(ctx, backend.lockKey(st), &left)
	require.NoError(t, err)
	require.False(t, found, "no lock left")
	found, err = backend.getJSON(ctx, backend.leaseKey(st), &lease)
	require.NoError(t, err)
	require.False(t, found, "no lease left once the command ended")
}

// TestReclaimDecision: a lock is taken back only when it is this
// activity's, from another attempt, whose lease expired; an unexpired one
// of that attempt is waited for.
func TestReclaimDecision(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	ttl := 20 * time.Second
	dead := func() *leaseRecord {
		return &leaseRecord{Workflow: "w", Run: "r", Activity: "7", Attempt: "old", Command: "apply", Who: "keelson@host-a",
			Started: now.Add(-time.Minute), Renewed: now.Add(-30 * time.Second), LockID: "L1"}
	}
	lock := &lockFile{ID: "L1", Who: "keelson@host-a", Created: now.Add(-59 * time.Second)}
	for _, tc := range []struct {
		name  string
		lease func(*leaseRecord) *leaseRecord
		lock  func(lockFile) lockFile
		want  verdict
	}{
		{"own dead attempt's recorded lock", func(l *leaseRecord) *leaseRecord { return l }, nil, takeLock},
		{"no lease: a person's lock", func(*leaseRecord) *leaseRecord { return nil }, nil, leaveLock},
		{"another release's activity", func(l *leaseRecord) *leaseRecord { l.Run = "other"; return l }, nil, leaveLock},
		{"another activity of this run", func(l *leaseRecord) *leaseRecord { l.Activity = "8"; return l }, nil, leaveLock},
		{"this very attempt", func(l *leaseRecord) *leaseRecord { l.Attempt = "now"; return l }, nil, leaveLock},
		{"lease still renewed: holder may live", func(l *leaseRecord) *leaseRecord { l.Renewed = now.Add(-5 * time.Second); return l }, nil, waitLease},
		{"a different lock than recorded", nil, func(f lockFile) lockFile { f.ID = "L2"; return f }, leaveLock},
		{"unrecorded lock taken after the lease by its host", func(l *leaseRecord) *leaseRecord { l.LockID = ""; return l }, nil, takeLock},
		{"unrecorded lock older than the lease", func(l *leaseRecord) *leaseRecord { l.LockID = ""; return l },
			func(f lockFile) lockFile { f.Created = now.Add(-2 * time.Hour); return f }, leaveLock},
		{"unrecorded lock of another host", func(l *leaseRecord) *leaseRecord { l.LockID = ""; return l },
			func(f lockFile) lockFile { f.Who = "alice@laptop"; return f }, leaveLock},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := dead()
			if tc.lease != nil {
				l = tc.lease(l)
			}
			lf := *lock
			if tc.lock != nil {
				lf = tc.lock(lf)
			}
			got, why := reclaimDecision(l, &lf, "w", "r", "7", "now", now, ttl)
			require.Equal(t, tc.want, got, why)
		})
	}
}
