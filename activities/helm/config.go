package helm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/storage/driver"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/rest"
)

// configKey names one action.Configuration. Helm binds its release storage
// (the Secrets driver) and its kube client to one namespace at Init, so a
// kube context gets one Configuration per namespace it deploys to.
type configKey struct {
	kubeContext string
	namespace   string
}

func (a *Activities) logger() *slog.Logger {
	if a.Logger != nil {
		return a.Logger
	}
	return slog.Default()
}

// Client-side rate limit of the Kubernetes clients when Activities leaves
// it zero. Every activity on one kube context and namespace shares Helm's
// clients (its release storage client above all); with client-go's 5 QPS
// and burst of 10, a hundred releases at once waited 8 s and more per
// request on the worker (measured on the lab's kwok cluster: 100 Snapshots
// at once on one configuration took 18.0 s at 5/10, 44 ms at 200/400).
// These let a thousand queue on the API server, whose priority and
// fairness is the right place to make them wait.
const (
	defaultKubeQPS   = 200
	defaultKubeBurst = 400
)

// config returns the cached action.Configuration for t, building it on
// first use. Building does not touch the cluster: clients connect lazily.
//
// Each configuration has its own discovery client and REST mapper (Helm's
// ConfigFlags keep one each), backed by the discovery cache on disk that
// all share. Sharing one per cluster instead was not worth it: on the lab
// cluster a first install through a new configuration took 210 ms against
// 204 ms through a warm one (mean of five namespaces).
func (a *Activities) config(t Target) (*action.Configuration, error) {
	key := configKey{kubeContext: t.KubeContext, namespace: t.Namespace}
	a.mu.Lock()
	defer a.mu.Unlock()
	if cfg, ok := a.configs[key]; ok {
		return cfg, nil
	}

	flags := genericclioptions.NewConfigFlags(true)
	kubeconfig, kubeContext, namespace := a.Kubeconfig, t.KubeContext, t.Namespace
	flags.KubeConfig = &kubeconfig
	if kubeContext != "" {
		flags.Context = &kubeContext
	}
	flags.Namespace = &namespace
	qps, burst := a.KubeQPS, a.KubeBurst
	if qps <= 0 {
		qps = defaultKubeQPS
	}
	if burst <= 0 {
		burst = defaultKubeBurst
	}
	// Every rest.Config Helm makes comes through here: its storage client,
	// its kube client, KubernetesClientSet and the clients of each object.
	// Discovery sets its own (50 QPS, burst 300) over this.
	flags.WrapConfigFn = func(c *rest.Config) *rest.Config {
		c.QPS, c.Burst = qps, burst
		return c
	}

	log := a.logger().With("kubeContext", t.KubeContext, "namespace", t.Namespace)
	cfg := new(action.Configuration)
	if err := cfg.Init(flags, namespace, "secrets", func(format string, v ...any) {
		log.Debug(fmt.Sprintf(format, v...), "source", "helm")
	}); err != nil {
		return nil, fmt.Errorf("helm configuration for context %q namespace %q: %w", t.KubeContext, t.Namespace, err)
	}
	if a.configs == nil {
		a.configs = map[configKey]*action.Configuration{}
	}
	a.configs[key] = cfg
	return cfg, nil
}

// releaseLock is the lock of one release in this worker, with who holds
// it, for the heartbeat of whoever waits for it.
type releaseLock struct {
	ch chan struct{} // holds one token while locked

	mu     sync.Mutex
	holder string
	since  time.Time
}

// lockRelease serialises operations on one release inside this worker. A
// retry can start while an earlier attempt of the same activity is still
// running here (its heartbeat timed out but its goroutine did not stop);
// without the lock the retry would take the earlier attempt's pending
// revision for an abandoned one and recover it under its feet. While it
// waits, hb's details name the operation waited for.
func (a *Activities) lockRelease(ctx context.Context, t Target, hb *beat) (unlock func(), err error) {
	key := t.KubeContext + "/" + t.Namespace + "/" + t.Release
	a.mu.Lock()
	if a.locks == nil {
		a.locks = map[string]*releaseLock{}
	}
	l, ok := a.locks[key]
	if !ok {
		l = &releaseLock{ch: make(chan struct{}, 1)}
		a.locks[key] = l
	}
	a.mu.Unlock()

	me := callName(ctx)
	locked := func() func() {
		l.mu.Lock()
		l.holder, l.since = me, time.Now()
		l.mu.Unlock()
		return func() {
			l.mu.Lock()
			l.holder = ""
			l.mu.Unlock()
			<-l.ch
		}
	}
	select {
	case l.ch <- struct{}{}:
		return locked(), nil
	default:
	}

	waitStart := time.Now()
	l.mu.Lock()
	holder := l.holder
	l.mu.Unlock()
	a.logger().Info("waiting for another operation on the helm release", "release", key, "holder", holder)
	hb.set(func() any {
		l.mu.Lock()
		defer l.mu.Unlock()
		return fmt.Sprintf("waiting %s for the lock of release %s, held by %s for %s",
			time.Since(waitStart).Round(time.Second), key, orDefault(l.holder, "nobody now"), time.Since(l.since).Round(time.Second))
	})
	defer hb.set(nil)
	select {
	case l.ch <- struct{}{}:
		return locked(), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for another operation on %s: %w", key, ctx.Err())
	}
}

// callName names the activity call ctx belongs to, for people.
func callName(ctx context.Context) string {
	if !activity.IsActivity(ctx) {
		return "a call outside any activity"
	}
	info := activity.GetInfo(ctx)
	return fmt.Sprintf("%s of workflow %s (attempt %d)", info.ActivityType.Name, info.WorkflowExecution.ID, info.Attempt)
}

// validateTarget rejects targets that no retry can fix.
func validateTarget(t Target) error {
	if t.Release == "" {
		return badInput("target has no release name")
	}
	if err := chartutil.ValidateReleaseName(t.Release); err != nil {
		return badInput(fmt.Sprintf("release name %q: %v", t.Release, err))
	}
	if t.Namespace == "" {
		return badInput(fmt.Sprintf("release %s has no namespace", t.Release))
	}
	return nil
}

func badInput(msg string) error {
	return temporal.NewNonRetryableApplicationError(msg, ErrBadInput, nil)
}

// classify wraps err with what was being done and marks the failures that
// retrying cannot fix as non-retryable. API and network errors stay
// retryable: the activity's retry policy bounds them.
func classify(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	msg := fmt.Sprintf(format, args...)
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		// Already classified below us. Temporal reads only the outermost
		// error: wrapping an application error with fmt.Errorf would make
		// it a retryable wrapError, so it is rebuilt with the same type.
		detail, cause := err.Error(), err
		if err == error(appErr) {
			// Its message, then its cause: printing appErr whole would say
			// everything twice.
			detail, cause = appErr.Message(), appErr.Unwrap()
		}
		msg = msg + ": " + detail
		if appErr.NonRetryable() {
			return temporal.NewNonRetryableApplicationError(msg, appErr.Type(), cause)
		}
		return temporal.NewApplicationErrorWithCause(msg, appErr.Type(), cause)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", msg, err)
	}
	var netErr net.Error
	switch {
	case errors.As(err, &netErr):
		return fmt.Errorf("%s: %w", msg, err)
	case apierrors.IsInvalid(err):
		// The API server refused an object the chart rendered: the chart
		// or its values are wrong, the same request will fail again.
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: %v", msg, err), ErrInvalidValues, err)
	case errors.Is(err, driver.ErrReleaseNotFound):
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: %v", msg, err), ErrReleaseNotFound, err)
	}
	return fmt.Errorf("%s: %w", msg, err)
}

// ensureNamespace creates the release's namespace when it is missing, as
// `helm install --create-namespace` would; upgrades need it too because a
// region may be reset while its release history lives elsewhere.
func ensureNamespace(ctx context.Context, cfg *action.Configuration, ns string) error {
	cs, err := cfg.KubernetesClientSet()
	if err != nil {
		return err
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err == nil {
		return nil
	} else if !apierrors.IsNotFound(err) {
		return err
	}
	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// heartbeatInterval is how often long calls heartbeat; it must stay well
// under the heartbeat timeout the workflows set.
var heartbeatInterval = 3 * time.Second

// beat is the heartbeat of one activity call. Every activity starts it
// first thing, before the release lock and before any API call: either
// can take longer than the heartbeat timeout (a lock held by a long
// upgrade, a request to an API server that is down). While the call
// waits for something, its details say what.
type beat struct {
	mu      sync.Mutex
	details func() any
	stop    func()
}

func startHeartbeat(ctx context.Context) *beat {
	b := &beat{}
	b.stop = heartbeat(ctx, b.current)
	return b
}

// set makes the heartbeat's details what details returns; nil: none. A
// nil beat (a call from a test outside any activity) ignores it.
func (b *beat) set(details func() any) {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.details = details
	b.mu.Unlock()
}

func (b *beat) current() any {
	b.mu.Lock()
	d := b.details
	b.mu.Unlock()
	if d == nil {
		return nil
	}
	return d()
}

// recordHeartbeat is activity.RecordHeartbeat. Tests replace it to see
// every heartbeat recorded: the SDK throttles what reaches the server (to
// one per 30 s in its test environment, which sets no heartbeat timeout).
var recordHeartbeat = activity.RecordHeartbeat

// heartbeat records a heartbeat now and every heartbeatInterval from a
// goroutine until stop is called, so that calls blocked inside Helm or
// client-go still prove the worker is alive. details, when it returns
// something, says what is being waited for.
func heartbeat(ctx context.Context, details func() any) (stop func()) {
	if !activity.IsActivity(ctx) {
		return func() {}
	}
	done, exited := make(chan struct{}), make(chan struct{})
	record := func() {
		if details != nil {
			if d := details(); d != nil {
				recordHeartbeat(ctx, d)
				return
			}
		}
		recordHeartbeat(ctx)
	}
	record()
	interval := heartbeatInterval
	go func() {
		defer close(exited)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				record()
			}
		}
	}()
	// Waiting for the goroutine means no heartbeat is recorded after the
	// activity has returned.
	return func() { close(done); <-exited }
}
