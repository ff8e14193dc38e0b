# The commands people run. `make demo` is the front door; `make test` is what
# CI runs (through .ci/run). The local stack's state lives in .cache/lab.

SHELL := /usr/bin/env bash
.DEFAULT_GOAL := build

GO        ?= go
LAB_DIR   := $(CURDIR)/.cache/lab
LAB_BIN   := $(LAB_DIR)/bin
LAB       := $(CURDIR)/infra/lab
VERSION   ?= 1.0.0

# Every package but the end-to-end tests, which need the running lab.
UNIT_PKGS = $$($(GO) list ./... | grep -v '/integration')

.PHONY: build lab-build up down status clean-lab demo test test-unit test-integration lint bench bench-cold-build bench-micro bench-slack bench-helm-memory figures-progressive figures-history figures-codec

# Keelson's commands are stripped as the container image's are (Dockerfile):
# the linker writes the worker in 7 s instead of 12, on the cold build's
# path. `make build LDFLAGS= GCFLAGS=` keeps the symbols and DWARF for a
# debugger.
LDFLAGS ?= -s -w

# The compiler writes no DWARF either: the linker's -w drops it, here and
# in the test binaries (TEST_LDFLAGS), and writing it cost the compiler
# 10 % of its CPU (infra/lab/tools/temporal/gcflags.sh has the figures).
# The binaries differ only in the build settings and IDs they record. Every
# go command that make runs gets the flag through GOFLAGS, so that the
# builds, the tests and vet share their compiled packages, and with the
# lab's helm and standard library (infra/lab/build.sh passes it too).
GCFLAGS ?= all=-dwarf=false
export GOFLAGS := $(strip $(GOFLAGS) -gcflags=$(GCFLAGS))

build: ## the CLI (bin/keelson), the worker (bin/keelson-worker), the lab's traffic generator (bin/keelson-traffic) and codec proxy (bin/keelson-codec-proxy)
	$(GO) build -ldflags='$(LDFLAGS)' -o bin/keelson ./starter
	$(GO) build -ldflags='$(LDFLAGS)' -o bin/keelson-worker ./worker
	$(GO) build -ldflags='$(LDFLAGS)' -o bin/keelson-traffic ./infra/trafficgen
	$(GO) build -ldflags='$(LDFLAGS)' -o bin/keelson-codec-proxy ./infra/codecproxy

lab-build: ## the local stack's binaries, once, into .cache/lab/bin
	$(LAB)/build.sh $(LAB_BIN)

up: build ## start Temporal, the three region clusters, moto, Prometheus, the traffic generator and the worker
	$(LAB)/up.sh

down: ## stop the local stack, and the prod topology (make up-prod) if it runs; their state stays for the next up
	@rc=0; $(LAB)/down.sh || rc=$$?; infra/prod/down.sh || rc=$$?; exit $$rc

# A production-like topology next to the lab, on other ports and with its
# state in .cache/prod (infra/prod): Temporal's server on PostgreSQL, its Web
# UI server, moto for S3 and two workers; the regions are the lab's.
.PHONY: prod-build up-prod
prod-build: ## the prod topology's binaries, once, into .cache/prod/bin (and Debian's postgresql)
	infra/prod/build.sh

up-prod: build prod-build ## start the prod topology: Temporal 7333, Web UI 8333, PostgreSQL 5433, S3 5155, workers 8195/8196
	infra/prod/up.sh

status:
	$(LAB)/status.sh

clean-lab: down ## stop the local stack and delete its state (binaries stay)
	find $(LAB_DIR) -mindepth 1 -maxdepth 1 ! -name bin -exec rm -rf {} +

demo: ## release the demo application: make demo VERSION=1.0.1
	infra/demo/demo.sh $(VERSION)

# build, start the lab and the prod topology beside it (its server, SQL
# tool and UI server reuse what the lab's Temporal CLI compiled), run both
# test suites, and stop both whatever happened; the exit status is the
# tests'.
test:
	@rc=0; \
	$(MAKE) --no-print-directory build lab-build up prod-build up-prod || rc=$$?; \
	if [ $$rc -eq 0 ]; then \
		$(MAKE) --no-print-directory lint || rc=$$?; \
		$(MAKE) --no-print-directory test-unit || rc=$$?; \
		$(MAKE) --no-print-directory test-integration || rc=$$?; \
	fi; \
	$(MAKE) --no-print-directory down || true; \
	exit $$rc

# Test binaries are linked without symbol tables and DWARF (-s -w): nobody
# debugs them, and on a cold cache linking two dozen of them is minutes.
TEST_LDFLAGS = -ldflags='-s -w'

test-unit:
	$(GO) test $(TEST_LDFLAGS) $(UNIT_PKGS)

# The integration tests find the lab through these variables: the running
# Temporal server, the kubeconfig with one context per region, the lab's
# binaries, its scripts (worker.sh kill9, temporal.sh stop|start) and ours.
LAB_TEST_ENV = KEELSON_LAB=1 \
	KEELSON_LAB_DIR=$(LAB_DIR) \
	KEELSON_LAB_BIN=$(LAB_BIN) \
	KEELSON_LAB_SCRIPTS=$(LAB) \
	KEELSON_BIN=$(CURDIR)/bin \
	KEELSON_KUBECONFIG=$(LAB_DIR)/kubeconfig \
	KUBECONFIG=$(LAB_DIR)/kubeconfig \
	TEMPORAL_ADDRESS=127.0.0.1:7233 \
	KEELSON_CODEC_KEYS=lab=file:$(LAB_DIR)/codec.key \
	TF_CLI_CONFIG_FILE=$(LAB_DIR)/terraformrc \
	PATH=$(LAB_BIN):$(CURDIR)/bin:$$PATH

test-integration:
	$(LAB_TEST_ENV) \
	$(GO) test $(TEST_LDFLAGS) -count=1 -parallel 4 -timeout 40m ./integration/...

# vet, and workflowcheck: workflow code must stay deterministic.
lint:
	$(GO) vet ./...
	$(GO) run go.temporal.io/sdk/contrib/tools/workflowcheck ./workflows/...

# The time from a signed Slack callback to the release's next activity,
# over 100 approvals (needs `make up`).
bench-slack:
	bench/slack-approval.sh

# Keelson's performance figures on the running lab (needs `make up`),
# each with its target, written as JSON lines to .cache/bench (bench/run.sh
# says what it measures and how to compare two runs).
bench: build ## performance figures against the tools Keelson drives, on the running lab
	bench/run.sh

# The local stack's binaries built from an empty Go build cache, timed
# (no lab needed; bench/cold-build.sh).
bench-cold-build:
	bench/cold-build.sh

# Go's micro-benchmarks of the packages (no lab).
bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem $(UNIT_PKGS)

# The worker's Helm memory per namespace (application) at 10, 100 and 300
# namespaces of one kwok cluster it starts itself (needs `make lab-build`).
bench-helm-memory:
	$(GO) test -count=1 -tags bench -run TestHelmMemoryPerNamespace -v ./activities/helm/

# Figures of progressive delivery, printed and never asserted: how long
# after a bad canary's deciding sample traffic is back on stable and its
# side Helm release is gone, and the wall time of a canary's steps against
# its pauses (KEELSON_FIGURES_RUNS runs each, 5; KEELSON_FIGURES_PAUSE, 20s).
# It runs against the running lab: it needs `make up`.
figures-progressive: ## progressive delivery's figures (auto-rollback delays, canary wall time) on the running lab
	$(LAB_TEST_ENV) \
	$(GO) test -count=1 -tags figures -run 'TestFigures(AutoRollback|CanaryWallTime)' -v -timeout 60m ./integration/

# The size of a release's own history: the demo's three regions with a gate,
# and ten regions (needs `make up`; KEELSON_WORKER_BIN and
# infra/lab/worker.sh restart run it against another build of the worker).
figures-history: ## events in a release's history, 3 and 10 regions, on the running lab
	$(LAB_TEST_ENV) \
	$(GO) test -count=1 -tags figures -run 'TestFiguresHistorySize' -v -timeout 30m ./integration/

# What encrypting payloads (docs/codec.md) adds to a release's wall time:
# the same chart-only release on a worker without keys, then with them.
figures-codec: ## payload encryption's overhead on a release's wall time, on the running lab
	$(LAB_TEST_ENV) \
	$(GO) test -count=1 -tags figures -run 'TestFiguresCodecOverhead' -v -timeout 30m ./integration/
