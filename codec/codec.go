// Package codec encrypts what Keelson hands to Temporal. Every payload
// (workflow and activity inputs and results, signals, updates, queries,
// memos) is sealed with AES-256-GCM before it leaves the process, so the
// Temporal service and its database hold only ciphertext; the worker, the
// CLI and the codec endpoint of the Web UI hold the keys.
//
// A sealed payload keeps two metadata entries in clear, "encoding" =
// "binary/encrypted" and "encryption-key-id" = the key's id; its data is
// the nonce followed by the ciphertext of the whole original payload, its
// metadata included.
package codec

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"regexp"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/proto"
)

const (
	// EncodingEncrypted is the "encoding" metadata of a sealed payload.
	EncodingEncrypted = "binary/encrypted"
	// MetadataKeyID names the key that sealed a payload.
	MetadataKeyID = "encryption-key-id"
	// KeySize is the length of an AES-256 key.
	KeySize = 32
)

// Key is one AES-256 key and the id payloads sealed with it carry.
type Key struct {
	ID     string
	Secret []byte
}

// Keyring holds the keys: the first seals, all open. Rotation is a new key
// put first while the old ones stay, so histories sealed with them still
// read.
type Keyring struct {
	ids  []string
	aead map[string]cipher.AEAD
}

var keyIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// NewKeyring builds a keyring from keys, the first of which seals. Ids are
// 1 to 64 letters, digits, dots, underscores or dashes (they travel in
// clear), unique; every secret is 32 bytes.
func NewKeyring(keys ...Key) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("no keys")
	}
	k := &Keyring{aead: make(map[string]cipher.AEAD, len(keys))}
	for i, key := range keys {
		if !keyIDPattern.MatchString(key.ID) {
			// Not quoted: a malformed id may be a key pasted in its place.
			return nil, fmt.Errorf("key %d: its id must be 1 to 64 letters, digits, '.', '_' or '-'", i+1)
		}
		if _, dup := k.aead[key.ID]; dup {
			return nil, fmt.Errorf("key id %q appears twice", key.ID)
		}
		if len(key.Secret) != KeySize {
			return nil, fmt.Errorf("key %s: %d bytes, want %d", key.ID, len(key.Secret), KeySize)
		}
		block, err := aes.NewCipher(key.Secret)
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", key.ID, err)
		}
		gcm, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", key.ID, err)
		}
		k.ids = append(k.ids, key.ID)
		k.aead[key.ID] = gcm
	}
	return k, nil
}

// IDs returns the key ids, the sealing one first: what to log, never the
// keys.
func (k *Keyring) IDs() []string { return append([]string(nil), k.ids...) }

// Codec is a converter.PayloadCodec sealing payloads with the keyring's
// first key and opening them with whichever key they name.
type Codec struct {
	keys *Keyring
}

var _ converter.PayloadCodec = (*Codec)(nil)

// New returns the codec of a keyring.
func New(k *Keyring) *Codec { return &Codec{keys: k} }

// NewDataConverter is Temporal's default data converter with every payload
// sealed by the keyring: what the worker, the CLI and the replayer use.
func NewDataConverter(k *Keyring) converter.DataConverter {
	return converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), New(k))
}

// NewKeylessDataConverter is Temporal's default data converter for a
// reader without keys (the CLI without --codec-keys): payloads go out in
// clear, and one sealed by a worker fails to decode with an error saying
// which key it needs and where keys are set, instead of the SDK's
// "payload encoding is not supported".
func NewKeylessDataConverter() converter.DataConverter {
	return converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), &Codec{})
}

// Encode seals every payload with the first key (a keyless Codec passes
// them through).
func (c *Codec) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	if c.keys == nil {
		return payloads, nil
	}
	id := c.keys.ids[0]
	aead := c.keys.aead[id]
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		if p == nil {
			continue
		}
		plain, err := proto.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("encrypt payload: %w", err)
		}
		nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
		if _, err := rand.Read(nonce); err != nil {
			return nil, fmt.Errorf("encrypt payload: nonce: %w", err)
		}
		out[i] = &commonpb.Payload{
			Metadata: map[string][]byte{
				converter.MetadataEncoding: []byte(EncodingEncrypted),
				MetadataKeyID:              []byte(id),
			},
			Data: aead.Seal(nonce, nonce, plain, nil),
		}
	}
	return out, nil
}

// Decode opens sealed payloads and passes the others through unchanged, so
// histories written before encryption was turned on still read.
func (c *Codec) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		if p == nil || string(p.GetMetadata()[converter.MetadataEncoding]) != EncodingEncrypted {
			out[i] = p
			continue
		}
		id := string(p.GetMetadata()[MetadataKeyID])
		if id == "" {
			return nil, errors.New("decrypt payload: it names no encryption key (no " + MetadataKeyID + " metadata)")
		}
		if c.keys == nil {
			return nil, fmt.Errorf("payloads are encrypted (key %q) and no keys are set: give the workers' keys with --codec-keys or %s", id, EnvKeys)
		}
		aead, ok := c.keys.aead[id]
		if !ok {
			return nil, fmt.Errorf("decrypt payload: unknown key id %q: add that key to KEELSON_CODEC_KEYS (after the current one)", id)
		}
		data := p.GetData()
		if len(data) < aead.NonceSize()+aead.Overhead() {
			return nil, fmt.Errorf("decrypt payload sealed with key %q: %d bytes is too short", id, len(data))
		}
		n := aead.NonceSize()
		plain, err := aead.Open(nil, data[:n], data[n:], nil)
		if err != nil {
			return nil, fmt.Errorf("decrypt payload sealed with key %q: authentication failed (altered, or another key with the same id)", id)
		}
		var orig commonpb.Payload
		if err := proto.Unmarshal(plain, &orig); err != nil {
			return nil, fmt.Errorf("decrypt payload sealed with key %q: %w", id, err)
		}
		out[i] = &orig
	}
	return out, nil
}

// NewFailureConverter is the failure converter that goes with dc: failure
// messages and stack traces are moved into an encoded attributes payload,
// so that an error quoting a value (a Terraform or Helm message) is
// encrypted like the value. The Web UI shows "Encoded failure" until it
// decodes through the codec endpoint.
func NewFailureConverter(dc converter.DataConverter) converter.FailureConverter {
	return temporal.NewDefaultFailureConverter(temporal.DefaultFailureConverterOptions{DataConverter: dc, EncodeCommonAttributes: true})
}
