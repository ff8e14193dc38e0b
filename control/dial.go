package control

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	tlog "go.temporal.io/sdk/log"
	"google.golang.org/grpc"
)

// DialOptions says where Temporal is and how long to keep trying.
type DialOptions struct {
	Address   string
	Namespace string
	// Logger receives the SDK's logs; nil keeps the SDK quiet below warnings
	// on stderr (the CLI), the worker passes its own.
	Logger *slog.Logger
	// Wait, when positive, keeps retrying until the server answers or Wait
	// passes: a worker may start before the server is ready. Zero tries once.
	Wait time.Duration
	// Identity names this client in histories; the SDK's pid@host when empty.
	Identity string
	// MetricsHandler receives the SDK's own metrics (the worker exports
	// them on /metrics); none when nil.
	MetricsHandler client.MetricsHandler
	// DataConverter turns values into payloads and back (the codec package's
	// encrypts them); the SDK's default when nil.
	DataConverter converter.DataConverter
	// FailureConverter turns errors into failures; with encryption it is
	// codec.NewFailureConverter's, so failure messages are encrypted too.
	// The SDK's default when nil.
	FailureConverter converter.FailureConverter
}

// Dial connects to Temporal. The connection reports to Client.Start whether
// a start created a run or found one running, which the service tells only
// in the raw response.
func Dial(ctx context.Context, o DialOptions) (client.Client, error) {
	opts := client.Options{
		HostPort:         o.Address,
		Namespace:        o.Namespace,
		Identity:         o.Identity,
		MetricsHandler:   o.MetricsHandler,
		DataConverter:    o.DataConverter,
		FailureConverter: o.FailureConverter,
		ConnectionOptions: client.ConnectionOptions{
			DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(startProbeInterceptor)},
		},
	}
	if o.Logger != nil {
		opts.Logger = tlog.NewStructuredLogger(o.Logger)
	} else {
		opts.Logger = tlog.NewStructuredLogger(slog.New(slog.DiscardHandler))
	}

	deadline := time.Now().Add(o.Wait)
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		attemptCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := client.DialContext(attemptCtx, opts)
		cancel()
		if err == nil {
			return c, nil
		}
		remaining := time.Until(deadline)
		if o.Wait <= 0 || remaining <= 0 || ctx.Err() != nil {
			return nil, &Error{
				Kind:    ErrUnavailable,
				Message: fmt.Sprintf("cannot reach Temporal at %s: is it running? try `make up`", o.Address),
				Err:     err,
			}
		}
		if o.Logger != nil {
			o.Logger.Info("temporal not reachable yet, retrying", "address", o.Address, "attempt", attempt, "err", oneLine(err.Error()))
		}
		select {
		case <-time.After(min(backoff, remaining)):
		case <-ctx.Done():
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// startProbe receives StartWorkflowExecutionResponse.Started for one call.
type startProbe struct {
	seen    bool
	started bool
}

type startProbeKey struct{}

func withStartProbe(ctx context.Context, p *startProbe) context.Context {
	return context.WithValue(ctx, startProbeKey{}, p)
}

// startProbeInterceptor copies Started from a start response into the probe
// carried by the context. With the USE_EXISTING conflict policy the SDK
// returns the same WorkflowRun whether it started a run or found one; this
// is the one exact way to tell without a race between two starts.
func startProbeInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if err != nil {
		return err
	}
	if p, ok := ctx.Value(startProbeKey{}).(*startProbe); ok {
		if r, ok := reply.(*workflowservice.StartWorkflowExecutionResponse); ok {
			p.seen = true
			p.started = r.GetStarted()
		}
	}
	return nil
}
