package main

// The generator's HTTP side: its metrics for Prometheus, and the sides
// themselves for Keelson's HTTP analysis checks, which probe a side as a
// user would: GET /app/demo/us-east-1/canary answers as the canary's
// version does, slowness included.

import (
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func (g *generator) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g.metrics.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /targets", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, g.snapshot())
	})
	mux.HandleFunc("GET /app/{application}/{region}/{side}", func(w http.ResponseWriter, r *http.Request) {
		s, seq, ok := g.probe(r.PathValue("application"), r.PathValue("region"), r.PathValue("side"))
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such application, region or side in the zone"})
			return
		}
		o := respond(s, seq, rand.Float64())
		select {
		case <-time.After(o.Latency):
		case <-r.Context().Done():
			return
		}
		writeJSON(w, o.Code, map[string]string{"version": orNone(s.Version), "side": s.Name})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
