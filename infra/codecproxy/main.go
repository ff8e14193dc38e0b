// keelson-codec-proxy stands, in the lab, for the proxy that docs/codec.md
// puts in front of a worker's codec endpoint: the Temporal Web UI cannot
// send Keelson's bearer token, so the lab's dev server points the UI at this
// proxy (--ui-codec-endpoint), which adds the token read from a file and
// forwards to the worker. It listens on loopback only: whoever reaches it
// reads every payload of the lab, which is the lab's owner already.
//
//	keelson-codec-proxy --listen 127.0.0.1:8097 --upstream http://127.0.0.1:8095 --token-file .cache/lab/codec.token
//
// infra/lab/codecproxy.sh runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], log); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "keelson-codec-proxy:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("keelson-codec-proxy", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8097", "loopback address to serve /codec/ and /healthz on")
	upstream := fs.String("upstream", "http://127.0.0.1:8095", "the worker's HTTP server, whose /codec/ needs the token")
	tokenFile := fs.String("token-file", "", "file holding the worker's codec token (--codec-token)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	h, err := newProxy(*upstream, *tokenFile)
	if err != nil {
		return err
	}
	if err := loopbackOnly(*listen); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	log.Info("Serving the codec endpoint with the token added", "listen", ln.Addr().String(), "upstream", *upstream)
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// newProxy forwards /codec/ to upstream with "Authorization: Bearer TOKEN"
// in place of whatever the caller sent, and answers /healthz itself. The
// worker's CORS headers (its --codec-origins) pass through unchanged, so
// the browser's checks are the worker's.
func newProxy(upstream, tokenFile string) (http.Handler, error) {
	u, err := url.Parse(upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--upstream %q is not an http(s) URL", upstream)
	}
	if tokenFile == "" {
		return nil, errors.New("--token-file is required: the worker refuses /codec/ without its token")
	}
	b, err := os.ReadFile(tokenFile)
	if err != nil {
		return nil, fmt.Errorf("read --token-file: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return nil, fmt.Errorf("--token-file %s is empty", tokenFile)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = u.Host
			r.Out.Header.Set("Authorization", "Bearer "+token)
		},
	}
	mux := http.NewServeMux()
	mux.Handle("/codec/", http.MaxBytesHandler(rp, 4<<20))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	return mux, nil
}

// loopbackOnly refuses an address other machines could reach.
func loopbackOnly(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--listen %q is not a loopback address: the proxy hands out decoded payloads to whoever reaches it", addr)
	}
	return nil
}
