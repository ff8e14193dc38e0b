package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"

	"github.com/keelson-dev/keelson/control"
	"github.com/keelson-dev/keelson/workflows"
)

// prod is the production-like topology of `make up-prod` (infra/prod):
// Temporal's own server on PostgreSQL, moto for S3, and two workers that
// share nothing on disk. Its regions are the lab's clusters.
type prod struct {
	dir, scripts   string
	address, s3url string
	bucket, prefix string
	tc             client.Client
	ctl            *control.Client
	s3             *s3.Client
}

func newProd(t *testing.T) *prod {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	p := &prod{
		dir:     envOr("KEELSON_PROD_DIR", filepath.Join(root, ".cache/prod")),
		scripts: filepath.Join(root, "infra/prod"),
		address: envOr("KEELSON_PROD_TEMPORAL_ADDRESS", "127.0.0.1:7333"),
		s3url:   envOr("KEELSON_PROD_S3", "http://127.0.0.1:5155"),
		bucket:  "keelson-artifacts",
		prefix:  "keelson",
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The prod workers run without payload keys, as docker-compose.yml's:
	// the default data converter.
	tc, err := control.Dial(ctx, control.DialOptions{Address: p.address, Namespace: "default", Wait: 10 * time.Second})
	if err != nil {
		t.Fatalf("the prod topology's Temporal at %s does not answer (%v): run `make up-prod` (make test starts it)", p.address, err)
	}
	t.Cleanup(tc.Close)
	p.tc = tc
	p.ctl = &control.Client{T: tc, Namespace: "default", TaskQueue: workflows.TaskQueue, Address: p.address}
	for _, w := range []string{"a", "b"} {
		if _, err := p.workerPID(w); err != nil {
			t.Fatalf("prod worker-%s is not running (%v): run `make up-prod`", w, err)
		}
	}
	p.s3 = s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(p.s3url),
		UsePathStyle: true,
		Credentials:  aws.AnonymousCredentials{},
	})
	return p
}

// workerPID is the running pid of worker-a or worker-b.
func (p *prod) workerPID(w string) (int, error) {
	raw, err := os.ReadFile(filepath.Join(p.dir, "worker-"+w+".pid"))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		return 0, err
	}
	if err := syscall.Kill(pid, 0); err != nil {
		return 0, fmt.Errorf("pid %d: %w", pid, err)
	}
	return pid, nil
}

// services runs infra/prod/services.sh SERVICE ACTION.
func (p *prod) services(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(filepath.Join(p.scripts, "services.sh"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("services.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("services.sh %s: %s", strings.Join(args, " "), strings.TrimSpace(string(out)))
}

// start runs `keelson release start` as a CI runner would against this
// topology: its bundle goes to S3, where both workers read it.
func (p *prod) start(t *testing.T, l *lab, file, version string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(l.bin, "keelson"), "release", "start", "-f", file, "--version", version)
	var env []string
	for _, kv := range os.Environ() {
		// The lab's payload key is not this topology's (it has none).
		if !strings.HasPrefix(kv, "KEELSON_CODEC_KEYS=") && !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "TEMPORAL_ADDRESS="+p.address,
		"KEELSON_ARTIFACTS=s3://"+p.bucket+"/"+p.prefix+"?endpoint="+p.s3url+"&region=us-east-1",
		"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test", "AWS_REGION=us-east-1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("keelson release start on the prod topology: %v\n%s", err, out)
	}
	id := strings.TrimSpace(strings.TrimPrefix(strings.SplitN(string(out), "\n", 2)[0], "release:"))
	if !strings.HasPrefix(id, "release-") {
		t.Fatalf("no release id on the first line of:\n%s", out)
	}
	return id
}

func (p *prod) history(t *testing.T, workflowID string) []*historypb.HistoryEvent {
	t.Helper()
	return historyOf(t, p.tc, workflowID)
}

// keys lists the bucket's keys under prefix.
func (p *prod) keys(t *testing.T, prefix string) []string {
	t.Helper()
	var keys []string
	pg := s3.NewListObjectsV2Paginator(p.s3, &s3.ListObjectsV2Input{Bucket: aws.String(p.bucket), Prefix: aws.String(prefix)})
	for pg.HasMorePages() {
		out, err := pg.NextPage(context.Background())
		if err != nil {
			t.Fatalf("list s3://%s/%s: %v", p.bucket, prefix, err)
		}
		for _, o := range out.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys
}

// TestProdTopology releases to three regions on the production-like
// topology (issue 10): activities spread over two workers with separate
// work folders, one of them SIGKILLed while Terraform applies (its S3
// state lock left behind), Temporal's server restarted during a bake. The
// other worker finishes the release with exactly one apply and one Helm
// revision per region, and the state and bundle are in S3.
func TestProdTopology(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	p := newProd(t)
	app := l.appName(t, "itprod")
	file := l.releaseFile(t, app, func(doc map[string]any) {
		delete(wave(doc, "rest"), "gate")
		wave(doc, "canary")["bake"] = "25s"
		// us-east-1's apply waits 15 s in the middle: the worker running it
		// is killed there.
		region(doc, "us-east-1")["terraformVars"].(map[string]any)["apply_delay"] = "15"
	})
	version := runVersion(1)
	start := time.Now()
	id := p.start(t, l, file, version)
	canary := workflows.RegionID(id, "us-east-1")

	// The apply in us-east-1: which worker runs it, once Terraform is in
	// the middle of it.
	var victim string
	var victimPID int
	waitUntil(t, 3*time.Minute, 200*time.Millisecond, "Terraform to apply in us-east-1", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d, err := p.tc.DescribeWorkflowExecution(ctx, canary, "")
		if err != nil {
			return false
		}
		for _, pa := range d.PendingActivities {
			if pa.GetActivityType().GetName() != "Apply" || pa.GetState() != enumspb.PENDING_ACTIVITY_STATE_STARTED ||
				pa.GetLastStartedTime() == nil || time.Since(pa.GetLastStartedTime().AsTime()) < 5*time.Second {
				continue
			}
			victim = pa.GetLastWorkerIdentity()
			return true
		}
		return false
	})
	pidOf := map[string]string{}
	for _, w := range []string{"a", "b"} {
		pid, err := p.workerPID(w)
		if err != nil {
			t.Fatal(err)
		}
		pidOf[strconv.Itoa(pid)] = w
	}
	pidText, _, _ := strings.Cut(victim, "@")
	killed, ok := pidOf[pidText]
	if !ok {
		t.Fatalf("the apply runs on %q, neither prod worker (%v)", victim, pidOf)
	}
	victimPID, _ = strconv.Atoi(pidText)
	survivor := map[string]string{"a": "b", "b": "a"}[killed]
	// Both workers must have taken part before one dies (the plans of the
	// three regions ran on either).
	seen := identities(p, t, id)
	if len(seen) < 2 {
		t.Logf("identities in the history before the kill: %v (the other worker has had no task yet)", seen)
	}
	if err := syscall.Kill(victimPID, syscall.SIGKILL); err != nil {
		t.Fatalf("kill worker-%s (pid %d): %v", killed, victimPID, err)
	}
	killedAt := time.Now()
	t.Logf("SIGKILLed worker-%s (%s) in the middle of us-east-1's Terraform apply", killed, victim)
	t.Cleanup(func() { p.services(t, "worker-"+killed, "start") })

	// The canary bakes (its apply retried on the survivor, the lock taken
	// back): restart Temporal's server in the middle of it.
	var last workflows.RegionStatus
	waitUntil(t, 3*time.Minute, 200*time.Millisecond, "the canary to bake", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		v, err := p.tc.QueryWorkflow(ctx, canary, "", workflows.QueryStatus)
		if err != nil {
			return false
		}
		if err := v.Get(&last); err != nil {
			t.Fatalf("status of %s: %v", canary, err)
		}
		return last.Step == workflows.StepBake && last.Phase == workflows.PhaseBaking
	})
	t.Logf("us-east-1 bakes %s after the kill", time.Since(killedAt).Round(time.Second))
	restart := time.Now()
	p.services(t, "temporal", "restart")
	t.Logf("Temporal's server restarted in %s during the bake", time.Since(restart).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := p.ctl.Result(ctx, id)
	if err != nil {
		t.Fatalf("result of %s: %v", id, err)
	}
	if res.Phase != workflows.PhaseSucceeded {
		t.Fatalf("release on the prod topology: %s", writeJSON(res))
	}
	t.Logf("release %s succeeded in %s", id, time.Since(start).Round(time.Second))

	// Both workers' identities are in the history; after the kill, only
	// the survivor's.
	seen = identities(p, t, id)
	if len(seen) != 2 || !slices.Contains(seen, victim) {
		t.Errorf("worker identities in the release's histories: %v; want both workers, %s among them", seen, victim)
	}

	for _, r := range regions {
		events := p.history(t, workflows.RegionID(id, r))
		applies, attempts := completedActivities(events, "Apply")
		if applies != 1 {
			t.Errorf("%s: %d completed Terraform applies, want exactly 1", r, applies)
		}
		if r == "us-east-1" && (len(attempts) != 1 || attempts[0] < 2) {
			t.Errorf("us-east-1: the apply completed at attempts %v; want one completion by a retry (attempt ≥ 2) after the kill", attempts)
		}
		if revs := l.helmRevisions(t, r, app); len(revs) != 1 || revs[0].Status != "deployed" {
			t.Errorf("%s: Helm revisions %+v, want exactly one, deployed", r, revs)
		}
		if got := l.deployedVersion(t, r, app); got != version {
			t.Errorf("%s: deployed %q, want %q", r, got, version)
		}
	}
	// The survivor took back the lock the killed Terraform left, and no
	// other.
	logRaw, err := os.ReadFile(filepath.Join(p.dir, "logs", "worker-"+survivor+".log"))
	if err != nil {
		t.Fatal(err)
	}
	unlocks := 0
	sc := bufio.NewScanner(bytes.NewReader(logRaw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, "force-unlocking the state") && strings.Contains(line, app) {
			unlocks++
			if !strings.Contains(line, "us-east-1") {
				t.Errorf("force-unlock outside us-east-1: %s", line)
			}
		}
	}
	if unlocks != 1 {
		t.Errorf("worker-%s force-unlocked %s's state %d times, want once (us-east-1's lock left by the kill)", survivor, app, unlocks)
	}

	// State, plans and the bundle are in moto's S3; no lock or lease left.
	keys := p.keys(t, p.prefix+"/")
	for _, r := range regions {
		state := fmt.Sprintf("%s/terraform/%s/%s/terraform.tfstate", p.prefix, app, r)
		if !slices.Contains(keys, state) {
			t.Errorf("no state object %s in s3://%s", state, p.bucket)
		}
		for _, left := range []string{state + ".tflock", fmt.Sprintf("%s/terraform/%s/%s/keelson-lease.json", p.prefix, app, r)} {
			if slices.Contains(keys, left) {
				t.Errorf("%s left in s3://%s", left, p.bucket)
			}
		}
		if plan := fmt.Sprintf("%s/%s/%s/%s/plan.tfplan", p.prefix, app, version, r); !slices.Contains(keys, plan) {
			t.Errorf("no saved plan %s in s3://%s", plan, p.bucket)
		}
	}
	digest := releaseBundle(t, p.history(t, id))
	if bundleKey := p.prefix + "/bundles/sha256/" + strings.TrimPrefix(digest, "sha256:") + ".tar.gz"; !slices.Contains(keys, bundleKey) {
		t.Errorf("the release's bundle %s is not in s3://%s (%s)", digest, p.bucket, bundleKey)
	}
	// Neither worker's folder holds the state.
	for _, w := range []string{"a", "b"} {
		for _, r := range regions {
			f := filepath.Join(p.dir, "worker-"+w, "work", app, r, "terraform.tfstate")
			if _, err := os.Stat(f); err == nil {
				t.Errorf("local state %s: the state must be in S3 only", f)
			}
		}
	}
}

// identities are the worker identities that completed tasks of the release
// and its region workflows.
func identities(p *prod, t *testing.T, id string) []string {
	t.Helper()
	seen := map[string]bool{}
	ids := []string{id}
	for _, r := range regions {
		ids = append(ids, workflows.RegionID(id, r))
	}
	for _, wf := range ids {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := p.tc.DescribeWorkflowExecution(ctx, wf, "")
		cancel()
		if err != nil {
			continue // a region not started yet
		}
		for _, e := range p.history(t, wf) {
			if a := e.GetWorkflowTaskCompletedEventAttributes(); a != nil && a.GetIdentity() != "" {
				seen[a.GetIdentity()] = true
			}
			if a := e.GetActivityTaskStartedEventAttributes(); a != nil && a.GetIdentity() != "" {
				seen[a.GetIdentity()] = true
			}
		}
	}
	var out []string
	for k := range seen {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// completedActivities counts the completed activities of a type, with the
// attempt each completed at.
func completedActivities(events []*historypb.HistoryEvent, activityType string) (int, []int32) {
	scheduled := map[int64]bool{}
	startedAttempt := map[int64]int32{}
	n := 0
	var attempts []int32
	for _, e := range events {
		if a := e.GetActivityTaskScheduledEventAttributes(); a != nil && a.GetActivityType().GetName() == activityType {
			scheduled[e.GetEventId()] = true
		}
		if a := e.GetActivityTaskStartedEventAttributes(); a != nil && scheduled[a.GetScheduledEventId()] {
			startedAttempt[a.GetScheduledEventId()] = a.GetAttempt()
		}
		if a := e.GetActivityTaskCompletedEventAttributes(); a != nil && scheduled[a.GetScheduledEventId()] {
			n++
			attempts = append(attempts, startedAttempt[a.GetScheduledEventId()])
		}
	}
	return n, attempts
}

// releaseBundle is the bundle digest in the release's input.
func releaseBundle(t *testing.T, events []*historypb.HistoryEvent) string {
	t.Helper()
	for _, e := range events {
		a := e.GetWorkflowExecutionStartedEventAttributes()
		if a == nil {
			continue
		}
		for _, pl := range a.GetInput().GetPayloads() {
			var in struct {
				Bundle string `json:"bundle"`
			}
			if json.Unmarshal(pl.GetData(), &in) == nil && in.Bundle != "" {
				return in.Bundle
			}
		}
	}
	t.Fatal("no bundle digest in the release's input")
	return ""
}
