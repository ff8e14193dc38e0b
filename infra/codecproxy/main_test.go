package main

import (
	"bytes"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/keelson-dev/keelson/codec"
)

// worker serves the codec endpoint as keelson-worker mounts it, with token.
func worker(t *testing.T, token string) (*httptest.Server, *codec.Codec) {
	t.Helper()
	secret := make([]byte, codec.KeySize)
	_, _ = rand.Read(secret)
	ring, err := codec.NewKeyring(codec.Key{ID: "lab", Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	c := codec.New(ring)
	mux := http.NewServeMux()
	mux.Handle("/codec/", http.StripPrefix("/codec", codec.Handler(c, token, []string{"http://localhost:8233"}, nil)))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, c
}

func tokenFile(t *testing.T, token string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "codec.token")
	if err := os.WriteFile(f, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func do(t *testing.T, method, url string, body []byte, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
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

// What the Web UI sends has no token; through the proxy it decodes, and the
// worker's CORS answer reaches the browser unchanged.
func TestProxyAddsTheToken(t *testing.T) {
	up, c := worker(t, "lab-token")
	p, err := newProxy(up.URL, tokenFile(t, "lab-token"))
	if err != nil {
		t.Fatal(err)
	}
	proxy := httptest.NewServer(p)
	t.Cleanup(proxy.Close)

	plain, err := converter.GetDefaultDataConverter().ToPayload("release-file-value")
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := c.Encode([]*commonpb.Payload{plain})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := protojson.Marshal(&commonpb.Payloads{Payloads: sealed})
	ui := map[string]string{"Content-Type": "application/json", "Origin": "http://localhost:8233", "X-Namespace": "default"}

	if resp, out := do(t, http.MethodPost, up.URL+"/codec/decode", body, ui); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the worker without the token answered %d %q, want 401 (else this test proves nothing)", resp.StatusCode, out)
	}
	resp, out := do(t, http.MethodPost, proxy.URL+"/codec/decode", body, ui)
	if resp.StatusCode != http.StatusOK || !strings.Contains(out, "InJlbGVhc2UtZmlsZS12YWx1ZSI") { // base64 of "release-file-value" in JSON
		t.Fatalf("through the proxy: %d %q, want 200 with the decoded value", resp.StatusCode, out)
	}
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "http://localhost:8233" {
		t.Errorf("Access-Control-Allow-Origin %q, want the UI's origin passed through", got)
	}
	pre, _ := do(t, http.MethodOptions, proxy.URL+"/codec/decode", nil, map[string]string{
		"Origin": "http://localhost:8233", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,x-namespace",
	})
	if pre.StatusCode != http.StatusNoContent || pre.Header.Get("Access-Control-Allow-Methods") == "" {
		t.Errorf("preflight: %d %v, want 204 with the worker's CORS headers", pre.StatusCode, pre.Header)
	}
	// A caller's own Authorization does not replace the lab's token.
	if resp, out := do(t, http.MethodPost, proxy.URL+"/codec/decode", body, map[string]string{"Content-Type": "application/json", "Authorization": "Bearer wrong"}); resp.StatusCode != http.StatusOK {
		t.Errorf("with the caller's own token: %d %q, want 200", resp.StatusCode, out)
	}
	// Only /codec/ is forwarded.
	if resp, _ := do(t, http.MethodGet, proxy.URL+"/readyz", nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /readyz through the proxy: %d, want 404", resp.StatusCode)
	}
}

// A wrong token file shows as the worker's refusal, not as a decoded payload.
func TestProxyWithAWrongTokenIsRefused(t *testing.T) {
	up, _ := worker(t, "lab-token")
	p, err := newProxy(up.URL, tokenFile(t, "not-the-token"))
	if err != nil {
		t.Fatal(err)
	}
	proxy := httptest.NewServer(p)
	t.Cleanup(proxy.Close)
	if resp, out := do(t, http.MethodPost, proxy.URL+"/codec/decode", []byte(`{"payloads":[]}`), map[string]string{"Content-Type": "application/json"}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("%d %q, want 401", resp.StatusCode, out)
	}
}

func TestProxySettings(t *testing.T) {
	empty := tokenFile(t, "")
	for _, c := range []struct{ upstream, file, want string }{
		{"127.0.0.1:8095", empty, "is not an http(s) URL"},
		{"http://127.0.0.1:8095", "", "--token-file is required"},
		{"http://127.0.0.1:8095", filepath.Join(t.TempDir(), "nope"), "read --token-file"},
		{"http://127.0.0.1:8095", empty, "is empty"},
	} {
		if _, err := newProxy(c.upstream, c.file); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("newProxy(%q, %q) = %v, want %q", c.upstream, c.file, err, c.want)
		}
	}
	for addr, ok := range map[string]bool{"127.0.0.1:8097": true, "localhost:8097": true, "[::1]:8097": true, "0.0.0.0:8097": false, ":8097": false, "10.0.0.1:8097": false} {
		if err := loopbackOnly(addr); (err == nil) != ok {
			t.Errorf("loopbackOnly(%q) = %v", addr, err)
		}
	}
}
