package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// probes serves /healthz (the process is alive) and /readyz (it polls
// Temporal and Temporal answers), and whatever else is mounted on mux:
// the Slack interaction endpoint.
type probes struct {
	mux *http.ServeMux
	// ready is set once the worker polls its task queue.
	ready atomic.Bool
	// check asks Temporal whether it is reachable; nil until dialed.
	check atomic.Pointer[func(context.Context) error]
}

func newProbes() *probes {
	p := &probes{mux: http.NewServeMux()}
	p.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	p.mux.HandleFunc("GET /readyz", p.readyz)
	return p
}

func (p *probes) readyz(w http.ResponseWriter, r *http.Request) {
	if !p.ready.Load() {
		http.Error(w, "not ready: worker not started", http.StatusServiceUnavailable)
		return
	}
	if check := p.check.Load(); check != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := (*check)(ctx); err != nil {
			http.Error(w, "not ready: temporal: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	_, _ = w.Write([]byte("ok\n"))
}

// serve listens on addr and serves until Shutdown. Listening happens
// before it returns, so a port in use is an error at start, not later.
func serve(addr string, h http.Handler, log *slog.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "err", err)
		}
	}()
	log.Info("http listening", "addr", ln.Addr().String())
	return srv, nil
}
