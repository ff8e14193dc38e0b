// Command keelson-worker runs Keelson's workflows and activities: it dials
// Temporal (waiting for it if needed), registers the release workflows and
// the Terraform, Helm, health and Slack activities, serves /healthz,
// /readyz and Slack callbacks, and stops gracefully on SIGTERM or SIGINT.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/worker"

	"github.com/keelson-dev/keelson/activities/analysis"
	"github.com/keelson-dev/keelson/activities/artifacts"
	"github.com/keelson-dev/keelson/activities/coord"
	"github.com/keelson-dev/keelson/activities/health"
	"github.com/keelson-dev/keelson/activities/helm"
	"github.com/keelson-dev/keelson/activities/policy"
	"github.com/keelson-dev/keelson/activities/slack"
	"github.com/keelson-dev/keelson/activities/terraform"
	"github.com/keelson-dev/keelson/activities/traffic"
	"github.com/keelson-dev/keelson/activities/train"
	"github.com/keelson-dev/keelson/bundle"
	"github.com/keelson-dev/keelson/codec"
	"github.com/keelson-dev/keelson/control"
	"github.com/keelson-dev/keelson/identity"
	"github.com/keelson-dev/keelson/worker/slackhook"
	"github.com/keelson-dev/keelson/workflows"
)

// stopTimeout is how long running activity attempts get to finish on stop;
// longer ones are cancelled and retried by another worker (they heartbeat).
const stopTimeout = 10 * time.Second

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Environ(), os.Stderr))
}

func run(args []string, getenv func(string) string, environ []string, stderr io.Writer) int {
	cfg, err := parseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "keelson-worker: %v\n", err)
		return 2
	}
	slackCfg, err := slackhook.ConfigFromEnv()
	if err != nil {
		fmt.Fprintf(stderr, "keelson-worker: %v\n", err)
		return 2
	}
	log := newLogger(cfg, stderr)
	slog.SetDefault(log)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runWorker(ctx, cfg, slackCfg, environ, log); err != nil {
		log.Error("worker failed", "err", err)
		return 1
	}
	return 0
}

func runWorker(ctx context.Context, cfg config, slackCfg slackhook.Config, environ []string, log *slog.Logger) error {
	log.Info("keelson-worker starting",
		"temporal", cfg.TemporalAddress, "namespace", cfg.Namespace, "task_queue", cfg.TaskQueue,
		"artifacts", cfg.Artifacts, "work_dir", cfg.WorkDir, "kubeconfig", cfg.Kubeconfig,
		"terraform", cfg.Terraform, "http", cfg.HTTPAddr, "ui", cfg.UIURL)
	log.Info(slackCfg.String())
	if cfg.Terraform == "" {
		log.Warn("terraform not found on PATH: releases with a terraform stack will fail until --terraform is set")
	}

	// The probes listen before dialing, so an orchestrator sees a live
	// process that is not ready yet while Temporal comes up.
	probes := newProbes()
	m := newMetrics(log)
	defer m.close()
	probes.mux.Handle("GET /metrics", m.handler())
	dc := mountCodec(cfg, probes.mux, log)
	var srv *http.Server
	if cfg.HTTPAddr != "" {
		var err error
		if srv, err = serve(cfg.HTTPAddr, probes.mux, log); err != nil {
			return fmt.Errorf("--http-addr %s: %w (another worker on this machine? set --http-addr or KEELSON_HTTP_ADDR; empty disables the server)", cfg.HTTPAddr, err)
		}
		defer func() {
			if srv != nil {
				shutdownHTTP(srv, log)
			}
		}()
	}

	if cfg.PprofAddr != "" {
		psrv, err := serve(cfg.PprofAddr, pprofMux(), log)
		if err != nil {
			return fmt.Errorf("--pprof-addr %s: %w", cfg.PprofAddr, err)
		}
		defer shutdownHTTP(psrv, log)
	}

	var fc converter.FailureConverter
	if dc != nil {
		fc = codec.NewFailureConverter(dc)
	}
	tc, err := control.Dial(ctx, control.DialOptions{
		Address: cfg.TemporalAddress, Namespace: cfg.Namespace, Logger: log, Wait: cfg.DialTimeout, MetricsHandler: m.sdk,
		DataConverter: dc, FailureConverter: fc,
	})
	if err != nil {
		if ctx.Err() != nil {
			log.Info("stopped before Temporal was reachable")
			return nil
		}
		return err
	}
	defer tc.Close()
	check := func(ctx context.Context) error {
		_, err := tc.CheckHealth(ctx, &client.CheckHealthRequest{})
		return err
	}
	probes.check.Store(&check)

	store, err := artifacts.OpenLocation(ctx, cfg.Artifacts)
	if err != nil {
		return fmt.Errorf("--artifacts: %w", err)
	}
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return fmt.Errorf("--work-dir: %w", err)
	}
	// Bundles are fetched once per worker and digest, checked, and kept
	// beside the working copies (the same disk, the same lifetime).
	bundles := &bundle.Cache{Dir: filepath.Join(cfg.WorkDir, "bundles"), Store: store}
	// With S3, Terraform's state goes there too (a key per application
	// and region): any worker plans and applies against the same state.
	var backend *terraform.S3Backend
	if s3s, ok := store.(*artifacts.S3); ok {
		loc := s3s.Location()
		backend = &terraform.S3Backend{Bucket: loc.Bucket, Prefix: loc.Prefix, Region: loc.Region, Endpoint: loc.Endpoint, PathStyle: loc.PathStyle, Client: s3s.Client}
	}
	log.Info("artifact store", "store", artifacts.Describe(store), "bundle_cache", bundles.Dir,
		"terraform_state", map[bool]string{true: "s3", false: "the working copies"}[backend != nil], "fleet", cfg.Fleet)

	// What a dead predecessor on this work folder was running is retried
	// now, not a heartbeat timeout from now (journal.go).
	j := newJournal(cfg.WorkDir, log.With("component", "journal"))
	if n, err := j.recover(ctx, tc); err != nil {
		log.Warn("worker journal", "err", err)
	} else if n > 0 {
		log.Warn("worker journal: attempts of a dead worker handed back for an immediate retry", "attempts", n)
	}
	w := worker.New(tc, cfg.TaskQueue, worker.Options{WorkerStopTimeout: stopTimeout,
		Interceptors: append(m.interceptors(), &journalInterceptor{j: j})})
	w.RegisterWorkflow(workflows.Release)
	w.RegisterWorkflow(workflows.RegionRollout)
	w.RegisterWorkflow(workflows.Lane)
	w.RegisterWorkflow(workflows.TrafficRestore)
	w.RegisterWorkflow(workflows.Freeze)
	w.RegisterWorkflow(workflows.Train)
	w.RegisterActivity(&coord.Activities{Client: tc})
	w.RegisterActivity(&policy.Activities{File: cfg.Access})
	if cfg.Access == "" {
		lvl := slog.LevelInfo
		if cfg.Fleet {
			lvl = slog.LevelWarn
		}
		log.Log(ctx, lvl, "identities: not verified (no --access policy): answers and controls are taken by the names they carry")
	} else {
		log.Info("identities: verified", "policy", cfg.Access, "slack_bridge_key", cfg.BridgeKey != nil)
	}
	w.RegisterActivity(&train.Activities{Client: tc, Env: train.CommandEnv(environ), Logger: log.With("activities", "train")})
	w.RegisterActivity(&terraform.Activities{
		Binary:    cfg.Terraform,
		WorkDir:   cfg.WorkDir,
		Artifacts: store,
		Bundles:   bundles,
		Backend:   backend,
		Env:       terraformEnv(environ),
		Logger:    log.With("activities", "terraform"),
	})
	w.RegisterActivity(&helm.Activities{Kubeconfig: cfg.Kubeconfig, Bundles: bundles, Logger: log.With("activities", "helm")})
	w.RegisterActivity(&health.Activities{})
	// AWS settings come from the SDK's default chain: credentials, region,
	// and AWS_ENDPOINT_URL (moto in the lab).
	tr, err := traffic.New(ctx, traffic.Config{})
	if err != nil {
		return fmt.Errorf("traffic activities: %w", err)
	}
	w.RegisterActivity(tr)
	an, err := analysis.New(ctx, analysis.Config{Store: store})
	if err != nil {
		return fmt.Errorf("analysis activities: %w", err)
	}
	w.RegisterActivity(an)

	var hook *slackhook.Handler
	if slackCfg.Enabled() {
		ctl := &control.Client{T: tc, Namespace: cfg.Namespace, TaskQueue: cfg.TaskQueue, UIBaseURL: cfg.UIURL, Address: cfg.TemporalAddress, DataConverter: dc}
		if hook, err = mountSlack(ctx, cfg, slackCfg, ctl, w, probes.mux, srv != nil, log); err != nil {
			return err
		}
	}

	if err := w.Start(); err != nil {
		return fmt.Errorf("start worker on task queue %s: %w", cfg.TaskQueue, err)
	}
	probes.ready.Store(true)
	log.Info("keelson-worker ready", "task_queue", cfg.TaskQueue)
	m.startDora(ctx, cfg, tc, dc, log)

	<-ctx.Done()
	log.Info("stopping: signal received", "grace", stopTimeout)
	probes.ready.Store(false)
	// In this order: no new Slack clicks, then the answers in flight reach
	// Temporal, then the worker stops (the client closes last, deferred).
	if srv != nil {
		shutdownHTTP(srv, log)
		srv = nil
	}
	if hook != nil {
		hook.Wait()
	}
	w.Stop()
	log.Info("worker stopped")
	return nil
}

// mountCodec returns the data converter that encrypts payloads, and serves
// the codec endpoint for the Web UI and the temporal CLI at /codec/ when a
// token guards it. Without keys it returns nil: the SDK's default.
func mountCodec(cfg config, mux *http.ServeMux, log *slog.Logger) converter.DataConverter {
	if cfg.Codec == nil {
		log.Info("payload encryption: off (no --codec-keys)")
		return nil
	}
	ids := cfg.Codec.Keys.IDs()
	log.Info("payload encryption: on", "encrypting_key", ids[0], "keys", ids)
	if cfg.Codec.Token == "" {
		log.Info("codec endpoint: off (no --codec-token): the Web UI and the temporal CLI show payloads encrypted")
	} else {
		h := codec.Handler(codec.New(cfg.Codec.Keys), cfg.Codec.Token, cfg.Codec.Origins, log.With("http", "codec"))
		mux.Handle("/codec/", http.StripPrefix("/codec", h))
		log.Info("codec endpoint mounted", "path", "/codec/", "origins", cfg.Codec.Origins)
	}
	return codec.NewDataConverter(cfg.Codec.Keys)
}

// mountSlack registers the Slack activities and connects Slack's
// interactions to the release client: on the HTTP server at --slack-path
// when a signing secret is set, over Socket Mode when an app token is.
func mountSlack(ctx context.Context, cfg config, sc slackhook.Config, ctl *control.Client, w worker.Worker,
	mux *http.ServeMux, serving bool, log *slog.Logger) (*slackhook.Handler, error) {
	api := sc.Client()
	w.RegisterActivity(&slack.Activities{
		API:       api,
		UIBaseURL: strings.TrimRight(cfg.UIURL, "/") + "/namespaces/" + url.PathEscape(cfg.Namespace),
		Logger:    log.With("activities", "slack"),
	})
	// The bridge signs the answers of the Slack users it verified with its
	// own key, so the release knows them from a name typed into an Update.
	bridge := *ctl
	bridge.Signer = cfg.BridgeKey
	var policyGroups func(string) []string
	if cfg.Access != "" {
		policyGroups = func(application string) []string { return identity.SlackGroups(cfg.Access, application) }
		if cfg.BridgeKey == nil {
			log.Warn("slack: the worker verifies identities (--access) but has no --bridge-key: every Slack answer will be refused")
		}
	}
	hook, err := slackhook.New(slackhook.Options{API: api, SigningSecret: sc.SigningSecret, Releases: &bridge, Logger: log, PolicyGroups: policyGroups})
	if err != nil {
		return nil, err
	}
	if sc.HTTPEnabled() {
		if !serving {
			return nil, fmt.Errorf("--http-addr is empty, but %s is set: Slack callbacks need the HTTP server", slackhook.EnvSigningSecret)
		}
		mux.Handle(cfg.SlackPath, hook)
		log.Info("slack callbacks mounted", "path", cfg.SlackPath)
	}
	if sc.SocketModeEnabled() {
		go func() {
			if err := hook.RunSocketMode(ctx); err != nil {
				log.Error("slack socket mode stopped", "err", err)
			}
		}()
	}
	return hook, nil
}

func shutdownHTTP(srv *http.Server, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn("http shutdown", "err", err)
	}
}
