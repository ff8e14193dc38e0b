package integration

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"gopkg.in/yaml.v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/slack-go/slack"

	keelslack "github.com/keelson-dev/keelson/activities/slack"
	"github.com/keelson-dev/keelson/activities/slack/slackfake"
	"github.com/keelson-dev/keelson/control"
	"github.com/keelson-dev/keelson/release"
	"github.com/keelson-dev/keelson/workflows"
)

// The Slack tests run their own worker on their own task queue, with the
// Slack API pointed at a slackfake workspace in the test process, so the
// lab's worker (which other tests kill) never sees their releases.
const (
	slackSecret   = "keelson-slack-it-signing-secret"
	slackBotToken = "xoxb-keelson-slack-it"
	slackApprover = "U0APPROVER"
	slackStranger = "U0STRANGER"
)

// slackRun tells this test process's task queue and applications apart
// from those of another run of the same tests on the same lab (two people
// running `go test` at once), whose worker would otherwise take our tasks.
var slackRun = fmt.Sprintf("%04x", (os.Getpid()^int(time.Now().UnixNano()))&0xffff)

// slackTaskQueue is the Slack tests' own task queue.
var slackTaskQueue = "keelson-slack-it-" + slackRun

// slackApp is a test's application name: its Helm release and namespace.
func slackApp(name string) string { return "slackit-" + name + "-" + slackRun }

// slackEnv is one test's Slack world: the lab, a fake workspace, a worker
// process of our own, and a release client on our task queue.
type slackEnv struct {
	lab    *lab
	ws     *slackfake.Workspace
	worker *slackWorker
	ctl    *control.Client
}

func newSlackEnv(t *testing.T, workerArgs ...string) *slackEnv {
	t.Helper()
	return newSlackEnvWith(t, workerExtra{args: workerArgs})
}

// workerExtra are flags and environment added to the test worker's.
type workerExtra struct{ args, env []string }

func newSlackEnvWith(t *testing.T, x workerExtra) *slackEnv {
	t.Helper()
	l := newLab(t)
	ws := slackfake.New()
	t.Cleanup(ws.Close)
	w := startSlackWorker(t, l, ws.URL(), x)
	ctl := &control.Client{T: l.tc, Namespace: "default", TaskQueue: slackTaskQueue, UIBaseURL: "http://localhost:8233", Address: l.address, DataConverter: l.codec.dc}
	return &slackEnv{lab: l, ws: ws, worker: w, ctl: ctl}
}

// slackWorker is a bin/keelson-worker process started by the test.
type slackWorker struct {
	t        *testing.T
	bin      string
	args     []string
	env      []string
	addr     string
	logPath  string
	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{}
	restarts int
}

func startSlackWorker(t *testing.T, l *lab, apiURL string, x workerExtra) *slackWorker {
	t.Helper()
	bin := filepath.Join(l.bin, "keelson-worker")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("worker binary %s: %v (run `make build`)", bin, err)
	}
	dir := t.TempDir()
	addr := slackFreeAddr(t)
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KEELSON_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"KEELSON_SLACK_BOT_TOKEN="+slackBotToken,
		"KEELSON_SLACK_SIGNING_SECRET="+slackSecret,
		"KEELSON_SLACK_API_URL="+apiURL,
		"TF_CLI_CONFIG_FILE="+filepath.Join(l.dir, "terraformrc"),
		// The lab's key, as every worker of the namespace holds it: the
		// lab's worker runs the stop-the-line switch these releases talk to.
		"KEELSON_CODEC_KEYS="+l.codec.keys,
	)
	env = append(env, x.env...)
	w := &slackWorker{
		t:   t,
		bin: bin,
		args: append([]string{
			"--temporal-address", l.address,
			"--namespace", "default",
			"--task-queue", slackTaskQueue,
			"--http-addr", addr,
			"--artifacts", filepath.Join(dir, "artifacts"),
			"--work-dir", filepath.Join(dir, "work"),
			"--kubeconfig", l.kubeconfig,
			"--log-level", "debug",
		}, x.args...),
		env:     env,
		addr:    addr,
		logPath: filepath.Join(dir, "worker.log"),
	}
	w.start()
	t.Cleanup(func() {
		// Releases left running on this run's own task queue (a test that
		// failed half-way) would wait there forever, for a worker that is
		// gone, and count as load in every later measurement on the lab.
		terminateQueue(t, l, slackTaskQueue)
		w.stop()
		if t.Failed() {
			t.Logf("last lines of the Slack test worker's log %s:\n%s", w.logPath, w.tail(60))
		}
	})
	return w
}

func (w *slackWorker) start() {
	w.t.Helper()
	logf, err := os.OpenFile(w.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		w.t.Fatal(err)
	}
	cmd := exec.Command(w.bin, w.args...)
	cmd.Env = w.env
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		w.t.Fatalf("start %s: %v", w.bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
	w.mu.Lock()
	w.cmd, w.exited = cmd, exited
	w.mu.Unlock()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			w.t.Fatalf("worker exited at start:\n%s", w.tail(30))
		default:
		}
		resp, err := http.Get("http://" + w.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	w.t.Fatalf("worker not ready on %s within 60s:\n%s", w.addr, w.tail(30))
}

// kill9 kills the worker with SIGKILL, as a crash would, and waits for it.
func (w *slackWorker) kill9() {
	w.mu.Lock()
	cmd, exited := w.cmd, w.exited
	w.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// stop ends the worker gracefully (SIGTERM), then by force.
func (w *slackWorker) stop() {
	w.mu.Lock()
	cmd, exited := w.cmd, w.exited
	w.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

func (w *slackWorker) tail(n int) string {
	b, _ := os.ReadFile(w.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// url is the worker's Slack interaction endpoint.
func (w *slackWorker) url() string { return "http://" + w.addr + "/slack/interactions" }

func slackFreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// slackReleaseFile writes a release file for app with no Terraform and no
// health checks (the Slack tests are about gates and messages, and must
// stay fast): one region per wave in the lab's clusters, one replica, the
// Slack channel, and a gate (approver slackApprover) where the wave asks.
func slackReleaseFile(t *testing.T, l *lab, app, channel string, waves []slackWave) string {
	t.Helper()
	var regs, ws []any
	for _, w := range waves {
		ns := w.Namespace
		if ns == "" {
			ns = app
		}
		regs = append(regs, map[string]any{"name": w.Region, "kubeContext": w.KubeContext, "namespace": ns})
		wave := map[string]any{"name": w.Name, "regions": []string{w.Region}}
		if w.Gate {
			wave["gate"] = map[string]any{
				"name": "before-" + w.Name, "when": "always",
				"approvers": []string{slackApprover}, "timeout": "30m", "onTimeout": "reject",
			}
		}
		ws = append(ws, wave)
	}
	doc := map[string]any{
		"apiVersion":  release.APIVersionV1Alpha1,
		"kind":        release.Kind,
		"application": app,
		"chart":       map[string]any{"path": filepath.Join(l.root, "infra/demo/chart")},
		"values":      map[string]any{"replicas": 1},
		"regions":     regs,
		"waves":       ws,
		"readiness":   map[string]any{"timeout": "60s"},
		"notify":      map[string]any{"slack": map[string]any{"channel": channel}},
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	// The namespaces go at the end, so that runs do not pile them up in the
	// lab's clusters (after the release was stopped: cleanups run last first).
	t.Cleanup(func() {
		for _, w := range waves {
			ns := w.Namespace
			if ns == "" {
				ns = app
			}
			if cs := l.kube[w.KubeContext]; cs != nil {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_ = cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
				cancel()
			}
		}
	})
	path := filepath.Join(t.TempDir(), app+".yaml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// slackWave is one wave of a Slack test's release: one region.
type slackWave struct {
	Name, Region, KubeContext string
	// Namespace is the app's name when empty.
	Namespace string
	Gate      bool
}

// slackStart starts a release of the file on the Slack task queue and
// terminates it at the end of the test if it is still running.
func (e *slackEnv) slackStart(t *testing.T, file, version string) string {
	t.Helper()
	spec, err := release.Load(file)
	if err != nil {
		t.Fatalf("load %s: %v", file, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := e.ctl.Start(ctx, spec, version, control.StartOptions{StartedBy: "slack-it"})
	if err != nil {
		t.Fatalf("start %s %s: %v", spec.Application, version, err)
	}
	t.Cleanup(func() { slackTerminate(e.lab.tc, res.ReleaseID) })
	return res.ReleaseID
}

func slackTerminate(tc client.Client, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := tc.DescribeWorkflowExecution(ctx, id, "")
	if err == nil && d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		_ = tc.TerminateWorkflow(ctx, id, "", "slack integration test ended")
	}
}

// slackVersion is a version unique to this run, so every run is a new
// release (workflow id) of the same application.
func slackVersion() string {
	return fmt.Sprintf("1.0.%d", time.Now().UnixNano()/int64(time.Millisecond)%1_000_000_000)
}

func (e *slackEnv) status(t *testing.T, id string) *workflows.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := e.ctl.Status(ctx, id)
	if err != nil {
		t.Fatalf("status of %s: %v", id, err)
	}
	return st
}

func (e *slackEnv) result(t *testing.T, id string, within time.Duration) *workflows.ReleaseResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	res, err := e.ctl.Result(ctx, id)
	if err != nil {
		st, _ := e.ctl.Status(context.Background(), id)
		t.Fatalf("result of %s within %s: %v (status: %s)", id, within, err, writeJSON(st))
	}
	return res
}

// slackWaitFor polls cond until it holds or within passes.
func slackWaitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", within, what)
}

// slackGateMessage finds the gate message of release and gate in channel;
// open tells whether it still has its Approve / Reject buttons.
func slackGateMessage(ws *slackfake.Workspace, channel, releaseID, gate string) (m slackfake.Message, open, found bool) {
	want := keelslack.GateAction{ReleaseID: releaseID, Gate: gate}.Encode()
	for _, msg := range ws.Messages(channel) {
		if !strings.Contains(msg.Text, "Approval needed") && !strings.HasPrefix(msg.Text, "Gate ") {
			continue
		}
		for _, b := range msg.Blocks.BlockSet {
			if ab, ok := b.(*slack.ActionBlock); ok && ab.BlockID == keelslack.BlockGateActions {
				for _, el := range ab.Elements.ElementSet {
					if btn, ok := el.(*slack.ButtonBlockElement); ok && btn.Value == want {
						return msg, true, true
					}
				}
			}
		}
		// A closed gate message has no buttons left: match it by its text.
		if strings.HasPrefix(msg.Text, "Gate "+gate+" of ") && strings.Contains(slackBlockText(msg.Blocks), releaseID) {
			return msg, false, true
		}
	}
	return slackfake.Message{}, false, false
}

// slackBlockText is the text of every section and context block, joined.
func slackBlockText(bs slack.Blocks) string {
	var parts []string
	for _, b := range bs.BlockSet {
		switch b := b.(type) {
		case *slack.SectionBlock:
			if b.Text != nil {
				parts = append(parts, b.Text.Text)
			}
			for _, f := range b.Fields {
				parts = append(parts, f.Text)
			}
		case *slack.ContextBlock:
			for _, el := range b.ContextElements.Elements {
				if tb, ok := el.(*slack.TextBlockObject); ok {
					parts = append(parts, tb.Text)
				}
			}
		case *slack.HeaderBlock:
			if b.Text != nil {
				parts = append(parts, b.Text.Text)
			}
		}
	}
	return strings.Join(parts, "\n")
}

// slackEphemeralsTo are the ephemeral messages user has seen so far.
func slackEphemeralsTo(ws *slackfake.Workspace, user string) []slackfake.Ephemeral {
	var out []slackfake.Ephemeral
	for _, e := range ws.Ephemerals() {
		if e.User == user {
			out = append(out, e)
		}
	}
	return out
}

// slackRequest is one signed interaction callback, kept whole so that it
// can be replayed byte for byte.
type slackRequest struct {
	body      []byte
	timestamp string
	signature string
}

// slackSign signs body as Slack does: v0=hex(HMAC-SHA256(secret,
// "v0:" + timestamp + ":" + body)).
func slackSign(secret, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "v0:%s:", timestamp)
	mac.Write(body)
	return "v0=" + hex.EncodeToString(mac.Sum(nil))
}

// slackSigned builds a callback with payload, signed with secret at time at.
func slackSigned(payload any, secret string, at time.Time) slackRequest {
	var raw []byte
	switch p := payload.(type) {
	case string:
		raw = []byte(p)
	default:
		raw, _ = json.Marshal(p)
	}
	body := []byte("payload=" + url.QueryEscape(string(raw)))
	ts := strconv.FormatInt(at.Unix(), 10)
	return slackRequest{body: body, timestamp: ts, signature: slackSign(secret, ts, body)}
}

// slackPost sends the callback to the worker's endpoint as Slack does and
// returns the status and body of the answer.
func slackPost(t *testing.T, endpoint string, r slackRequest) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, endpoint, bytes.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", "Slackbot 1.0 (+https://api.slack.com/robots)")
	req.Header.Set("X-Slack-Request-Timestamp", r.timestamp)
	req.Header.Set("X-Slack-Signature", r.signature)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("post callback to %s: %v", endpoint, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var slackSeq struct {
	mu sync.Mutex
	n  int
}

// slackNextTS is a fresh action_ts / trigger id, as Slack gives each click.
func slackNextTS() string {
	slackSeq.mu.Lock()
	defer slackSeq.mu.Unlock()
	slackSeq.n++
	return fmt.Sprintf("%d.%06d", time.Now().Unix(), slackSeq.n)
}

func slackUser(id string) map[string]any {
	name := strings.ToLower(strings.TrimPrefix(id, "U0"))
	return map[string]any{"id": id, "username": name, "name": name, "team_id": "T0KEELSON"}
}

// slackClick is the block_actions payload Slack sends when user clicks the
// gate message's Approve (approve) or Reject button.
func slackClick(user, channel, messageTS, releaseID, gate string, approve bool) map[string]any {
	actionID, label, style := keelslack.ActionReject, "Reject", "danger"
	if approve {
		actionID, label, style = keelslack.ActionApprove, "Approve", "primary"
	}
	ts := slackNextTS()
	return map[string]any{
		"type":       "block_actions",
		"user":       slackUser(user),
		"api_app_id": "A0KEELSON",
		"token":      "verification-token-unused",
		"container":  map[string]any{"type": "message", "message_ts": messageTS, "channel_id": channel, "is_ephemeral": false},
		"trigger_id": ts + ".trigger",
		"team":       map[string]any{"id": "T0KEELSON", "domain": "keelson"},
		"channel":    map[string]any{"id": channel, "name": "releases"},
		// Never called: the handler answers in the channel it knows.
		"response_url": "https://hooks.slack.invalid/actions/T0KEELSON/1/x",
		"actions": []any{map[string]any{
			"action_id": actionID,
			"block_id":  keelslack.BlockGateActions,
			"text":      map[string]any{"type": "plain_text", "text": label},
			"value":     keelslack.GateAction{ReleaseID: releaseID, Gate: gate}.Encode(),
			"style":     style,
			"type":      "button",
			"action_ts": ts,
		}},
	}
}

// slackSubmit is the view_submission payload of the reject modal v, with
// reason typed into its input.
func slackSubmit(user string, v slackfake.View, viewID, reason string) map[string]any {
	return map[string]any{
		"type":       "view_submission",
		"user":       slackUser(user),
		"api_app_id": "A0KEELSON",
		"team":       map[string]any{"id": "T0KEELSON", "domain": "keelson"},
		"trigger_id": slackNextTS() + ".trigger",
		"view": map[string]any{
			"id":               viewID,
			"type":             "modal",
			"callback_id":      v.View.CallbackID,
			"private_metadata": v.View.PrivateMetadata,
			"hash":             slackNextTS() + ".hash",
			"state": map[string]any{"values": map[string]any{
				keelslack.BlockReason: map[string]any{
					keelslack.ActionReason: map[string]any{"type": "plain_text_input", "value": reason},
				},
			}},
		},
	}
}

// slackApprovalsIn counts the accepted approve or reject Updates in a
// release's history: the audit trail of answers.
func slackApprovalsIn(events []*historypb.HistoryEvent) int {
	n := 0
	for _, ev := range events {
		if a := ev.GetWorkflowExecutionUpdateAcceptedEventAttributes(); a != nil {
			if name := a.GetAcceptedRequest().GetInput().GetName(); name == workflows.UpdateApprove || name == workflows.UpdateReject {
				n++
			}
		}
	}
	return n
}

// terminateQueue terminates the workflows still running on a task queue of
// the tests' own.
func terminateQueue(t *testing.T, l *lab, queue string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var token []byte
	for {
		res, err := l.tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query:         fmt.Sprintf("TaskQueue = '%s' AND ExecutionStatus = 'Running'", queue),
			NextPageToken: token,
		})
		if err != nil {
			t.Logf("list workflows left on %s: %v", queue, err)
			return
		}
		for _, ex := range res.GetExecutions() {
			id := ex.GetExecution().GetWorkflowId()
			if err := l.tc.TerminateWorkflow(ctx, id, "", "test ended with it running on its own task queue"); err != nil {
				t.Logf("terminate %s: %v", id, err)
			} else {
				t.Logf("terminated %s, left running on %s", id, queue)
			}
		}
		if token = res.GetNextPageToken(); len(token) == 0 {
			return
		}
	}
}
