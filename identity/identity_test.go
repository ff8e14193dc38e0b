package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func newKey(t *testing.T, principal string) *Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return NewSigner(principal, s)
}

func pubOf(s *Signer) string { return KeyString(s.key.PublicKey()) }

func testAccess(alice, bridge *Signer) *Access {
	return &Access{
		Enforced:  true,
		People:    []Person{{ID: "alice", Keys: []string{pubOf(alice)}, Slack: []string{"T1/UALICE"}}},
		Bridges:   []string{pubOf(bridge)},
		Approvers: []string{"alice", "@release-managers"},
		Operators: []string{"slack:T1/UOPS"},
	}
}

func TestVerify(t *testing.T) {
	alice, bridge, mallory := newKey(t, "alice"), newKey(t, Bridge), newKey(t, "alice")
	a := testAccess(alice, bridge)
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	in := Intent{Action: "approve", Release: "release-demo-1.0.0", Run: "run-1", Gate: "promote", GateOpened: now.Add(-time.Hour).UnixMilli()}

	p, err := alice.Sign(in, now)
	if err != nil {
		t.Fatal(err)
	}
	who, err := a.Verify(in, p, now.Add(time.Minute))
	if err != nil || who.ID != "alice" || !strings.HasPrefix(who.Key, "SHA256:") {
		t.Fatalf("alice's own proof: %+v, %v", who, err)
	}
	if !a.May(RoleApprover, who) || a.May(RoleOperator, who) {
		t.Errorf("alice approver %v operator %v; want true, false", a.May(RoleApprover, who), a.May(RoleOperator, who))
	}

	refused := map[string]struct {
		in    Intent
		p     *Proof
		now   time.Time
		wants string
	}{
		"unsigned":        {in, nil, now, "not signed"},
		"other release":   {with(in, func(i *Intent) { i.Release = "release-other-1.0.0" }), p, now, "bad signature"},
		"other run":       {with(in, func(i *Intent) { i.Run = "run-2" }), p, now, "bad signature"},
		"gate reopened":   {with(in, func(i *Intent) { i.GateOpened++ }), p, now, "bad signature"},
		"reject for it":   {with(in, func(i *Intent) { i.Action = "reject" }), p, now, "bad signature"},
		"late":            {in, p, now.Add(Window + time.Second), "replayed"},
		"claims a name":   {in, ptr(with(*p, func(q *Proof) { q.Signer = "bob" })), now, "bob is not a person"},
		"claims as slack": {with(in, func(i *Intent) { i.SlackTeam, i.SlackUser = "T1", "UALICE" }), p, now, "only the Slack bridge"},
	}
	forged, _ := mallory.Sign(in, now)
	refused["another key"] = struct {
		in    Intent
		p     *Proof
		now   time.Time
		wants string
	}{in, forged, now, "is not one of alice's keys"}
	// A signature by alice's key over other bytes, with the key swapped in.
	stolen := *forged
	stolen.Key = p.Key
	refused["key swapped"] = struct {
		in    Intent
		p     *Proof
		now   time.Time
		wants string
	}{in, &stolen, now, "another key"}
	for name, c := range refused {
		if _, err := a.Verify(c.in, c.p, c.now); err == nil || !strings.Contains(err.Error(), c.wants) {
			t.Errorf("%s: err %v; want one containing %q", name, err, c.wants)
		}
	}
}

func with[T any](v T, f func(*T)) T { f(&v); return v }

func TestBridgeAttestsSlackUsers(t *testing.T) {
	alice, bridge := newKey(t, "alice"), newKey(t, Bridge)
	a := testAccess(alice, bridge)
	now := time.Now()
	in := Intent{Action: "approve", Release: "r", Run: "x", Gate: "g", SlackTeam: "T1", SlackUser: "UOTHER", Groups: []string{"@release-managers"}}
	p, _ := bridge.Sign(in, now)
	who, err := a.Verify(in, p, now)
	if err != nil || who.ID != "slack:T1/UOTHER" || !a.May(RoleApprover, who) {
		t.Fatalf("group member via bridge: %+v %v", who, err)
	}
	// Alice clicking in Slack is alice.
	in2 := with(in, func(i *Intent) { i.SlackUser, i.Groups = "UALICE", nil })
	p2, _ := bridge.Sign(in2, now)
	if who, err := a.Verify(in2, p2, now); err != nil || who.ID != "alice" {
		t.Fatalf("alice via bridge: %+v %v", who, err)
	}
	// A person's key cannot sign as the bridge.
	p3, _ := alice.Sign(in, now)
	p3.Signer = Bridge
	if _, err := a.Verify(in, p3, now); err == nil || !strings.Contains(err.Error(), "not a Slack bridge") {
		t.Fatalf("alice as bridge: %v", err)
	}
	// Groups added after signing do not verify.
	in4 := with(in, func(i *Intent) { i.Groups = append(i.Groups, "@admins") })
	if _, err := a.Verify(in4, p, now); err == nil {
		t.Fatal("groups added after signing verified")
	}
	// A display name never matches: an entry equal to nothing but a name.
	if Matches([]string{"alice"}, Identity{ID: "slack:T1/UX", SlackTeam: "T1", SlackUser: "UX"}) {
		t.Fatal("matched by nothing")
	}
	if !Matches([]string{"UOPS"}, Identity{ID: "slack:T1/UOPS", SlackTeam: "T1", SlackUser: "UOPS"}) {
		t.Fatal("bare Slack user id (as release files write approvers) did not match")
	}
}

// TestSSHKeygenInterop signs with ssh-keygen and verifies here, and the
// other way round: the format is OpenSSH's, not a lookalike.
func TestSSHKeygenInterop(t *testing.T) {
	keygen, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Fatalf("ssh-keygen not found (Debian's openssh-client): %v", err)
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "id_ed25519")
	if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-C", "alice", "-f", keyFile).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	s, err := LoadSigner("alice", keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := os.ReadFile(keyFile + ".pub")
	a := &Access{Enforced: true, People: []Person{{ID: "alice", Keys: []string{strings.TrimSpace(string(pub))}}}}
	now := time.Now()
	in := Intent{Action: "abort", Release: "r", Run: "x", Reason: "error rate", At: now.UnixMilli()}

	// ssh-keygen signs, Keelson verifies.
	msg := filepath.Join(dir, "intent")
	os.WriteFile(msg, in.Bytes(), 0o600)
	if out, err := exec.Command(keygen, "-Y", "sign", "-f", keyFile, "-n", Namespace, msg).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -Y sign: %v\n%s", err, out)
	}
	armored, _ := os.ReadFile(msg + ".sig")
	blob, err := Dearmor(string(armored))
	if err != nil {
		t.Fatal(err)
	}
	p := &Proof{Signer: "alice", Key: strings.TrimSpace(string(pub)), At: in.At, Signature: base64.StdEncoding.EncodeToString(blob)}
	if _, err := a.Verify(in, p, now); err != nil {
		t.Fatalf("ssh-keygen's signature: %v", err)
	}

	// Keelson signs, ssh-keygen verifies against an allowed signers file.
	mine, err := s.Sign(in, now)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(mine.Signature)
	os.WriteFile(msg+".sig", []byte(Armor(raw)), 0o600)
	allowed := filepath.Join(dir, "allowed_signers")
	os.WriteFile(allowed, []byte("alice "+strings.TrimSpace(string(pub))+"\n"), 0o600)
	cmd := exec.Command(keygen, "-Y", "verify", "-f", allowed, "-I", "alice", "-n", Namespace, "-s", msg+".sig")
	cmd.Stdin, _ = os.Open(msg)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -Y verify of Keelson's signature: %v\n%s", err, out)
	}
}

func TestPolicy(t *testing.T) {
	alice, bridge := newKey(t, "alice"), newKey(t, Bridge)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "allowed_signers"), []byte("# team\nbob,carol namespaces=\"keelson\" "+pubOf(newKey(t, "bob"))+" bob@host\ngit-only namespaces=\"git\" "+pubOf(newKey(t, "x"))+"\n"), 0o600)
	good := "people:\n  - id: alice\n    keys: [\"" + pubOf(alice) + "\"]\n    slack: [T1/UALICE]\nallowedSigners: allowed_signers\nbridges: [\"" + pubOf(bridge) + "\"]\napplications:\n  - match: payments\n    approvers: [bob]\n  - match: \"*\"\n    starters: [carol]\n    approvers: [alice, \"@release-managers\"]\n    operators: [\"slack:T1/UOPS\"]\n"
	file := filepath.Join(dir, "access.yaml")
	os.WriteFile(file, []byte(good), 0o600)
	p, err := LoadPolicy(file)
	if err != nil {
		t.Fatal(err)
	}
	if a := p.For("payments"); len(a.Approvers) != 1 || a.Approvers[0] != "bob" || len(a.Starters) != 0 {
		t.Errorf("payments: %+v", a)
	}
	if a := p.For("demo"); a.Starters[0] != "carol" || !a.Enforced || !strings.Contains(a.Policy, "sha256:") {
		t.Errorf("demo: %+v", a)
	}
	if a := p.For("demo"); a.person("carol") == nil || a.person("git-only") != nil {
		t.Errorf("allowed signers: people %+v", a.People)
	}
	bad := map[string]string{
		"people:\n  - id: alice\n    keys: [nope]\n":                "access.yaml:2: people[0].keys[0]",
		"people:\n  - id: alice\n  - id: alice\n":                   "access.yaml:3: people[1].id: \"alice\" listed twice",
		"applications:\n  - match: \"*\"\n    approvers: [alcie]\n": "access.yaml:2: applications[0].approvers[0]: \"alcie\" is not a person",
		"aplications: []\n":                                         "access.yaml:1: field aplications not found",
		"people:\n  - id: \"@x\"\n":                                 "may not start with @",
		"people:\n  - id: a\n    slack: [U1]\n":                     "is not TEAM/USER",
		"applications:\n  - starters: [\"*\"]\n":                    "match: required",
		"people:\n  - id: a\n    keys: [\"" + rsaKey(t) + "\"]\n":   "ssh-rsa key",
	}
	for text, want := range bad {
		_, err := ParsePolicy([]byte(text), filepath.Join(dir, "access.yaml"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("policy %q: err %v; want %q", text, err, want)
		}
	}
}

// rsaKey is an RSA public key in authorized_keys format.
func rsaKey(t *testing.T) string {
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return KeyString(pub)
}

func ptr[T any](v T) *T { return &v }
