package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestProbes(t *testing.T) {
	p := newProbes()
	get := func(path string) int {
		rec := httptest.NewRecorder()
		p.mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code
	}
	if get("/healthz") != http.StatusOK {
		t.Error("healthz not ok while alive")
	}
	if get("/readyz") != http.StatusServiceUnavailable {
		t.Error("ready before the worker started")
	}
	p.ready.Store(true)
	var down error
	check := func(context.Context) error { return down }
	p.check.Store(&check)
	if get("/readyz") != http.StatusOK {
		t.Error("not ready with worker started and Temporal up")
	}
	down = errors.New("connection refused")
	if get("/readyz") != http.StatusServiceUnavailable {
		t.Error("ready while Temporal is down")
	}
}

// TestRequestBodiesAreLimited: no route of the worker's HTTP server reads
// more than the limit, whether the client announces the length or not.
func TestRequestBodiesAreLimited(t *testing.T) {
	var read int
	var readErr error
	h := limitBodies(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		read, readErr = len(b), err
		if err != nil {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
		}
	}), 1024)

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/slack/interactions", strings.NewReader(strings.Repeat("x", 2048))))
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("announced 2 KiB: status %d, want 413", rec.Code)
	}

	// A chunked body (no Content-Length) is cut off while it is read.
	req := httptest.NewRequest("POST", "/codec/decode", io.MultiReader(strings.NewReader(strings.Repeat("y", 4096))))
	req.ContentLength = -1
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if readErr == nil || read > 1024 || rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("unannounced 4 KiB: read %d bytes, err %v, status %d", read, readErr, rec.Code)
	}

	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/codec/decode", strings.NewReader("{}")))
	if rec.Code != http.StatusOK || read != 2 {
		t.Errorf("small body: status %d, read %d", rec.Code, read)
	}
}
