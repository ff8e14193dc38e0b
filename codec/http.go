package codec

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"go.temporal.io/sdk/converter"
)

// MaxBodyBytes bounds a codec request: the Web UI sends one history's
// payloads at a time, well under it.
const MaxBodyBytes = 4 << 20

// Handler serves Temporal's codec protocol (POST …/encode and …/decode,
// JSON {"payloads": [...]}) for the Web UI and the temporal CLI. Mount it
// under /codec/: the SDK's handler answers any path ending in /encode or
// /decode.
//
// Every POST needs "Authorization: Bearer <token>"; an empty token refuses
// everything. Browsers from origins get the CORS headers they need, and
// their preflight (OPTIONS, which carries no credentials) is answered
// without the token. Bodies over MaxBodyBytes are refused with 413.
func Handler(c converter.PayloadCodec, token string, origins []string, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &handler{
		next:    converter.NewPayloadCodecHTTPHandler(c),
		want:    []byte("Bearer " + token),
		off:     token == "",
		origins: slices.Clone(origins),
		log:     log,
	}
}

type handler struct {
	next    http.Handler
	want    []byte
	off     bool
	origins []string
	log     *slog.Logger
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Add("Vary", "Origin")
	if o := r.Header.Get("Origin"); o != "" && slices.Contains(h.origins, o) {
		hd := w.Header()
		hd.Set("Access-Control-Allow-Origin", o)
		hd.Set("Access-Control-Allow-Credentials", "true")
		hd.Set("Access-Control-Allow-Headers", "Content-Type, X-Namespace, Authorization")
		hd.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
	}
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST, OPTIONS")
		http.Error(w, "codec: POST only", http.StatusMethodNotAllowed)
		return
	}
	if reason := h.refuse(r); reason != "" {
		h.log.Warn("codec request refused", "reason", reason, "remote", r.RemoteAddr, "path", r.URL.Path)
		w.Header().Set("WWW-Authenticate", `Bearer realm="keelson-codec"`)
		http.Error(w, "codec: "+reason, http.StatusUnauthorized)
		return
	}
	// Read the body here, so that an oversized one is a 413 rather than the
	// SDK handler's 400.
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, "codec: request body over 4 MiB", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "codec: read request: "+err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	h.next.ServeHTTP(w, r)
}

// refuse says why a request may not use the codec, or "" when it may. The
// reason never includes what was sent.
func (h *handler) refuse(r *http.Request) string {
	if h.off {
		return "no token configured: the endpoint is closed"
	}
	got := r.Header.Get("Authorization")
	if got == "" {
		return "missing Authorization: Bearer token"
	}
	scheme, tok, _ := strings.Cut(got, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "Authorization is not a Bearer token"
	}
	// Any case of the scheme will do; the token is compared in constant time.
	if subtle.ConstantTimeCompare([]byte("Bearer "+strings.TrimSpace(tok)), h.want) != 1 {
		return "wrong token"
	}
	return ""
}
