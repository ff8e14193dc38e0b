package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
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
