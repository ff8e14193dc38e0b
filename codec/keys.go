package codec

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// EnvKeys is the variable of the key spec; see ParseKeys.
const EnvKeys = "KEELSON_CODEC_KEYS"

var envNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ParseKeys reads a key spec: a comma-separated list of ID=SOURCE, the
// first of which seals. SOURCE is file:/path, a file holding the 32 raw
// bytes, 64 hex characters or the base64 of 32 bytes (a trailing newline
// is fine), or env:NAME, a variable holding hex or base64. Keys are never
// written in the spec itself. getenv resolves env: sources (os.Getenv
// outside tests).
//
// Errors name the entry (its position, and its text once it has the form
// ID=file:… or ID=env:…) and what is wrong, never key material: an entry
// that is not of that form is not quoted, as it may be a pasted key.
func ParseKeys(spec string, getenv func(string) string) (*Keyring, error) {
	if strings.TrimSpace(spec) == "" {
		return nil, errors.New("no keys: want ID=file:/path or ID=env:NAME, comma-separated")
	}
	var keys []Key
	for i, entry := range strings.Split(spec, ",") {
		n := i + 1
		entry = strings.TrimSpace(entry)
		if entry == "" {
			return nil, fmt.Errorf("key entry %d is empty (a stray comma?)", n)
		}
		id, source, ok := strings.Cut(entry, "=")
		id, source = strings.TrimSpace(id), strings.TrimSpace(source)
		if !ok || id == "" || source == "" {
			return nil, fmt.Errorf("key entry %d: want ID=file:/path or ID=env:NAME", n)
		}
		kind, where, _ := strings.Cut(source, ":")
		if kind != "file" && kind != "env" {
			return nil, fmt.Errorf("key entry %d: the source must be file:/path or env:NAME (keys are never written in the spec)", n)
		}
		if !keyIDPattern.MatchString(id) {
			return nil, fmt.Errorf("key entry %d: the id must be 1 to 64 letters, digits, '.', '_' or '-'", n)
		}
		// Ids travel in clear in every payload, and the text of a source
		// is quoted in errors: neither may be a key pasted in its place.
		if _, isKey := keyBytes([]byte(id), false); isKey {
			return nil, fmt.Errorf("key entry %d: the id looks like a key; ids are written in clear in every payload", n)
		}
		if _, isKey := keyBytes([]byte(where), false); isKey {
			return nil, fmt.Errorf("key entry %d: the %s: source looks like a key; keys are never written in the spec", n, kind)
		}
		if kind == "env" && !envNamePattern.MatchString(where) {
			return nil, fmt.Errorf("key entry %d: env: wants a variable name", n)
		}
		secret, err := loadKey(kind, where, getenv)
		if err != nil {
			return nil, fmt.Errorf("key entry %d %q: %w", n, id+"="+kind+":"+where, err)
		}
		keys = append(keys, Key{ID: id, Secret: secret})
	}
	return NewKeyring(keys...)
}

func loadKey(kind, where string, getenv func(string) string) ([]byte, error) {
	if kind == "env" {
		v := getenv(where)
		if strings.TrimSpace(v) == "" {
			return nil, fmt.Errorf("variable %s is not set or empty", where)
		}
		if k, ok := keyBytes([]byte(v), false); ok {
			return k, nil
		}
		return nil, fmt.Errorf("variable %s holds %d characters: want 64 hex characters or base64 of 32 bytes", where, len(v))
	}
	if where == "" {
		return nil, errors.New("file: names no file")
	}
	b, err := os.ReadFile(where)
	if err != nil {
		// The *PathError says which file and why (missing, denied); it
		// holds no content.
		return nil, err
	}
	if k, ok := keyBytes(b, true); ok {
		return k, nil
	}
	return nil, fmt.Errorf("file %s holds %d bytes: want 32 raw bytes, 64 hex characters or base64 of 32 bytes", where, len(b))
}

// keyBytes decodes a key from its raw (when allowed), hex or base64 form.
// The lengths cannot be confused: 32 raw bytes, 64 hex characters, 43 or
// 44 base64 characters. Decoding errors are dropped: they quote the
// offending character, which is key material.
func keyBytes(b []byte, raw bool) ([]byte, bool) {
	if raw {
		if len(b) == KeySize {
			return b, true
		}
		// Raw bytes saved with a trailing newline (an editor, echo).
		for _, nl := range []string{"\r\n", "\n"} {
			if t, ok := bytes.CutSuffix(b, []byte(nl)); ok && len(t) == KeySize {
				return t, true
			}
		}
	}
	t := string(bytes.TrimSpace(b))
	if len(t) == 2*KeySize {
		if k, err := hex.DecodeString(t); err == nil {
			return k, true
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(t); err == nil && len(k) == KeySize {
			return k, true
		}
	}
	return nil, false
}
