package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
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
	srv := &http.Server{
		Handler: limitBodies(h, maxRequestBody),
		// Every route answers in well under these: Slack wants its answer
		// within 3 s, probes and /metrics are quick, the codec endpoint
		// handles at most a few MiB. A client that dawdles (or a slow-loris
		// attack) is cut off rather than holding a connection open.
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "err", err)
		}
	}()
	log.Info("http listening", "addr", ln.Addr().String())
	return srv, nil
}

// maxRequestBody bounds every request body the worker reads: Slack's
// interaction payloads are a few KiB and the codec endpoint's requests at
// most a few MiB (codec.MaxBodyBytes); routes may set a lower limit.
const maxRequestBody = 8 << 20

// limitBodies caps the body of every request at n bytes, so that no route
// can be made to read an unbounded body; a read past it fails and the
// route answers 413 or 400.
func limitBodies(h http.Handler, n int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > n {
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, n)
		h.ServeHTTP(w, r)
	})
}

// pprofMux serves Go's profiler under /debug/pprof/ (--pprof-addr).
func pprofMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
