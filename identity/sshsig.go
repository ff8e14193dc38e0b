package identity

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
)

// The SSH signature format of OpenSSH's PROTOCOL.sshsig, which
// `ssh-keygen -Y sign` writes and `ssh-keygen -Y verify` and git read.
const (
	sshsigMagic   = "SSHSIG"
	sshsigVersion = 1
	sshsigHash    = "sha512"
	armorBegin    = "-----BEGIN SSH SIGNATURE-----"
	armorEnd      = "-----END SSH SIGNATURE-----"
)

// sshsig is the signature blob after its magic preamble.
type sshsig struct {
	Version   uint32
	PublicKey []byte
	Namespace string
	Reserved  string
	HashAlg   string
	Signature []byte
}

// signedData is what the key signs: the namespace, the hash algorithm and
// the message's hash, so that a signature is bound to its namespace.
func signedData(namespace string, message []byte) []byte {
	h := sha512.Sum512(message)
	return signedHash(namespace, sshsigHash, h[:])
}

// signedData256 is signedData with SHA-256, which ssh-keygen may be told
// to use (-O hashalg=sha256).
func signedData256(namespace string, message []byte) []byte {
	h := sha256.Sum256(message)
	return signedHash(namespace, "sha256", h[:])
}

func signedHash(namespace, alg string, hash []byte) []byte {
	return append([]byte(sshsigMagic), ssh.Marshal(struct {
		Namespace string
		Reserved  string
		HashAlg   string
		Hash      []byte
	}{namespace, "", alg, hash})...)
}

// sign signs message in namespace with s and returns the blob.
func sign(s ssh.Signer, namespace string, message []byte) ([]byte, error) {
	sig, err := s.Sign(nil, signedData(namespace, message))
	if err != nil {
		return nil, fmt.Errorf("sign with %s key: %w", s.PublicKey().Type(), err)
	}
	return append([]byte(sshsigMagic), ssh.Marshal(sshsig{
		Version:   sshsigVersion,
		PublicKey: s.PublicKey().Marshal(),
		Namespace: namespace,
		HashAlg:   sshsigHash,
		Signature: ssh.Marshal(sig),
	})...), nil
}

// parseSig reads a signature blob, and its public key.
func parseSig(blob []byte) (*sshsig, ssh.PublicKey, *ssh.Signature, error) {
	if !bytes.HasPrefix(blob, []byte(sshsigMagic)) {
		return nil, nil, nil, errors.New("not an SSH signature (no SSHSIG preamble)")
	}
	var s sshsig
	if err := ssh.Unmarshal(blob[len(sshsigMagic):], &s); err != nil {
		return nil, nil, nil, fmt.Errorf("read SSH signature: %w", err)
	}
	if s.Version != sshsigVersion {
		return nil, nil, nil, fmt.Errorf("SSH signature version %d (want %d)", s.Version, sshsigVersion)
	}
	pub, err := ssh.ParsePublicKey(s.PublicKey)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read the signature's public key: %w", err)
	}
	var sig ssh.Signature
	if err := ssh.Unmarshal(s.Signature, &sig); err != nil {
		return nil, nil, nil, fmt.Errorf("read the signature: %w", err)
	}
	return &s, pub, &sig, nil
}

// verifySig checks blob is pub's signature of message in namespace.
func verifySig(blob []byte, pub ssh.PublicKey, namespace string, message []byte) error {
	s, key, sig, err := parseSig(blob)
	if err != nil {
		return err
	}
	if !bytes.Equal(key.Marshal(), pub.Marshal()) {
		return errors.New("the signature was made by another key")
	}
	if s.Namespace != namespace {
		return fmt.Errorf("signature for namespace %q, not %q", s.Namespace, namespace)
	}
	if s.HashAlg != "sha512" && s.HashAlg != "sha256" {
		return fmt.Errorf("signature hash %q (want sha512 or sha256)", s.HashAlg)
	}
	data := signedData(namespace, message)
	if s.HashAlg == "sha256" {
		data = signedData256(namespace, message)
	}
	if err := pub.Verify(data, sig); err != nil {
		return errors.New("bad signature: it was not made over this answer")
	}
	return nil
}

// Armor writes blob as `ssh-keygen -Y sign` does.
func Armor(blob []byte) string {
	enc := base64.StdEncoding.EncodeToString(blob)
	var b strings.Builder
	b.WriteString(armorBegin + "\n")
	for len(enc) > 70 {
		b.WriteString(enc[:70] + "\n")
		enc = enc[70:]
	}
	b.WriteString(enc + "\n" + armorEnd + "\n")
	return b.String()
}

// Dearmor reads an armored signature (a .sig file of ssh-keygen).
func Dearmor(text string) ([]byte, error) {
	text = strings.TrimSpace(text)
	if !strings.HasPrefix(text, armorBegin) || !strings.HasSuffix(text, armorEnd) {
		return nil, errors.New("not an armored SSH signature")
	}
	body := strings.TrimSuffix(strings.TrimPrefix(text, armorBegin), armorEnd)
	blob, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(body), ""))
	if err != nil {
		return nil, fmt.Errorf("armored SSH signature: %w", err)
	}
	return blob, nil
}
