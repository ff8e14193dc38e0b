// Package identity is how Keelson knows who answered a gate or steered a
// release, without trusting the name a caller writes. Every approval,
// rejection and control carries a Proof: an SSH signature (the format of
// `ssh-keygen -Y sign`, namespace "keelson") over an Intent that names the
// release, its run, the gate opening and the decision. The workflow checks
// the proof in its Update validator against an Access, the part of the
// worker's access policy that concerns the application, recorded in the
// release's history when it starts. Checking is pure computation, so it is
// deterministic and the same on every worker.
//
// People sign with their own keys (the CLI, from ssh-agent or a file). Slack
// users have no keys: the worker's Slack bridge verifies Slack's request
// signature, resolves the user's groups, and signs the answer with the
// bridge's key, naming the Slack team and user; the policy lists the
// bridge's public key.
package identity

import (
	"encoding/json"
	"time"
)

// Actions an Intent may name besides the control Update names (pause,
// resume, abort, promote, rollback, approve, reject, override-window).
const (
	ActionStart = "start"
)

// Namespace is the SSH signature namespace of Keelson's intents, so that a
// signature made for git or anything else is never taken for one.
const Namespace = "keelson"

// Window is how far a proof's signing time may be from the workflow's
// clock. It bounds how long a captured answer could be replayed; the gate
// opening and run it names bound where.
const Window = 5 * time.Minute

// Intent is what a signature covers. The signer builds it from the answer it
// sends; the workflow builds it again from the answer it receives and its
// own state (its ID, run, the gate open now), so that a proof made for
// another release, run, gate opening or decision does not verify.
type Intent struct {
	Action string `json:"action"`
	// Release is the workflow ID, Run its run ID (empty for a start, whose
	// run does not exist yet).
	Release string `json:"release"`
	Run     string `json:"run,omitempty"`
	// Gate and GateOpened (Unix milliseconds) name the gate opening an
	// answer is for: a gate opened again (its plan changed) takes new
	// answers.
	Gate       string `json:"gate,omitempty"`
	GateOpened int64  `json:"gateOpened,omitempty"`
	Reason     string `json:"reason,omitempty"`
	// Regions and Waves are a control's scope.
	Regions []string `json:"regions,omitempty"`
	Waves   []string `json:"waves,omitempty"`
	// Application, Version and Bundle are a start's.
	Application string `json:"application,omitempty"`
	Version     string `json:"version,omitempty"`
	Bundle      string `json:"bundle,omitempty"`
	// SlackTeam, SlackUser and Groups are what the Slack bridge attests:
	// who clicked, and which of the groups it was asked about they belong to.
	SlackTeam string   `json:"slackTeam,omitempty"`
	SlackUser string   `json:"slackUser,omitempty"`
	Groups    []string `json:"groups,omitempty"`
	// At is when it was signed, Unix milliseconds.
	At int64 `json:"at"`
}

// Bytes is the message signed: the intent's JSON, whose field order is
// fixed by the struct.
func (in Intent) Bytes() []byte {
	b, err := json.Marshal(in)
	if err != nil {
		// Strings, slices of strings and integers always marshal.
		panic("identity: marshal intent: " + err.Error())
	}
	return append([]byte("keelson-intent-v1\n"), b...)
}

// Proof is a signature over an Intent, carried with the answer.
type Proof struct {
	// Signer is the principal the key is listed under in the access
	// policy, or Bridge for an answer relayed by the Slack bridge.
	Signer string `json:"signer"`
	// Key is the public key, in authorized_keys format without a comment.
	Key string `json:"key"`
	// At is when it was signed, Unix milliseconds (the Intent's At).
	At int64 `json:"at"`
	// Signature is the SSH signature blob (SSHSIG), base64.
	Signature string `json:"signature"`
}

// Bridge is the Signer of answers relayed by the Slack bridge.
const Bridge = "slack-bridge"

// Millis is t in Unix milliseconds, zero for the zero time.
func Millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}
