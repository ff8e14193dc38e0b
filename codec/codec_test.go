package codec

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/proto"
)

func newKey(t *testing.T, id string) Key {
	t.Helper()
	k := Key{ID: id, Secret: make([]byte, KeySize)}
	if _, err := rand.Read(k.Secret); err != nil {
		t.Fatal(err)
	}
	return k
}

func ring(t *testing.T, keys ...Key) *Keyring {
	t.Helper()
	r, err := NewKeyring(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

type gate struct {
	Name      string
	Approvers []string
	Deadline  time.Time
}

func TestRoundTripThroughTheDataConverter(t *testing.T) {
	dc := NewDataConverter(ring(t, newKey(t, "k1")))
	values := []any{
		"the secret release note",
		42,
		[]byte{0, 1, 2, 0xff},
		map[string]string{"region": "eu-west-1"},
		gate{Name: "prod", Approvers: []string{"ana", "bo"}, Deadline: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)},
		nil,
	}
	for _, v := range values {
		p, err := dc.ToPayload(v)
		if err != nil {
			t.Fatalf("encode %#v: %v", v, err)
		}
		if got := string(p.Metadata[converter.MetadataEncoding]); got != EncodingEncrypted {
			t.Errorf("%#v: encoding %q", v, got)
		}
		if got := string(p.Metadata[MetadataKeyID]); got != "k1" {
			t.Errorf("%#v: key id %q", v, got)
		}
		if len(p.Metadata) != 2 {
			t.Errorf("%#v: metadata in clear %v, want only encoding and key id", v, p.Metadata)
		}
		if v == nil {
			var out any
			if err := dc.FromPayload(p, &out); err != nil || out != nil {
				t.Errorf("nil: %v %v", out, err)
			}
			continue
		}
		out := reflect.New(reflect.TypeOf(v))
		if err := dc.FromPayload(p, out.Interface()); err != nil {
			t.Fatalf("decode %#v: %v", v, err)
		}
		if !reflect.DeepEqual(out.Elem().Interface(), v) {
			t.Errorf("round trip: got %#v, want %#v", out.Elem().Interface(), v)
		}
	}
	// Several payloads at once (an activity's arguments).
	ps, err := dc.ToPayloads("a", 1, gate{Name: "g"})
	if err != nil {
		t.Fatal(err)
	}
	var s string
	var n int
	var g gate
	if err := dc.FromPayloads(ps, &s, &n, &g); err != nil || s != "a" || n != 1 || g.Name != "g" {
		t.Errorf("payloads: %q %d %+v %v", s, n, g, err)
	}
}

func TestCiphertextHidesThePlaintextAndItsMetadata(t *testing.T) {
	c := New(ring(t, newKey(t, "k1")))
	plain := &commonpb.Payload{
		Metadata: map[string][]byte{"encoding": []byte("json/plain"), "messageType": []byte("keelson.SecretType")},
		Data:     []byte(`"db-password-hunter2"`),
	}
	enc, err := c.Encode([]*commonpb.Payload{plain, plain})
	if err != nil {
		t.Fatal(err)
	}
	wire, err := proto.Marshal(enc[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"hunter2", "json/plain", "keelson.SecretType"} {
		if bytes.Contains(wire, []byte(secret)) {
			t.Errorf("encoded payload shows %q", secret)
		}
	}
	if bytes.Equal(enc[0].Data, enc[1].Data) {
		t.Error("the same payload sealed twice gives the same bytes: nonce reused")
	}
	dec, err := c.Decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(dec[0], plain) || !proto.Equal(dec[1], plain) {
		t.Errorf("decoded %v, want %v", dec, plain)
	}
}

func TestRotationOldKeysStillOpen(t *testing.T) {
	k1, k2 := newKey(t, "k1"), newKey(t, "k2")
	before := New(ring(t, k1))
	after := New(ring(t, k2, k1))
	p := &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"x"`)}

	old, err := before.Encode([]*commonpb.Payload{p})
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := after.Encode([]*commonpb.Payload{p})
	if err != nil {
		t.Fatal(err)
	}
	if id := string(fresh[0].Metadata[MetadataKeyID]); id != "k2" {
		t.Errorf("after rotation sealed with %q, want k2 (the first key)", id)
	}
	dec, err := after.Decode([]*commonpb.Payload{old[0], fresh[0]})
	if err != nil {
		t.Fatalf("decode a mixed history: %v", err)
	}
	for i, d := range dec {
		if !proto.Equal(d, p) {
			t.Errorf("payload %d: %v", i, d)
		}
	}
	// Before the rotation reached it, a reader without k2 says which key
	// it lacks, and nothing of the key itself.
	_, err = before.Decode(fresh)
	if err == nil || !strings.Contains(err.Error(), `"k2"`) {
		t.Fatalf("unknown key: %v, want it to name k2", err)
	}
	for _, k := range []Key{k1, k2} {
		assertNoKey(t, err.Error(), k.Secret)
	}
}

func TestPlainPayloadsPassThrough(t *testing.T) {
	c := New(ring(t, newKey(t, "k1")))
	dc := converter.GetDefaultDataConverter()
	p, err := dc.ToPayload(map[string]int{"before": 1})
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Decode([]*commonpb.Payload{p, nil})
	if err != nil {
		t.Fatal(err)
	}
	if out[0] != p || out[1] != nil {
		t.Errorf("plain payload changed: %v", out)
	}
	// And through the data converter, as a replay of an old history reads it.
	var m map[string]int
	if err := NewDataConverter(c.keys).FromPayload(p, &m); err != nil || m["before"] != 1 {
		t.Errorf("old history: %v %v", m, err)
	}
}

// A reader without keys writes in clear, reads clear payloads, and is told
// what it lacks when it meets a sealed one.
func TestKeylessReaderSaysWhatItLacks(t *testing.T) {
	keyless := NewKeylessDataConverter()
	p, err := keyless.ToPayload("v")
	if err != nil || string(p.GetMetadata()[converter.MetadataEncoding]) != converter.MetadataEncodingJSON {
		t.Fatalf("keyless encode: %v %v, want json/plain", p, err)
	}
	var s string
	if err := keyless.FromPayload(p, &s); err != nil || s != "v" {
		t.Errorf("keyless decode of clear: %q %v", s, err)
	}
	sealed, err := NewDataConverter(ring(t, newKey(t, "k7"))).ToPayload("secret")
	if err != nil {
		t.Fatal(err)
	}
	err = keyless.FromPayload(sealed, &s)
	if err == nil || !strings.Contains(err.Error(), `key "k7"`) || !strings.Contains(err.Error(), EnvKeys) {
		t.Errorf("keyless decode of sealed: %v, want the key id and %s", err, EnvKeys)
	}
}

func TestTamperedPayloadsFail(t *testing.T) {
	k1 := newKey(t, "k1")
	c := New(ring(t, k1))
	enc, err := c.Encode([]*commonpb.Payload{{Data: []byte("approve")}})
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) *commonpb.Payload {
		p := proto.Clone(enc[0]).(*commonpb.Payload)
		p.Data[i] ^= 1
		return p
	}
	short := proto.Clone(enc[0]).(*commonpb.Payload)
	short.Data = short.Data[:10]
	noID := proto.Clone(enc[0]).(*commonpb.Payload)
	delete(noID.Metadata, MetadataKeyID)
	// Same id, other key: as if the key file were replaced by mistake.
	other := New(ring(t, Key{ID: "k1", Secret: newKey(t, "x").Secret}))

	cases := map[string]struct {
		c    *Codec
		p    *commonpb.Payload
		want string
	}{
		"nonce":      {c, flip(0), "authentication failed"},
		"ciphertext": {c, flip(len(enc[0].Data) / 2), "authentication failed"},
		"tag":        {c, flip(len(enc[0].Data) - 1), "authentication failed"},
		"short":      {c, short, "too short"},
		"no key id":  {c, noID, "names no encryption key"},
		"other key":  {other, enc[0], "authentication failed"},
	}
	for name, tc := range cases {
		_, err := tc.c.Decode([]*commonpb.Payload{tc.p})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
			continue
		}
		assertNoKey(t, err.Error(), k1.Secret)
	}
}

func TestNewKeyringRefuses(t *testing.T) {
	k := newKey(t, "k1")
	cases := map[string]struct {
		keys []Key
		want string
	}{
		"none":      {nil, "no keys"},
		"short":     {[]Key{{ID: "k1", Secret: k.Secret[:16]}}, "key k1: 16 bytes, want 32"},
		"duplicate": {[]Key{k, k}, `key id "k1" appears twice`},
		"bad id":    {[]Key{{ID: "a b", Secret: k.Secret}}, "key 1: its id must be"},
		"empty id":  {[]Key{{ID: "", Secret: k.Secret}}, "key 1: its id must be"},
	}
	for name, tc := range cases {
		_, err := NewKeyring(tc.keys...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

func TestParseKeys(t *testing.T) {
	dir := t.TempDir()
	secret := func() []byte {
		b := make([]byte, KeySize)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	raw, rawNL, hx, b64, envHex, envB64 := secret(), secret(), secret(), secret(), secret(), secret()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	files := map[string]string{
		"raw":   write("raw", raw),
		"rawnl": write("rawnl", append(append([]byte{}, rawNL...), '\n')),
		"hex":   write("hex", []byte(hex.EncodeToString(hx)+"\n")),
		"b64":   write("b64", []byte(base64.StdEncoding.EncodeToString(b64)+"\r\n")),
	}
	env := map[string]string{
		"K_HEX": hex.EncodeToString(envHex),
		"K_B64": base64.StdEncoding.EncodeToString(envB64),
	}
	getenv := func(k string) string { return env[k] }

	spec := "raw=file:" + files["raw"] + ", rawnl=file:" + files["rawnl"] + ",hex=file:" + files["hex"] +
		",b64=file:" + files["b64"] + ",eh=env:K_HEX,eb=env:K_B64"
	r, err := ParseKeys(spec, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.IDs(), ","); got != "raw,rawnl,hex,b64,eh,eb" {
		t.Errorf("ids %s", got)
	}
	// Each key opens what a keyring of that key alone sealed.
	for id, want := range map[string][]byte{"raw": raw, "rawnl": rawNL, "hex": hx, "b64": b64, "eh": envHex, "eb": envB64} {
		enc, err := New(ring(t, Key{ID: id, Secret: want})).Encode([]*commonpb.Payload{{Data: []byte(id)}})
		if err != nil {
			t.Fatal(err)
		}
		dec, err := New(r).Decode(enc)
		if err != nil || string(dec[0].Data) != id {
			t.Errorf("key %s was not read as written: %v", id, err)
		}
	}

	short := write("short", []byte(base64.StdEncoding.EncodeToString(raw[:16])+"\n"))
	badHex := write("badhex", []byte(strings.Repeat("g", 64)))
	env["K_SHORT"] = base64.StdEncoding.EncodeToString(raw[:20])
	env["K_SPACE"] = "   "
	rawHex := hex.EncodeToString(raw)
	cases := []struct {
		spec, want string
	}{
		{"", "no keys"},
		{"  ", "no keys"},
		{"k1=file:" + files["raw"] + ",", "key entry 2 is empty"},
		{"k1=file:" + short, `key entry 1 "k1=file:` + short + `": file ` + short + " holds 25 bytes: want 32 raw bytes, 64 hex"},
		{"k1=file:" + badHex, "holds 64 bytes: want"},
		{"k1=file:" + filepath.Join(dir, "missing"), "no such file or directory"},
		{"k1=file:", "file: names no file"},
		{"k1=env:K_SHORT", `key entry 1 "k1=env:K_SHORT": variable K_SHORT holds 28 characters`},
		{"k1=env:K_NONE", "variable K_NONE is not set or empty"},
		{"k1=env:K_SPACE", "variable K_SPACE is not set or empty"},
		{"k1=file:" + files["raw"] + ",k1=env:K_HEX", `key id "k1" appears twice`},
		{"k1", "key entry 1: want ID=file:/path or ID=env:NAME"},
		{"=file:" + files["raw"], "key entry 1: want ID="},
		{"k1=" + rawHex, "key entry 1: the source must be file:/path or env:NAME"},
		{rawHex + "=env:K_HEX", "key entry 1: the id looks like a key"},
		{base64.StdEncoding.EncodeToString(raw) + "=env:K_HEX", "key entry 1: the source must be"},
		{base64.RawURLEncoding.EncodeToString(raw) + "=env:K_HEX", "key entry 1: the id looks like a key"},
		{"k1=env:" + base64.StdEncoding.EncodeToString(raw), "key entry 1: the env: source looks like a key"},
		{"k1=file:" + base64.StdEncoding.EncodeToString(raw), "key entry 1: the file: source looks like a key"},
		{"k1=env:K-1", "key entry 1: env: wants a variable name"},
		{"k1=vault:secret/x", "the source must be file:/path or env:NAME"},
	}
	for _, tc := range cases {
		_, err := ParseKeys(tc.spec, getenv)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.spec, err, tc.want)
			continue
		}
		for _, k := range [][]byte{raw, envHex, envB64} {
			assertNoKey(t, err.Error(), k)
		}
		if strings.Contains(err.Error(), "gggg") {
			t.Errorf("error quotes the file's content: %v", err)
		}
	}
}

// assertNoKey fails when msg shows a key in any of the forms it is kept in.
func assertNoKey(t *testing.T, msg string, key []byte) {
	t.Helper()
	for _, form := range []string{
		string(key), hex.EncodeToString(key), base64.StdEncoding.EncodeToString(key),
		base64.RawStdEncoding.EncodeToString(key), base64.URLEncoding.EncodeToString(key),
	} {
		// A fragment is a leak as well: an 8-character prefix will do.
		if strings.Contains(msg, form[:8]) {
			t.Errorf("error shows key material: %s", msg)
			return
		}
	}
}

type secretInput struct{ Token string }

func echoWorkflow(ctx workflow.Context, in secretInput) (string, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
	var out string
	err := workflow.ExecuteActivity(ctx, echoActivity, in).Get(ctx, &out)
	return out, err
}

func echoActivity(_ context.Context, in secretInput) (string, error) { return "seen " + in.Token, nil }

// A workflow and its activity run unchanged with the codec in the way.
func TestWorkflowRunsWithTheCodec(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	s.SetLogger(log.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	env := s.NewTestWorkflowEnvironment()
	env.SetDataConverter(NewDataConverter(ring(t, newKey(t, "k2"), newKey(t, "k1"))))
	env.RegisterActivity(echoActivity)
	env.ExecuteWorkflow(echoWorkflow, secretInput{Token: "t0p"})
	if !env.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var out string
	if err := env.GetWorkflowResult(&out); err != nil || out != "seen t0p" {
		t.Errorf("result %q %v", out, err)
	}
}

// A failure's message and stack trace are encrypted with the payloads: an
// error quoting a value is no clearer than the value.
func TestFailuresAreEncrypted(t *testing.T) {
	dc := NewDataConverter(ring(t, newKey(t, "k1")))
	fc := NewFailureConverter(dc)
	secret := "terraform: password hunter2 rejected"
	f := fc.ErrorToFailure(temporal.NewApplicationError(secret, "TerraformFailed"))
	raw, err := proto.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "hunter2") {
		t.Fatalf("the failure carries the message in clear: %v", f)
	}
	if f.GetMessage() != "Encoded failure" {
		t.Errorf("message %q, want Encoded failure", f.GetMessage())
	}
	back := fc.FailureToError(f)
	if !strings.Contains(back.Error(), "hunter2") {
		t.Errorf("decoded error %q lost its message", back)
	}
	var app *temporal.ApplicationError
	if !errors.As(back, &app) || app.Type() != "TerraformFailed" {
		t.Errorf("decoded error %v lost its type", back)
	}
}
