package codec

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/encoding/protojson"
)

const testToken = "s3cret-token"

// server mounts the handler as the worker does, under /codec/.
func server(t *testing.T, logs io.Writer) (*httptest.Server, *Codec) {
	t.Helper()
	c := New(ring(t, newKey(t, "k1")))
	mux := http.NewServeMux()
	mux.Handle("/codec/", http.StripPrefix("/codec", Handler(c, testToken, []string{"http://localhost:8233"}, slog.New(slog.NewTextHandler(logs, nil)))))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, c
}

// body is what the Web UI and the temporal CLI send: protojson of Payloads.
func body(t *testing.T, ps []*commonpb.Payload) []byte {
	t.Helper()
	b, err := protojson.Marshal(&commonpb.Payloads{Payloads: ps})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func post(t *testing.T, url string, b []byte, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, string(out)
}

func sealed(t *testing.T, c *Codec, values ...any) []*commonpb.Payload {
	t.Helper()
	ps, err := converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), c).ToPayloads(values...)
	if err != nil {
		t.Fatal(err)
	}
	return ps.Payloads
}

func TestHandlerDecodesWithTheToken(t *testing.T) {
	srv, c := server(t, io.Discard)
	enc := sealed(t, c, map[string]string{"note": "plain words"}, "second")
	resp, out := post(t, srv.URL+"/codec/decode", body(t, enc), map[string]string{
		"Authorization": "Bearer " + testToken, "X-Namespace": "default", "Origin": "http://localhost:8233",
	})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, out)
	}
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "http://localhost:8233" {
		t.Errorf("Allow-Origin %q", got)
	}
	// Parsed as the UI and the SDK's remote codec parse it.
	var got commonpb.Payloads
	if err := protojson.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("response %s: %v", out, err)
	}
	if len(got.Payloads) != 2 {
		t.Fatalf("%d payloads", len(got.Payloads))
	}
	p := got.Payloads[0]
	if enc := string(p.Metadata["encoding"]); enc != "json/plain" || string(p.Data) != `{"note":"plain words"}` {
		t.Errorf("decoded %s %s", enc, p.Data)
	}
	if string(got.Payloads[1].Data) != `"second"` {
		t.Errorf("second payload %s", got.Payloads[1].Data)
	}

	// The temporal CLI's --codec-endpoint goes through the SDK's remote
	// codec: both directions work with it.
	remote := converter.NewRemotePayloadCodec(converter.RemotePayloadCodecOptions{
		Endpoint: srv.URL + "/codec",
		ModifyRequest: func(r *http.Request) error {
			r.Header.Set("Authorization", "Bearer "+testToken)
			return nil
		},
	})
	plain := &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"from the CLI"`)}
	re, err := remote.Encode([]*commonpb.Payload{plain})
	if err != nil {
		t.Fatal(err)
	}
	if string(re[0].Metadata["encoding"]) != EncodingEncrypted {
		t.Errorf("remote encode gave %v", re[0].Metadata)
	}
	rd, err := c.Decode(re)
	if err != nil || string(rd[0].Data) != `"from the CLI"` {
		t.Errorf("remote encode does not decode locally: %v %v", rd, err)
	}
}

func TestHandlerRefusesWithoutTheToken(t *testing.T) {
	var logs bytes.Buffer
	srv, c := server(t, &logs)
	enc := sealed(t, c, "hidden words")
	for name, header := range map[string]map[string]string{
		"missing":     nil,
		"wrong":       {"Authorization": "Bearer guess-" + testToken},
		"prefix":      {"Authorization": "Bearer s3cret"},
		"basic":       {"Authorization": "Basic " + testToken},
		"bare scheme": {"Authorization": "Bearer"},
	} {
		resp, out := post(t, srv.URL+"/codec/decode", body(t, enc), header)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: status %d", name, resp.StatusCode)
		}
		if strings.Contains(out, "hidden") || strings.Count(strings.TrimSpace(out), "\n") != 0 {
			t.Errorf("%s: body %q", name, out)
		}
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "remote=127.0.0.1") {
		t.Errorf("refusals not logged with the remote address:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "s3cret") {
		t.Errorf("log shows the token:\n%s", logs.String())
	}

	// Without a configured token the endpoint is shut, even to an empty
	// bearer.
	h := Handler(c, "", nil, nil)
	for _, auth := range []string{"", "Bearer ", "Bearer"} {
		req := httptest.NewRequest(http.MethodPost, "/decode", bytes.NewReader(body(t, enc)))
		req.Header.Set("Authorization", auth)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("no token, Authorization %q: status %d", auth, rec.Code)
		}
	}
}

func TestHandlerCORS(t *testing.T) {
	srv, _ := server(t, io.Discard)
	preflight := func(origin string) *http.Response {
		req, _ := http.NewRequest(http.MethodOptions, srv.URL+"/codec/decode", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type,x-namespace,authorization")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := preflight("http://localhost:8233")
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("preflight status %d", resp.StatusCode)
	}
	want := map[string]string{
		"Access-Control-Allow-Origin":      "http://localhost:8233",
		"Access-Control-Allow-Credentials": "true",
		"Access-Control-Allow-Headers":     "Content-Type, X-Namespace, Authorization",
		"Access-Control-Allow-Methods":     "POST, OPTIONS",
	}
	for k, v := range want {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	resp = preflight("https://evil.example")
	for k := range want {
		if got := resp.Header.Get(k); got != "" {
			t.Errorf("other origin got %s: %q", k, got)
		}
	}
	// A refusal still carries the CORS headers, so the UI can show why.
	r401, _ := post(t, srv.URL+"/codec/decode", body(t, nil), map[string]string{"Origin": "http://localhost:8233"})
	if r401.StatusCode != http.StatusUnauthorized || r401.Header.Get("Access-Control-Allow-Origin") == "" {
		t.Errorf("401 status %d, Allow-Origin %q", r401.StatusCode, r401.Header.Get("Access-Control-Allow-Origin"))
	}
}

func TestHandlerLimitsTheBody(t *testing.T) {
	srv, _ := server(t, io.Discard)
	big := bytes.Repeat([]byte("a"), MaxBodyBytes+1)
	resp, _ := post(t, srv.URL+"/codec/decode", big, map[string]string{"Authorization": "Bearer " + testToken})
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("status %d, want 413", resp.StatusCode)
	}
	// GET is not part of the protocol.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/codec/decode", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", r.StatusCode)
	}
}
