// keelson-traffic plays the users of the lab's applications, so that
// progressive delivery has real signals to judge: it reads how Route 53
// (moto) splits each application's users between its stable and canary
// sides, which version serves each side (the region's cluster), sends
// synthetic requests accordingly and records their outcome as Prometheus
// metrics (/metrics) and CloudWatch metrics (moto).
//
//	keelson-traffic setup --endpoint URL --zone lab.keelson.test --kubeconfig F [--apps demo] [--namespace demo] [--reset]
//	keelson-traffic run   --endpoint URL --zone lab.keelson.test --kubeconfig F --listen 127.0.0.1:9391 --rps 20
//
// infra/lab/trafficgen.sh runs it in the lab.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwschemas "github.com/aws/aws-sdk-go-v2/service/cloudwatch/schemas"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/smithy-go/transport/http/protocol/awsquery"
)

const usage = `usage: keelson-traffic setup|run [flags]; keelson-traffic setup -h or run -h for the flags`

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "setup":
		err = runSetup(ctx, os.Args[2:], log)
	case "run":
		err = runGenerator(ctx, os.Args[2:], log)
	default:
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		log.Error("keelson-traffic "+os.Args[1]+" failed", "err", err)
		os.Exit(1)
	}
}

// common are the flags both commands take.
type common struct {
	endpoint   string
	zone       string
	kubeconfig string
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.endpoint, "endpoint", os.Getenv("AWS_ENDPOINT_URL"), "AWS endpoint (moto_server), for Route 53 and CloudWatch; AWS's own when empty [AWS_ENDPOINT_URL]")
	fs.StringVar(&c.zone, "zone", "lab.keelson.test", "Route 53 hosted zone of the applications' records")
	fs.StringVar(&c.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig with one context per region, named like the region [KUBECONFIG]")
}

// awsConfig is the SDK configuration: region, credentials and retries from the
// environment as usual. With an endpoint and no credentials in the
// environment, moto's customary fake ones are used.
func (c *common) awsConfig(ctx context.Context) (aws.Config, error) {
	opts := []func(*config.LoadOptions) error{config.WithRegion("us-east-1")}
	if c.endpoint != "" {
		opts = append(opts, config.WithBaseEndpoint(c.endpoint))
		if os.Getenv("AWS_ACCESS_KEY_ID") == "" {
			opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("testing", "testing", "")))
		}
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("aws config: %w", err)
	}
	return cfg, nil
}

// hostedZone is the zone through Route 53, which is global: its API is in us-east-1.
func (c *common) hostedZone(cfg aws.Config) *r53 {
	return &r53{client: route53.NewFromConfig(cfg, func(o *route53.Options) { o.Region = "us-east-1" }), zone: trimDot(c.zone)}
}

// cloudWatchClients gives a CloudWatch client per AWS region, made once.
// The lab's regions are AWS regions by name. The clients speak the query
// protocol: the SDK's default for CloudWatch is Smithy RPC v2 CBOR, which
// moto does not understand, and AWS still serves the query protocol.
func cloudWatchClients(cfg aws.Config) func(region string) *cloudwatch.Client {
	var mu sync.Mutex
	clients := map[string]*cloudwatch.Client{}
	return func(region string) *cloudwatch.Client {
		mu.Lock()
		defer mu.Unlock()
		if c, ok := clients[region]; ok {
			return c
		}
		c := cloudwatch.NewFromConfig(cfg, func(o *cloudwatch.Options) {
			o.Region = region
			o.Protocol = awsquery.New(cwschemas.GraniteServiceVersion20100801)
		})
		clients[region] = c
		return c
	}
}

func runSetup(ctx context.Context, args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("setup", flag.ContinueOnError)
	var c common
	c.register(fs)
	apps := fs.String("apps", "demo", "applications, comma-separated")
	namespace := fs.String("namespace", "demo", "namespace of the applications' Helm releases")
	regions := fs.String("regions", "", "regions, comma-separated; the kubeconfig's contexts when empty")
	reset := fs.Bool("reset", false, "write every record with its initial weight (all users on stable), even when it exists")
	if err := fs.Parse(args); err != nil {
		return err
	}
	in := setupInput{apps: splitList(*apps), namespace: *namespace, regions: splitList(*regions), reset: *reset}
	if len(in.regions) == 0 {
		if c.kubeconfig == "" {
			return errors.New("no regions: give --regions or --kubeconfig")
		}
		names, err := contexts(c.kubeconfig)
		if err != nil {
			return err
		}
		in.regions = names
	}
	slices.Sort(in.regions)
	cfg, err := c.awsConfig(ctx)
	if err != nil {
		return err
	}
	return setup(ctx, c.hostedZone(cfg), cloudWatchClients(cfg), in, log)
}

func runGenerator(ctx context.Context, args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var c common
	c.register(fs)
	listen := fs.String("listen", "127.0.0.1:9391", "address of /metrics, /healthz, /targets and /app/APP/REGION/SIDE")
	rps := fs.Int("rps", 20, "requests a second per application and region, split between its sides")
	discoverEvery := fs.Duration("discover-every", 2*time.Second, "how often the zone's weights and the sides' versions are read")
	cloudWatchEvery := fs.Duration("cloudwatch-every", 10*time.Second, "how often metrics are put to CloudWatch; 0: never")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *rps < 0 || *discoverEvery <= 0 || *cloudWatchEvery < 0 {
		return errors.New("--rps, --discover-every and --cloudwatch-every must not be negative (nor --discover-every zero)")
	}
	cfg, err := c.awsConfig(ctx)
	if err != nil {
		return err
	}
	g := &generator{
		zone:     c.hostedZone(cfg),
		clusters: &clusters{path: c.kubeconfig},
		metrics:  newMetrics(),
		rps:      *rps,
		log:      log,
		targets:  map[string]*targetState{},
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: g.handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shut)
	}()
	log.Info("keelson-traffic running", "listen", ln.Addr().String(), "zone", c.zone, "endpoint", c.endpoint,
		"kubeconfig", c.kubeconfig, "rps", *rps, "cloudwatch_every", cloudWatchEvery.String())
	go g.run(ctx, *discoverEvery)
	if *cloudWatchEvery > 0 {
		cw := &cloudWatch{client: cloudWatchClients(cfg), log: log}
		go cw.run(ctx, g.metrics, *cloudWatchEvery)
	}
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("keelson-traffic stopped")
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
