package identity

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Access is what the workflow knows of the access policy for one
// application: who is who, and who may start, approve and operate. It is
// recorded in the release's history when the release starts, so checks made
// later replay the same.
type Access struct {
	// Enforced is false when the worker has no access policy: answers
	// are then taken by the names they carry, as before identities.
	Enforced bool `json:"enforced"`
	// Policy names the policy file and its digest, for messages.
	Policy string   `json:"policy,omitempty"`
	People []Person `json:"people,omitempty"`
	// Bridges are the Slack bridges' public keys.
	Bridges []string `json:"bridges,omitempty"`
	// Role lists: a person's id, "slack:TEAM/USER", a Slack user group
	// ("@handle" or its id "S…", as the bridge attests it), or "*" for
	// anyone the policy identifies.
	Starters  []string `json:"starters,omitempty"`
	Approvers []string `json:"approvers,omitempty"`
	Operators []string `json:"operators,omitempty"`
}

// Person is one identity with its keys and Slack accounts.
type Person struct {
	ID string `json:"id"`
	// Keys are public keys in authorized_keys format.
	Keys []string `json:"keys,omitempty"`
	// Slack are the person's Slack accounts, TEAM/USER.
	Slack []string `json:"slack,omitempty"`
}

// Identity is who a verified proof names.
type Identity struct {
	// ID is the person's id, or slack:TEAM/USER for a Slack user the
	// policy does not list as a person.
	ID string `json:"id"`
	// Key is the fingerprint of the key that signed (SHA256:…), the
	// bridge's for a Slack answer.
	Key       string   `json:"key,omitempty"`
	SlackTeam string   `json:"slackTeam,omitempty"`
	SlackUser string   `json:"slackUser,omitempty"`
	Groups    []string `json:"groups,omitempty"`
}

// Roles of the access policy.
const (
	RoleStarter  = "starter"
	RoleApprover = "approver"
	RoleOperator = "operator"
)

// Verify checks p is a valid proof of in, made within Window of now by a key
// the policy knows, and returns who made it. in's At is taken from p; for a
// Slack answer, in must carry the team and user the bridge attested.
func (a *Access) Verify(in Intent, p *Proof, now time.Time) (Identity, error) {
	return a.verify(in, p, now, true)
}

// VerifyStanding is Verify without the time window, for a standing
// decision: a schedule's creation, which starts releases for as long as
// the schedule lives (and the policy still lists its creator).
func (a *Access) VerifyStanding(in Intent, p *Proof) (Identity, error) {
	return a.verify(in, p, time.Time{}, false)
}

func (a *Access) verify(in Intent, p *Proof, now time.Time, window bool) (Identity, error) {
	if p == nil || p.Signature == "" {
		return Identity{}, fmt.Errorf("not signed: the worker verifies identities (%s); sign with your SSH key (keelson --key, or ssh-agent)", a.policyName())
	}
	blob, err := base64.StdEncoding.DecodeString(p.Signature)
	if err != nil {
		return Identity{}, fmt.Errorf("signature of %s is not base64: %v", p.Signer, err)
	}
	pub, err := parseKey(p.Key)
	if err != nil {
		return Identity{}, fmt.Errorf("key of %s: %v", p.Signer, err)
	}
	if pub.Type() != ssh.KeyAlgoED25519 {
		return Identity{}, fmt.Errorf("key of %s is %s; Keelson takes ssh-ed25519 keys", p.Signer, pub.Type())
	}
	fp := ssh.FingerprintSHA256(pub)
	var who Identity
	if p.Signer == Bridge {
		if !a.knows(a.Bridges, pub) {
			return Identity{}, fmt.Errorf("key %s is not a Slack bridge of the access policy (%s)", fp, a.policyName())
		}
		if in.SlackTeam == "" || in.SlackUser == "" {
			return Identity{}, fmt.Errorf("a Slack answer must name its team and user")
		}
		who = Identity{ID: "slack:" + in.SlackTeam + "/" + in.SlackUser, Key: fp, SlackTeam: in.SlackTeam, SlackUser: in.SlackUser, Groups: in.Groups}
		for _, person := range a.People {
			if slices.Contains(person.Slack, in.SlackTeam+"/"+in.SlackUser) {
				who.ID = person.ID
				break
			}
		}
	} else {
		person := a.person(p.Signer)
		if person == nil {
			return Identity{}, fmt.Errorf("%s is not a person of the access policy (%s)", p.Signer, a.policyName())
		}
		if !a.knows(person.Keys, pub) {
			return Identity{}, fmt.Errorf("key %s is not one of %s's keys in the access policy (%s)", fp, p.Signer, a.policyName())
		}
		if in.SlackTeam != "" || in.SlackUser != "" || len(in.Groups) > 0 {
			return Identity{}, fmt.Errorf("only the Slack bridge attests Slack users and groups")
		}
		who = Identity{ID: person.ID, Key: fp}
	}
	in.At = p.At
	if err := verifySig(blob, pub, Namespace, in.Bytes()); err != nil {
		return Identity{}, fmt.Errorf("signature of %s (%s): %v", p.Signer, fp, err)
	}
	at := time.UnixMilli(p.At)
	if d := now.Sub(at); window && (d > Window || d < -Window) {
		return Identity{}, fmt.Errorf("signed at %s, more than %s from the release's clock (%s): a clock off, or an answer replayed",
			at.UTC().Format(time.RFC3339), Window, now.UTC().Format(time.RFC3339))
	}
	return who, nil
}

// May reports whether who holds role for the application.
func (a *Access) May(role string, who Identity) bool {
	return Matches(a.holders(role), who)
}

// holders is the list of role.
func (a *Access) holders(role string) []string {
	switch role {
	case RoleStarter:
		return a.Starters
	case RoleApprover:
		return a.Approvers
	case RoleOperator:
		return a.Operators
	}
	return nil
}

// Matches reports whether an entry of list names who: "*", their id, their
// Slack account (slack:TEAM/USER, or the bare user id the release files
// use), or a group the bridge attested. A display name never matches.
func Matches(list []string, who Identity) bool {
	for _, e := range list {
		switch {
		case e == "":
		case e == "*":
			return true
		case e == who.ID:
			return true
		case who.SlackUser != "" && (e == "slack:"+who.SlackTeam+"/"+who.SlackUser || e == who.SlackUser):
			return true
		case slices.Contains(who.Groups, e), strings.HasPrefix(e, "@") && slices.Contains(who.Groups, e[1:]),
			!strings.HasPrefix(e, "@") && slices.Contains(who.Groups, "@"+e):
			return true
		}
	}
	return false
}

// Holders lists who holds role, for refusals.
func (a *Access) Holders(role string) string {
	list := a.holders(role)
	if len(list) == 0 {
		return "nobody"
	}
	return strings.Join(list, ", ")
}

func (a *Access) person(id string) *Person {
	for i := range a.People {
		if a.People[i].ID == id {
			return &a.People[i]
		}
	}
	return nil
}

func (a *Access) knows(keys []string, pub ssh.PublicKey) bool {
	want := pub.Marshal()
	for _, k := range keys {
		if known, err := parseKey(k); err == nil && string(known.Marshal()) == string(want) {
			return true
		}
	}
	return false
}

func (a *Access) policyName() string {
	if a.Policy == "" {
		return "the worker's access policy"
	}
	return a.Policy
}

// parseKey reads a public key in authorized_keys format.
func parseKey(s string) (ssh.PublicKey, error) {
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("not a public key in authorized_keys format: %v", err)
	}
	return pub, nil
}

// KeyString is pub in authorized_keys format, without a comment or newline.
func KeyString(pub ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
}
