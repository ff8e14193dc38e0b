package labtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// StartPrometheus starts a Prometheus server (Debian's prometheus package,
// /usr/bin/prometheus, or prometheus on PATH) that scrapes scrapeTargets
// every scrapeInterval, with its storage in a temporary folder, and stops
// it when the test ends. A target is host:port or a URL whose path is the
// metrics path (an httptest server's URL plus "/metrics"). It returns the
// server's address, http://127.0.0.1:PORT, once Prometheus is ready; the
// targets' first scrape may still be up to one interval away.
func StartPrometheus(t testing.TB, scrapeTargets []string, scrapeInterval time.Duration) (address string) {
	t.Helper()
	bin, err := prometheusBinary()
	if err != nil {
		t.Fatalf("labtest: %v", err)
	}
	if scrapeInterval <= 0 {
		scrapeInterval = time.Second
	}
	dir := t.TempDir()
	config, err := prometheusConfig(scrapeTargets, scrapeInterval)
	if err != nil {
		t.Fatalf("labtest: prometheus: %v", err)
	}
	configFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configFile, []byte(config), 0o644); err != nil {
		t.Fatalf("labtest: prometheus: %v", err)
	}
	logFile, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatalf("labtest: prometheus: %v", err)
	}

	// A port chosen by the kernel and released just before Prometheus
	// binds it: another process could take it in between, which the
	// readiness wait below reports rather than hides.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("labtest: prometheus: choose a port: %v", err)
	}
	listen := l.Addr().String()
	l.Close()

	cmd := exec.Command(bin,
		"--config.file="+configFile,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+listen,
		"--log.level=warn",
	)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	start := time.Now()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("labtest: start prometheus: %v", err)
	}
	// exited is closed when the process has ended, waitErr set before.
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		defer logFile.Close()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("labtest: prometheus did not stop on SIGTERM within 10s; killed")
		}
	})

	address = "http://" + listen
	if err := waitPrometheusReady(address, exited, &waitErr, 30*time.Second); err != nil {
		log, _ := os.ReadFile(logFile.Name())
		t.Fatalf("labtest: prometheus on %s: %v\n%s", listen, err, tail(string(log), 4000))
	}
	t.Logf("labtest: prometheus %s ready in %s", address, time.Since(start).Round(time.Millisecond))
	return address
}

func prometheusBinary() (string, error) {
	if fi, err := os.Stat("/usr/bin/prometheus"); err == nil && !fi.IsDir() {
		return "/usr/bin/prometheus", nil
	}
	if p, err := exec.LookPath("prometheus"); err == nil {
		return p, nil
	}
	return "", errors.New("prometheus not found (/usr/bin/prometheus or on PATH): install Debian's prometheus package; make lab-build does")
}

// prometheusConfig gives every target its own job, so that each can have
// its own metrics path.
func prometheusConfig(targets []string, every time.Duration) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  scrape_timeout: %s\n  evaluation_interval: %s\nscrape_configs:\n",
		promDuration(every), promDuration(every), promDuration(every))
	for i, target := range targets {
		hostPort, path := target, "/metrics"
		if strings.Contains(target, "://") {
			u, err := url.Parse(target)
			if err != nil {
				return "", fmt.Errorf("scrape target %q: %w", target, err)
			}
			if u.Scheme != "http" {
				return "", fmt.Errorf("scrape target %q: only http", target)
			}
			hostPort = u.Host
			if u.Path != "" && u.Path != "/" {
				path = u.Path
			}
		}
		fmt.Fprintf(&b, "  - job_name: target%d\n    metrics_path: %q\n    static_configs:\n      - targets: [%q]\n", i, path, hostPort)
	}
	return b.String(), nil
}

// promDuration writes a duration in Prometheus' notation, which has no
// fractions: whole milliseconds.
func promDuration(d time.Duration) string {
	return fmt.Sprintf("%dms", max(d.Milliseconds(), 1))
}

func waitPrometheusReady(address string, exited <-chan struct{}, waitErr *error, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, address+"/-/ready", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("exited before it was ready: %v", *waitErr)
		case <-ctx.Done():
			return fmt.Errorf("not ready after %s", timeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
