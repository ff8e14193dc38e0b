package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/keelson-dev/keelson/activities/slack/slackfake"
	"github.com/keelson-dev/keelson/control"
	"github.com/keelson-dev/keelson/identity"
	"github.com/keelson-dev/keelson/workflows"
)

// identityKeys makes an ed25519 key per name with ssh-keygen, as people
// would, and returns the private key files.
func identityKeys(t *testing.T, names ...string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	keys := map[string]string{}
	for _, n := range names {
		f := filepath.Join(dir, n)
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", n+"@identity-it", "-f", f).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen for %s (Debian's openssh-client): %v\n%s", n, err, out)
		}
		keys[n] = f
	}
	return keys
}

func pubKey(t *testing.T, privFile string) string {
	t.Helper()
	b, err := os.ReadFile(privFile + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// arg is the value of a flag the worker was started with.
func (w *slackWorker) arg(name string) string {
	for i, a := range w.args {
		if a == name && i+1 < len(w.args) {
			return w.args[i+1]
		}
	}
	return ""
}

// TestIdentityIsVerified runs a worker with an access policy and a Slack
// bridge key, and answers a gate that needs two approvers from the CLI and
// from Slack, with every kind of answer that must be refused first.
func TestIdentityIsVerified(t *testing.T) {
	keys := identityKeys(t, "ci", "alice", "bob", "oncall", "mallory", "bridge")
	policy := fmt.Sprintf(`# the identity test's access policy
people:
  - id: ci
    keys: [%q]
  - id: alice
    keys: [%q]
  - id: bob
    keys: [%q]
    slack: [T0KEELSON/%s]
  - id: oncall
    keys: [%q]
bridges: [%q]
applications:
  - match: "*"
    starters: [ci]
    approvers: [alice, bob, ci]
    operators: [oncall]
`, pubKey(t, keys["ci"]), pubKey(t, keys["alice"]), pubKey(t, keys["bob"]), slackApprover, pubKey(t, keys["oncall"]), pubKey(t, keys["bridge"]))
	policyFile := filepath.Join(t.TempDir(), "access.yaml")
	if err := os.WriteFile(policyFile, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newSlackEnv(t, "--access", policyFile, "--bridge-key", keys["bridge"])
	l := e.lab
	const channel = "CIDENTITY"
	app := slackApp("identity")
	file := slackReleaseFile(t, l, app, channel, []slackWave{
		{Name: "canary", Region: "us-east-1", KubeContext: "us-east-1"},
		{Name: "rest", Region: "eu-west-1", KubeContext: "eu-west-1", Gate: true},
	})
	// The gate: alice (by key), bob's Slack account, and the starter, who
	// is an approver by the policy but may not approve what he started.
	editYAML(t, file, func(doc map[string]any) {
		g := doc["waves"].([]any)[1].(map[string]any)["gate"].(map[string]any)
		g["approvers"] = []any{"alice", slackApprover, "ci"}
		g["approvals"] = 2
	})

	// cli runs keelson on the test worker's task queue and store, with no
	// ssh-agent: what signs is only what the arguments say.
	cli := func(t *testing.T, args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(filepath.Join(l.bin, "keelson"), append([]string{
			"--task-queue", slackTaskQueue, "--artifacts", e.worker.arg("--artifacts"),
		}, args...)...)
		cmd.Env = append(os.Environ(), "TEMPORAL_ADDRESS="+l.address, "SSH_AUTH_SOCK=", "KEELSON_SIGNING_KEY=")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			return out.String(), ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), 0
	}
	idOf := func(t *testing.T, out string) string {
		t.Helper()
		id := strings.TrimSpace(strings.TrimPrefix(strings.SplitN(out, "\n", 2)[0], "release:"))
		if !strings.HasPrefix(id, "release-") {
			t.Fatalf("no release id in:\n%s", out)
		}
		t.Cleanup(func() { slackTerminate(l.tc, id) })
		return id
	}

	t.Run("unsigned start touches nothing", func(t *testing.T) {
		out, code := cli(t, "--user", "ci", "release", "start", "-f", file, "--version", slackVersion()+"-unsigned")
		if code != 0 {
			t.Fatalf("start: exit %d\n%s", code, out)
		}
		refusedID := idOf(t, out)
		res := e.result(t, refusedID, time.Minute)
		l.record(t, refusedID, "identity-start-refused")
		if res.Phase != workflows.PhaseRejected || !strings.Contains(res.Reason, "start refused: not signed") {
			t.Fatalf("unsigned start: %s %q, want rejected, not signed", res.Phase, res.Reason)
		}
		if revs := l.helmRevisions(t, "us-east-1", app); len(revs) != 0 {
			t.Fatalf("an unsigned start installed %d Helm revisions", len(revs))
		}
	})

	version := slackVersion()
	out, code := cli(t, "--user", "ci", "--key", keys["ci"], "release", "start", "-f", file, "--version", version)
	if code != 0 {
		t.Fatalf("signed start: exit %d\n%s", code, out)
	}
	id := idOf(t, out)
	const gate = "before-rest"
	var msg slackfake.Message
	slackWaitFor(t, 3*time.Minute, "the gate message in "+channel, func() bool {
		m, open, found := slackGateMessage(e.ws, channel, id, gate)
		msg = m
		return found && open
	})
	st := e.status(t, id)
	if st.StartedBy != "ci" || !strings.Contains(st.Access, "verified against "+policyFile) || st.Gate == nil || st.Gate.Needed != 2 {
		t.Fatalf("status at the gate: %s", writeJSON(st))
	}
	unchanged := func(t *testing.T, after string) {
		t.Helper()
		st := e.status(t, id)
		if st.Phase != workflows.PhaseAwaitGate || st.Gate == nil || len(st.Gate.Approved) != 0 || len(st.Approvals) != 0 {
			t.Fatalf("after %s the release changed: %s", after, writeJSON(st))
		}
		if n := slackApprovalsIn(l.history(t, id)); n != 0 {
			t.Fatalf("after %s the history holds %d accepted answers", after, n)
		}
	}

	refusals := []struct {
		name string
		args []string
		want string
	}{
		{"a name without a signature", []string{"--user", "alice", "approve", id}, "not signed"},
		{"alice's name with mallory's key", []string{"--user", "alice", "--key", keys["mallory"], "approve", id}, "is not one of alice's keys"},
		{"the starter approving", []string{"--user", "ci", "--key", keys["ci"], "approve", id}, "ci started release " + id + " and may not approve"},
		{"an approver aborting", []string{"--user", "alice", "--key", keys["alice"], "abort", id, "--reason", "I can"}, "alice is not an operator"},
		{"an approver pausing", []string{"--user", "bob", "--key", keys["bob"], "pause", id}, "bob is not an operator"},
	}
	for _, r := range refusals {
		t.Run(r.name, func(t *testing.T) {
			out, code := cli(t, r.args...)
			if code == 0 || !strings.Contains(out, r.want) {
				t.Fatalf("keelson %s: exit %d, want a refusal saying %q:\n%s", strings.Join(r.args, " "), code, r.want, out)
			}
			unchanged(t, r.name)
		})
	}
	t.Run("an approval replayed from another release", func(t *testing.T) {
		alice, err := identity.LoadSigner("alice", keys["alice"])
		if err != nil {
			t.Fatal(err)
		}
		ans := workflows.GateAnswer{Gate: gate, User: "alice", Via: "cli"}
		// A valid approval by alice, of a gate of the same name in another
		// release, sent to this one.
		ans.Proof, _ = alice.Sign(workflows.AnswerIntent(workflows.ReleaseID(app, "0.0.1"), "another-run", true, *st.Gate, ans), time.Now())
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err = e.ctl.Answer(ctx, id, true, ans)
		if err == nil || !strings.Contains(err.Error(), "bad signature") {
			t.Fatalf("replayed approval: %v, want refused for a bad signature", err)
		}
		unchanged(t, "a replayed approval")
	})
	t.Run("a Slack user named like an approver", func(t *testing.T) {
		click := slackClick("U0MALLORY", channel, msg.TS, id, gate, true)
		// Mallory's Slack user name is the approver's id, her name alice's.
		click["user"] = map[string]any{"id": "U0MALLORY", "username": slackApprover, "name": "alice", "team_id": "T0KEELSON"}
		if code, body := slackPost(t, e.worker.url(), slackSigned(click, slackSecret, time.Now())); code != http.StatusOK {
			t.Fatalf("click: %d %q", code, body)
		}
		slackWaitFor(t, 30*time.Second, "the refusal shown to U0MALLORY", func() bool { return len(slackEphemeralsTo(e.ws, "U0MALLORY")) > 0 })
		if got := slackEphemeralsTo(e.ws, "U0MALLORY")[0].Text; !strings.Contains(got, "slack:T0KEELSON/U0MALLORY is not an approver") {
			t.Errorf("refusal shown to mallory: %q", got)
		}
		unchanged(t, "an impostor's click")
	})

	// alice approves from the CLI: one of two.
	if out, code := cli(t, "--user", "alice", "--key", keys["alice"], "approve", id, "--reason", "canary clean"); code != 0 {
		t.Fatalf("alice's signed approval: exit %d\n%s", code, out)
	}
	st = e.status(t, id)
	if st.Gate == nil || len(st.Gate.Approved) != 1 || st.Gate.Approved[0] != "alice" {
		t.Fatalf("after alice's approval the gate should wait for a second approver: %s", writeJSON(st))
	}
	if out, code := cli(t, "--user", "alice", "--key", keys["alice"], "approve", id); code == 0 || !strings.Contains(out, "alice already approved") {
		t.Fatalf("alice again: exit %d\n%s", code, out)
	}
	// An operator pauses and resumes, signed: the history names him.
	for _, ctl := range []string{"pause", "resume"} {
		if out, code := cli(t, "--user", "oncall", "--key", keys["oncall"], ctl, id, "--reason", "checking the canary"); code != 0 {
			t.Fatalf("oncall's %s: exit %d\n%s", ctl, code, out)
		}
	}
	// bob clicks in Slack: the second approver; the gate opens.
	if code, body := slackPost(t, e.worker.url(), slackSigned(slackClick(slackApprover, channel, msg.TS, id, gate, true), slackSecret, time.Now())); code != http.StatusOK {
		t.Fatalf("bob's click: %d %q", code, body)
	}
	res := e.result(t, id, 4*time.Minute)
	l.record(t, id, "identity-two-approvers")
	if res.Phase != workflows.PhaseSucceeded || len(res.Approvals) != 2 {
		t.Fatalf("release: %s %q, approvals %s", res.Phase, res.Reason, writeJSON(res.Approvals))
	}
	a, b := res.Approvals[0], res.Approvals[1]
	if a.Identity != "alice" || a.User != "alice" || a.Via != "cli" || !strings.HasPrefix(a.Key, "SHA256:") {
		t.Errorf("first approval: %s", writeJSON(a))
	}
	if b.Identity != "bob" || b.UserID != slackApprover || b.Team != "T0KEELSON" || b.Via != "slack" {
		t.Errorf("second approval: %s", writeJSON(b))
	}
	// The history holds both Updates with their proofs.
	proofs := 0
	for _, ev := range l.history(t, id) {
		if acc := ev.GetWorkflowExecutionUpdateAcceptedEventAttributes(); acc != nil && acc.GetAcceptedRequest().GetInput().GetName() == workflows.UpdateApprove {
			for _, p := range acc.GetAcceptedRequest().GetInput().GetArgs().GetPayloads() {
				var ans workflows.GateAnswer
				if json.Unmarshal(p.GetData(), &ans) == nil && ans.Proof != nil && ans.Proof.Signature != "" {
					proofs++
				}
			}
		}
	}
	if proofs != 2 {
		t.Errorf("history holds %d accepted answers with a proof, want 2", proofs)
	}
	out, _ = cli(t, "release", "status", id)
	for _, want := range []string{"by ci", "approved by alice (key SHA256:", "approved by bob (Slack user " + slackApprover + " of team T0KEELSON"} {
		if !strings.Contains(out, want) {
			t.Errorf("release status does not say %q:\n%s", want, out)
		}
	}
}

// editYAML rewrites a YAML file through a generic document.
func editYAML(t *testing.T, file string, edit func(doc map[string]any)) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	edit(doc)
	if b, err = yaml.Marshal(doc); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

var _ = control.ErrRefused
