package identity

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// Signer signs intents as one principal.
type Signer struct {
	// Principal is the person's id in the access policy, or Bridge.
	Principal string
	key       ssh.Signer
}

// NewSigner signs as principal with key.
func NewSigner(principal string, key ssh.Signer) *Signer {
	return &Signer{Principal: principal, key: key}
}

// Sign signs in at now and returns the proof to send with the answer.
func (s *Signer) Sign(in Intent, now time.Time) (*Proof, error) {
	in.At = now.UnixMilli()
	blob, err := sign(s.key, Namespace, in.Bytes())
	if err != nil {
		return nil, fmt.Errorf("sign %s of %s as %s: %w", in.Action, in.Release, s.Principal, err)
	}
	return &Proof{
		Signer:    s.Principal,
		Key:       KeyString(s.key.PublicKey()),
		At:        in.At,
		Signature: base64.StdEncoding.EncodeToString(blob),
	}, nil
}

// Fingerprint is the signing key's SHA256 fingerprint.
func (s *Signer) Fingerprint() string { return ssh.FingerprintSHA256(s.key.PublicKey()) }

// LoadSigner reads an unencrypted OpenSSH private key (an ed25519 key made
// by ssh-keygen -t ed25519). A key with a passphrase belongs in ssh-agent.
func LoadSigner(principal, path string) (*Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	key, err := ssh.ParsePrivateKey(data)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		return nil, fmt.Errorf("signing key %s has a passphrase: add it to ssh-agent (ssh-add %s) and leave --key unset", path, path)
	}
	if err != nil {
		return nil, fmt.Errorf("read signing key %s: %w", path, err)
	}
	if key.PublicKey().Type() != ssh.KeyAlgoED25519 {
		return nil, fmt.Errorf("signing key %s is %s; Keelson takes ssh-ed25519 keys", path, key.PublicKey().Type())
	}
	return NewSigner(principal, key), nil
}

// AgentSigner signs with a key of the ssh-agent at SSH_AUTH_SOCK: the one
// whose public key is in pubFile when given, else the agent's first
// ed25519 key. It returns nil and no error when there is no agent.
func AgentSigner(principal, pubFile string) (*Signer, error) {
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock == "" {
		return nil, nil
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("reach ssh-agent at %s: %w", sock, err)
	}
	signers, err := agent.NewClient(conn).Signers()
	if err != nil {
		return nil, fmt.Errorf("list ssh-agent's keys: %w", err)
	}
	var want ssh.PublicKey
	if pubFile != "" {
		data, err := os.ReadFile(pubFile)
		if err != nil {
			return nil, fmt.Errorf("read public key: %w", err)
		}
		if want, err = parseKey(strings.TrimSpace(string(data))); err != nil {
			return nil, fmt.Errorf("public key %s: %w", pubFile, err)
		}
	}
	for _, s := range signers {
		pub := s.PublicKey()
		if want != nil && string(pub.Marshal()) == string(want.Marshal()) {
			return NewSigner(principal, s), nil
		}
		if want == nil && pub.Type() == ssh.KeyAlgoED25519 {
			return NewSigner(principal, s), nil
		}
	}
	if want != nil {
		return nil, fmt.Errorf("ssh-agent does not hold the key of %s", pubFile)
	}
	return nil, nil
}
