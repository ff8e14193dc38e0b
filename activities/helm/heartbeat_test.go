package helm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"helm.sh/helm/v3/pkg/kube"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func setHeartbeatInterval(t *testing.T, d time.Duration) {
	old := heartbeatInterval
	heartbeatInterval = d
	t.Cleanup(func() { heartbeatInterval = old })
}

// writeKubeconfig writes a kubeconfig whose one context, "lab", points at
// server.
func writeKubeconfig(t *testing.T, server string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, os.WriteFile(path, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: lab, cluster: {server: %q}}]
users: [{name: lab, user: {token: test}}]
contexts: [{name: lab, context: {cluster: lab, user: lab}}]
current-context: lab
`, server)), 0o600))
	return path
}

// beats records when the activities recorded heartbeats, and their
// details: captureHeartbeats sees every call, before the SDK throttles.
type beats struct {
	mu      sync.Mutex
	times   []time.Time
	details []string
}

func captureHeartbeats(t *testing.T) *beats {
	b := &beats{}
	old := recordHeartbeat
	recordHeartbeat = func(ctx context.Context, details ...any) {
		b.mu.Lock()
		b.times = append(b.times, time.Now())
		if len(details) > 0 {
			s, _ := details[0].(string)
			b.details = append(b.details, s)
		}
		b.mu.Unlock()
		old(ctx, details...)
	}
	t.Cleanup(func() { recordHeartbeat = old })
	return b
}

func (b *beats) reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.times, b.details = nil, nil
}

func (b *beats) snapshot() ([]time.Time, []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]time.Time(nil), b.times...), append([]string(nil), b.details...)
}

// TestHeartbeatComesBeforeAnyAPICall runs each activity against an API
// server that answers every request after a delay, with a 503: the first
// heartbeat must come before the first request, and heartbeats must go on
// while the request hangs. The 503 must stay retryable.
func TestHeartbeatComesBeforeAnyAPICall(t *testing.T) {
	setHeartbeatInterval(t, 50*time.Millisecond)
	const delay = 500 * time.Millisecond
	var (
		mu    sync.Mutex
		first time.Time
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if first.IsZero() {
			first = time.Now()
		}
		mu.Unlock()
		time.Sleep(delay)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"the API server is down","reason":"ServiceUnavailable","code":503}`)
	}))
	t.Cleanup(srv.Close)

	acts := &Activities{Kubeconfig: writeKubeconfig(t, srv.URL)}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(acts)
	b := captureHeartbeats(t)

	target := Target{Region: "eu-down-1", KubeContext: "lab", Namespace: "down", Release: "app"}
	upgrade := UpgradeInput{Target: target, ChartPath: chartPath, Version: "1.0.0", Owner: runA}
	for _, c := range []struct {
		name string
		fn   any
		in   any
	}{
		{"Snapshot", acts.Snapshot, target},
		{"Status", acts.Status, target},
		{"History", acts.History, target},
		{"WaitReady", acts.WaitReady, WaitInput{Target: target, Revision: 1}},
		{"Upgrade", acts.Upgrade, upgrade},
		{"Rollback", acts.Rollback, RollbackInput{Target: target, Revision: 1, Owner: runA}},
	} {
		t.Run(c.name, func(t *testing.T) {
			b.reset()
			mu.Lock()
			first = time.Time{}
			mu.Unlock()

			_, err := env.ExecuteActivity(c.fn, c.in)
			require.Error(t, err)
			var appErr *temporal.ApplicationError
			require.True(t, errors.As(err, &appErr), "%T: %v", err, err)
			require.False(t, appErr.NonRetryable(), "an API server that is down is retried: %v", err)

			times, _ := b.snapshot()
			mu.Lock()
			firstRequest := first
			mu.Unlock()
			require.False(t, firstRequest.IsZero(), "the activity made no request")
			require.NotEmpty(t, times)
			require.True(t, times[0].Before(firstRequest), "first heartbeat %s, first request %s",
				times[0].Format(time.StampMicro), firstRequest.Format(time.StampMicro))
			during := 0
			for _, at := range times {
				if at.After(firstRequest) && at.Before(firstRequest.Add(delay)) {
					during++
				}
			}
			require.GreaterOrEqual(t, during, 3, "heartbeats while the request hangs")
		})
	}
}

// TestLockWaitHeartbeats holds a release's lock and checks that an Upgrade
// waiting for it heartbeats, saying what it waits for.
func TestLockWaitHeartbeats(t *testing.T) {
	setHeartbeatInterval(t, 50*time.Millisecond)
	h := newHarness(t, "lock")
	b := captureHeartbeats(t)

	unlock, err := h.acts.lockRelease(context.Background(), h.target, nil)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		_, err := h.env.ExecuteActivity(h.acts.Upgrade, h.ownedUpgrade("1.0.0", runA, 0))
		done <- err
	}()

	want := "for the lock of release " + kubeContext + "/lock/app, held by a call outside any activity"
	require.Eventually(t, func() bool {
		_, details := b.snapshot()
		for _, d := range details {
			if strings.Contains(d, want) {
				return true
			}
		}
		return false
	}, 10*time.Second, 20*time.Millisecond, "a heartbeat saying %q", want)
	select {
	case err := <-done:
		t.Fatalf("upgrade finished while the lock was held: %v", err)
	default:
	}
	_, details := b.snapshot()
	t.Logf("heartbeat details while waiting: %q", details[len(details)-1])

	unlock()
	require.NoError(t, <-done)
	require.Equal(t, "deployed", h.snapshot().Status)
}

// TestOutagesStayRetryable: the workflow's retry policy rides out an API
// server outage only if every error of one is retryable.
func TestOutagesStayRetryable(t *testing.T) {
	// A real refused connection, through the activities.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	acts := &Activities{Kubeconfig: writeKubeconfig(t, "http://"+addr)}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(acts)
	target := Target{Region: "eu-down-1", KubeContext: "lab", Namespace: "down", Release: "app"}
	for name, run := range map[string]func() error{
		"Snapshot": func() error { _, err := env.ExecuteActivity(acts.Snapshot, target); return err },
		"Upgrade": func() error {
			_, err := env.ExecuteActivity(acts.Upgrade, UpgradeInput{Target: target, ChartPath: chartPath, Version: "1.0.0", Owner: runA})
			return err
		},
		"Rollback": func() error {
			_, err := env.ExecuteActivity(acts.Rollback, RollbackInput{Target: target, Revision: 1, Owner: runA})
			return err
		},
	} {
		err := run()
		var appErr *temporal.ApplicationError
		require.True(t, errors.As(err, &appErr), "%s: %T: %v", name, err, err)
		require.False(t, appErr.NonRetryable(), "%s: %v", name, err)
		require.Contains(t, err.Error(), "connection refused", name)
	}

	// The errors client-go and Helm return during an outage, as classify
	// sees them.
	refused := &url.Error{Op: "Get", URL: "https://lab:6443/api", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	for _, err := range []error{
		refused,
		fmt.Errorf("Kubernetes cluster unreachable: %w", refused),
		apierrors.NewInternalError(errors.New("etcdserver: request timed out")),
		apierrors.NewServiceUnavailable("the server is currently unable to handle the request"),
		apierrors.NewTimeoutError("request did not complete within 60s", 1),
		apierrors.NewServerTimeout(schema.GroupResource{Resource: "secrets"}, "list", 1),
		apierrors.NewTooManyRequests("slow down", 1),
		fmt.Errorf("query: failed to query with labels: %w", apierrors.NewServiceUnavailable("down")),
		context.DeadlineExceeded,
		&url.Error{Op: "Get", URL: "https://lab:6443/api", Err: io.ErrUnexpectedEOF},
	} {
		got := classify(err, "upgrade app in eu-1")
		var appErr *temporal.ApplicationError
		if errors.As(got, &appErr) {
			require.False(t, appErr.NonRetryable(), "%v", got)
		}
		require.Contains(t, got.Error(), "upgrade app in eu-1: ")
	}
	// What retrying cannot fix stays non-retryable.
	invalid := apierrors.NewInvalid(schema.GroupKind{Kind: "ConfigMap"}, "app-refused",
		field.ErrorList{field.Invalid(field.NewPath("data"), "not/a/key", "a valid config key")})
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(classify(invalid, "upgrade"), &appErr))
	require.True(t, appErr.NonRetryable())
}

// TestKubeClientRateLimit checks the rate limit of the clients Helm builds
// and measures many activities at once on one configuration.
func TestKubeClientRateLimit(t *testing.T) {
	target := Target{Region: "eu-test-1", KubeContext: kubeContext, Namespace: "ratelimit", Release: "app"}
	for _, c := range []struct {
		acts  *Activities
		qps   float32
		burst int
	}{
		{&Activities{Kubeconfig: kubeconfig}, defaultKubeQPS, defaultKubeBurst},
		{&Activities{Kubeconfig: kubeconfig, KubeQPS: 50, KubeBurst: 60}, 50, 60},
	} {
		cfg, err := c.acts.config(target)
		require.NoError(t, err)
		rc, err := cfg.RESTClientGetter.ToRESTConfig()
		require.NoError(t, err)
		require.Equal(t, c.qps, rc.QPS)
		require.Equal(t, c.burst, rc.Burst)
		cs, err := cfg.KubernetesClientSet()
		require.NoError(t, err)
		require.Equal(t, c.qps, cs.CoreV1().RESTClient().GetRateLimiter().QPS())
		// The client of Helm's kube client and of its release storage.
		kcs, err := cfg.KubeClient.(*kube.Client).Factory.KubernetesClientSet()
		require.NoError(t, err)
		require.Equal(t, c.qps, kcs.CoreV1().RESTClient().GetRateLimiter().QPS())
	}

	// A hundred activities at once read the same release storage through
	// one client: at client-go's 5 QPS this took about 18 s.
	acts := &Activities{Kubeconfig: kubeconfig}
	const n = 100
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := acts.Snapshot(context.Background(), target)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	took := time.Since(start)
	t.Logf("measured: %d snapshots at once in %s", n, took.Round(time.Millisecond))
	require.Less(t, took, 5*time.Second)
}
