package helm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/kube"
	"helm.sh/helm/v3/pkg/storage"
	"helm.sh/helm/v3/pkg/storage/driver"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/kubectl/pkg/validation"
)

// configKey names one action.Configuration. Helm binds its release storage
// (the Secrets driver) and its kube client to one namespace, so a kube
// context gets one Configuration per namespace it deploys to. Those share
// the context's clients (see contextClients), kept in the same map under
// the context with no namespace: no target has one (validateTarget).
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
// What one configuration holds for itself is small: its release storage
// (a Secrets client of its namespace, with its own rate limiter as before),
// its kube.Client bound to the namespace, and the cluster's capabilities
// once an install or upgrade has read them. Everything heavy is the kube
// context's and shared (contextClients): when every configuration had its
// own, each kept its own copy of the discovery documents, REST mapper and,
// above all, the OpenAPI schemas of the objects it validated, about
// 2.8 MiB of heap and 5 MiB of RSS per namespace (TestHelmMemoryPerNamespace).
func (a *Activities) config(t Target) (*action.Configuration, error) {
	if t.Namespace == "" {
		// validateTarget says so first; the key with no namespace is the
		// context's clients', not a configuration to use.
		return nil, badInput(fmt.Sprintf("release %s has no namespace", t.Release))
	}
	key := configKey{kubeContext: t.KubeContext, namespace: t.Namespace}
	a.mu.Lock()
	defer a.mu.Unlock()
	if cfg, ok := a.configs[key]; ok {
		return cfg, nil
	}
	cc, err := a.contextClients(t.KubeContext)
	if err != nil {
		return nil, fmt.Errorf("helm configuration for context %q namespace %q: %w", t.KubeContext, t.Namespace, err)
	}

	// What action.Configuration.Init does with the "secrets" driver, from
	// the context's clients.
	log := a.logger().With("kubeContext", t.KubeContext, "namespace", t.Namespace)
	debug := func(format string, v ...any) {
		log.Debug(fmt.Sprintf(format, v...), "source", "helm")
	}
	secrets, err := cc.secrets(t.Namespace)
	if err != nil {
		return nil, fmt.Errorf("helm configuration for context %q namespace %q: %w", t.KubeContext, t.Namespace, err)
	}
	d := driver.NewSecrets(secrets)
	d.Log = debug
	cfg := &action.Configuration{
		RESTClientGetter: cc,
		// Namespace set: the kube client never asks the kubeconfig which
		// namespace it is in.
		KubeClient:     &kube.Client{Factory: cc.factory, Log: debug, Namespace: t.Namespace},
		Releases:       storage.Init(d),
		Log:            debug,
		HookOutputFunc: func(_, _, _ string) io.Writer { return io.Discard },
	}
	a.configs[key] = cfg
	return cfg, nil
}

// contextClients are the clients of one kube context, shared by the
// configurations of all its namespaces; all are safe for concurrent use.
// It is the RESTClientGetter of those configurations: Helm asks it for the
// REST config (each call a copy of one, so callers may change theirs),
// the discovery client and the REST mapper, built once per context.
type contextClients struct {
	// loader is the kubeconfig's, for kubectl's factory. The namespace it
	// knows is the context's: each configuration's kube client has its own.
	loader clientcmd.ClientConfig
	// config has the rate limit; clients made from it share httpClient.
	config     *rest.Config
	httpClient *http.Client
	discovery  *lockedDiscovery
	mapper     meta.RESTMapper
	// factory is the kube clients' (kubectl's factory over these), its
	// KubernetesClientSet the one clientset of the context.
	factory *contextFactory
}

var _ genericclioptions.RESTClientGetter = (*contextClients)(nil)

func (c *contextClients) ToRESTConfig() (*rest.Config, error) { return rest.CopyConfig(c.config), nil }
func (c *contextClients) ToDiscoveryClient() (discovery.CachedDiscoveryInterface, error) {
	return c.discovery, nil
}
func (c *contextClients) ToRESTMapper() (meta.RESTMapper, error)        { return c.mapper, nil }
func (c *contextClients) ToRawKubeConfigLoader() clientcmd.ClientConfig { return c.loader }

// lockedDiscovery is a discovery client whose cache refills happen one at
// a time. client-go's disk cache writes to its files the very objects its
// memory cache hands out, encoding them in place (it sets and resets their
// kind); two refills at once, as when configurations of several namespaces
// read the cluster's capabilities at once, wrote the same objects together
// (go test -race, TestHelmMemoryPerNamespace). The methods that are not
// overridden neither refill nor write.
type lockedDiscovery struct {
	discovery.CachedDiscoveryInterface
	mu sync.Mutex
}

func (d *lockedDiscovery) ServerGroups() (*metav1.APIGroupList, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.CachedDiscoveryInterface.ServerGroups()
}

func (d *lockedDiscovery) ServerResourcesForGroupVersion(gv string) (*metav1.APIResourceList, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.CachedDiscoveryInterface.ServerResourcesForGroupVersion(gv)
}

func (d *lockedDiscovery) ServerGroupsAndResources() ([]*metav1.APIGroup, []*metav1.APIResourceList, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.CachedDiscoveryInterface.ServerGroupsAndResources()
}

func (d *lockedDiscovery) ServerPreferredResources() ([]*metav1.APIResourceList, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.CachedDiscoveryInterface.ServerPreferredResources()
}

func (d *lockedDiscovery) ServerPreferredNamespacedResources() ([]*metav1.APIResourceList, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.CachedDiscoveryInterface.ServerPreferredNamespacedResources()
}

func (d *lockedDiscovery) Fresh() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.CachedDiscoveryInterface.Fresh()
}

func (d *lockedDiscovery) Invalidate() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.CachedDiscoveryInterface.Invalidate()
}

// secrets is the Secrets client of Helm's release storage in namespace ns:
// a client of its own, so that each namespace keeps its own rate limit as
// when configurations shared nothing, over the context's HTTP client.
func (c *contextClients) secrets(ns string) (typedcorev1.SecretInterface, error) {
	core, err := typedcorev1.NewForConfigAndClient(c.config, c.httpClient)
	if err != nil {
		return nil, err
	}
	return core.Secrets(ns), nil
}

// contextFactory is kubectl's factory with one clientset: Helm's kube
// client asks it for a clientset per configuration and keeps it.
type contextFactory struct {
	kube.Factory
	clientset *kubernetes.Clientset
	// discovery is the context's, for the validators (validator.go).
	discovery discovery.CachedDiscoveryInterface

	mu         sync.Mutex
	validators map[string]validation.Schema
}

func (f *contextFactory) KubernetesClientSet() (*kubernetes.Clientset, error) {
	return f.clientset, nil
}

// contextClients returns the clients of kubeContext, building them on first
// use; a.mu must be held. Building reads the kubeconfig but does not touch
// the cluster. A kubeconfig that does not load is not remembered: the next
// call reads it again.
func (a *Activities) contextClients(kubeContext string) (*contextClients, error) {
	key := configKey{kubeContext: kubeContext}
	if cfg, ok := a.configs[key]; ok {
		return cfg.RESTClientGetter.(*contextClients), nil
	}

	flags := genericclioptions.NewConfigFlags(true)
	kubeconfig := a.Kubeconfig
	flags.KubeConfig = &kubeconfig
	if kubeContext != "" {
		flags.Context = &kubeContext
	}
	qps, burst := a.KubeQPS, a.KubeBurst
	if qps <= 0 {
		qps = defaultKubeQPS
	}
	if burst <= 0 {
		burst = defaultKubeBurst
	}
	// Every rest.Config Helm makes comes through here or from c.config:
	// its storage clients, its kube client, KubernetesClientSet and the
	// clients of each object.
	flags.WrapConfigFn = func(c *rest.Config) *rest.Config {
		c.QPS, c.Burst = qps, burst
		return c
	}
	// Discovery sets its own limit over this, 50 QPS and a burst of 300 by
	// default. That was each namespace's; the context's discovery client
	// now serves them all, and Helm invalidates its cache on the first
	// install or upgrade of every configuration (three or four requests
	// each: the version, the groups, the OpenAPI index). At 50 QPS, 300
	// namespaces deployed four at a time took 117 s instead of 25 s on the
	// lab cluster (TestHelmMemoryPerNamespace), the refills queued behind
	// the one rate limiter. It gets the clients' limit, or Helm's when that
	// is higher.
	flags.WithDiscoveryQPS(max(qps, 50)).WithDiscoveryBurst(max(burst, 300))
	config, err := flags.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	httpClient, err := rest.HTTPClientFor(config)
	if err != nil {
		return nil, err
	}
	clientset, err := kubernetes.NewForConfigAndClient(config, httpClient)
	if err != nil {
		return nil, err
	}
	// kubectl's discovery client: a memory cache over the disk cache in
	// ~/.kube/cache (KUBECACHEDIR), the OpenAPI documents in its HTTP cache.
	dc, err := flags.ToDiscoveryClient()
	if err != nil {
		return nil, err
	}
	locked := &lockedDiscovery{CachedDiscoveryInterface: dc}
	// The REST mapper ConfigFlags would make, over the locked client.
	mapper := restmapper.NewShortcutExpander(restmapper.NewDeferredDiscoveryRESTMapper(locked), locked, func(string) {})
	cc := &contextClients{
		loader:     flags.ToRawKubeConfigLoader(),
		config:     config,
		httpClient: httpClient,
		discovery:  locked,
		mapper:     mapper,
	}
	// kube.New makes kubectl's factory over cc.
	cc.factory = &contextFactory{Factory: kube.New(cc).Factory, clientset: clientset, discovery: locked}
	if a.configs == nil {
		a.configs = map[configKey]*action.Configuration{}
	}
	// A configuration only in name: it holds the clients, and is never
	// returned by config.
	a.configs[key] = &action.Configuration{RESTClientGetter: cc}
	return cc, nil
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
