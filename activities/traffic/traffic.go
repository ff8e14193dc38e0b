// Package traffic splits users' requests by weight between the two sides of
// a region (stable and canary, or stable and preview) and between regions
// (failover), on AWS: weighted Route 53 records or the weighted target
// groups of an ELBv2 forward action. Every change is read back before it
// counts as done.
package traffic

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/smithy-go"
	"go.temporal.io/sdk/temporal"

	"github.com/keelson-dev/keelson/release"
)

// Keys of a region's two sides in a SidesTarget.
const (
	Stable = "stable"
	Canary = "canary"
)

// Error types of the non-retryable application errors this package returns.
const (
	// ErrTypeTargetMissing: the zone, record, listener, rule or target
	// group does not exist, or the forward action does not hold the
	// target group. Retrying cannot help; the release file or the
	// infrastructure must change.
	ErrTypeTargetMissing = "TrafficTargetMissing"
	// ErrTypeTargetInvalid: the target or the weights asked for cannot
	// work (no provider, a key the target does not know, a weight out of
	// the provider's range, a record that is not weighted).
	ErrTypeTargetInvalid = "TrafficTargetInvalid"
)

// DefaultAWSRegion is the API region when neither the target nor the
// environment names one. Route 53 is global; its API lives here.
const DefaultAWSRegion = "us-east-1"

// Weights maps a key ("stable", "canary", or a region name) to its weight.
type Weights map[string]int

func (w Weights) String() string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(w)) {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", k, w[k])
	}
	return b.String()
}

// Provider is one way of splitting traffic by weight (one file per
// implementation: route53.go, elbv2.go).
type Provider interface {
	// SetWeights sets the given keys' weights; keys not given keep theirs.
	SetWeights(ctx context.Context, w Weights) error
	// Weights reads every key's weight as the provider holds it now.
	Weights(ctx context.Context) (Weights, error)
}

// Target is where weights are set: exactly one of Route53 and ELBv2.
type Target struct {
	// AWSRegion of the API; the environment's region, or us-east-1, when empty.
	AWSRegion string         `json:"awsRegion,omitempty"`
	Route53   *Route53Target `json:"route53,omitempty"`
	ELBv2     *ELBv2Target   `json:"elbv2,omitempty"`
}

// Route53Target is a set of weighted records of one name and type.
type Route53Target struct {
	HostedZoneID string `json:"hostedZoneId,omitempty"`
	HostedZone   string `json:"hostedZone,omitempty"` // zone name, looked up when no ID
	Name         string `json:"name"`
	Type         string `json:"type,omitempty"` // CNAME default
	TTL          int    `json:"ttl,omitempty"`  // 30 default
	// Records maps a key to its record's set identifier and value.
	Records map[string]release.WeightedRecord `json:"records"`
}

// ELBv2Target is the forward action of a listener's default actions
// (ListenerARN) or of a listener rule (RuleARN, which wins when both are
// set).
type ELBv2Target struct {
	ListenerARN  string            `json:"listenerArn,omitempty"`
	RuleARN      string            `json:"ruleArn,omitempty"`
	TargetGroups map[string]string `json:"targetGroups"` // key -> target group ARN
}

// SidesTarget builds the target of a region's stable and canary sides (keys
// "stable", "canary").
func SidesTarget(awsRegion string, t release.Traffic) Target {
	target := Target{AWSRegion: awsRegion}
	switch {
	case t.Route53 != nil:
		r := t.Route53
		target.Route53 = &Route53Target{
			HostedZoneID: r.HostedZoneID,
			HostedZone:   r.HostedZone,
			Name:         r.Record,
			Type:         r.Type,
			TTL:          r.TTL,
			Records:      map[string]release.WeightedRecord{Stable: r.Stable, Canary: r.Canary},
		}
	case t.ELBv2 != nil:
		e := t.ELBv2
		target.ELBv2 = &ELBv2Target{
			ListenerARN:  e.ListenerARN,
			RuleARN:      e.RuleARN,
			TargetGroups: map[string]string{Stable: e.StableTargetGroup, Canary: e.CanaryTargetGroup},
		}
	}
	return target
}

// RegionsTarget builds the failover target (keys: region names).
func RegionsTarget(awsRegion string, f release.Failover) Target {
	records := make(map[string]release.WeightedRecord, len(f.Regions))
	for _, r := range f.Regions {
		records[r.Region] = release.WeightedRecord{SetIdentifier: r.SetIdentifier, Value: r.Value}
	}
	return Target{
		AWSRegion: awsRegion,
		Route53: &Route53Target{
			HostedZoneID: f.HostedZoneID,
			HostedZone:   f.HostedZone,
			Name:         f.Record,
			Type:         f.Type,
			TTL:          f.TTL,
			Records:      records,
		},
	}
}

// Config configures the AWS clients.
type Config struct {
	// Endpoint overrides every AWS API's endpoint (moto in the lab); empty
	// means AWS's own (the SDK also honours AWS_ENDPOINT_URL).
	Endpoint string
}

// Activities set and read traffic weights. One value serves every target:
// it holds the AWS configuration (the default credential chain) and a
// client per AWS region and API.
type Activities struct {
	cfg      Config
	aws      aws.Config
	mu       sync.Mutex
	route53s map[string]*route53.Client
	elbv2s   map[string]*elbv2.Client
}

// New loads the AWS configuration from the environment (credentials,
// region, profile) once.
func New(ctx context.Context, cfg Config) (*Activities, error) {
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	return &Activities{
		cfg:      cfg,
		aws:      awsCfg,
		route53s: map[string]*route53.Client{},
		elbv2s:   map[string]*elbv2.Client{},
	}, nil
}

// SetInput is what SetWeights sets.
type SetInput struct {
	Target  Target  `json:"target"`
	Weights Weights `json:"weights"`
}

// SetResult is every key's weight before and after, and whether anything
// was changed.
type SetResult struct {
	Before  Weights `json:"before"`
	After   Weights `json:"after"`
	Changed bool    `json:"changed"`
}

// SetWeights sets the given keys' weights (keys not given keep theirs),
// reads them back and returns an error if what it reads differs;
// idempotent: when the weights are already as asked it changes nothing
// (Changed false).
func (a *Activities) SetWeights(ctx context.Context, in SetInput) (SetResult, error) {
	what := fmt.Sprintf("set weights %s on %s", in.Weights, in.Target)
	p, err := a.Provider(ctx, in.Target)
	if err != nil {
		return SetResult{}, wrap(err, what)
	}
	before, err := p.Weights(ctx)
	if err != nil {
		return SetResult{}, wrap(err, what)
	}
	if err := checkKeys(before, in.Weights); err != nil {
		return SetResult{}, wrap(err, what)
	}
	if holds(before, in.Weights) {
		slog.InfoContext(ctx, "traffic weights already set", "target", in.Target.String(), "weights", before.String())
		return SetResult{Before: before, After: before}, nil
	}
	if err := p.SetWeights(ctx, in.Weights); err != nil {
		return SetResult{}, wrap(err, what)
	}
	after, err := p.Weights(ctx)
	if err != nil {
		return SetResult{}, wrap(err, what+": read back")
	}
	if !holds(after, in.Weights) {
		// Retryable: another writer may have raced us, and setting again
		// is harmless.
		return SetResult{}, fmt.Errorf("%s: read back %s", what, after)
	}
	slog.InfoContext(ctx, "traffic weights set", "target", in.Target.String(),
		"before", before.String(), "after", after.String())
	return SetResult{Before: before, After: after, Changed: true}, nil
}

// GetWeights reads every key's weight.
func (a *Activities) GetWeights(ctx context.Context, t Target) (Weights, error) {
	what := "read weights of " + t.String()
	p, err := a.Provider(ctx, t)
	if err != nil {
		return nil, wrap(err, what)
	}
	w, err := p.Weights(ctx)
	if err != nil {
		return nil, wrap(err, what)
	}
	return w, nil
}

// Provider is the target's provider, with a client for its AWS region. A
// Route 53 target named by its zone's name looks the zone up here.
func (a *Activities) Provider(ctx context.Context, t Target) (Provider, error) {
	switch {
	case t.Route53 != nil && t.ELBv2 != nil:
		return nil, invalid("traffic target %s has both route53 and elbv2", t)
	case t.Route53 != nil:
		return newRoute53Provider(ctx, a.route53Client(t.AWSRegion), *t.Route53)
	case t.ELBv2 != nil:
		return newELBv2Provider(a.elbv2Client(t.AWSRegion), *t.ELBv2)
	}
	return nil, invalid("traffic target has neither route53 nor elbv2")
}

func (t Target) String() string {
	switch {
	case t.Route53 != nil:
		zone := t.Route53.HostedZoneID
		if zone == "" {
			zone = t.Route53.HostedZone
		}
		return fmt.Sprintf("route53 %s %s in zone %s", t.Route53.Name, recordType(t.Route53.Type), zone)
	case t.ELBv2 != nil:
		if t.ELBv2.RuleARN != "" {
			return "elbv2 rule " + t.ELBv2.RuleARN
		}
		return "elbv2 listener " + t.ELBv2.ListenerARN
	}
	return "empty traffic target"
}

func (a *Activities) region(awsRegion string) string {
	switch {
	case awsRegion != "":
		return awsRegion
	case a.aws.Region != "":
		return a.aws.Region
	}
	return DefaultAWSRegion
}

func (a *Activities) route53Client(awsRegion string) *route53.Client {
	region := a.region(awsRegion)
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.route53s[region]
	if !ok {
		c = route53.NewFromConfig(a.aws, func(o *route53.Options) {
			o.Region = region
			if a.cfg.Endpoint != "" {
				o.BaseEndpoint = aws.String(a.cfg.Endpoint)
			}
		})
		a.route53s[region] = c
	}
	return c
}

func (a *Activities) elbv2Client(awsRegion string) *elbv2.Client {
	region := a.region(awsRegion)
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.elbv2s[region]
	if !ok {
		c = elbv2.NewFromConfig(a.aws, func(o *elbv2.Options) {
			o.Region = region
			if a.cfg.Endpoint != "" {
				o.BaseEndpoint = aws.String(a.cfg.Endpoint)
			}
		})
		a.elbv2s[region] = c
	}
	return c
}

// checkKeys fails when a key asked for is not one of the target's.
func checkKeys(known, asked Weights) error {
	for _, k := range slices.Sorted(maps.Keys(asked)) {
		if _, ok := known[k]; !ok {
			return invalid("key %q is not one of the target's (%s)", k,
				strings.Join(slices.Sorted(maps.Keys(known)), ", "))
		}
	}
	return nil
}

// holds says whether every key asked for has its weight in current.
func holds(current, asked Weights) bool {
	for k, w := range asked {
		if cur, ok := current[k]; !ok || cur != w {
			return false
		}
	}
	return true
}

func checkRange(w Weights, maxWeight int, provider string) error {
	for _, k := range slices.Sorted(maps.Keys(w)) {
		if w[k] < 0 || w[k] > maxWeight {
			return invalid("weight %d of %q is out of %s's range 0..%d", w[k], k, provider, maxWeight)
		}
	}
	return nil
}

func missing(format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, args...), ErrTypeTargetMissing, nil)
}

func invalid(format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, args...), ErrTypeTargetInvalid, nil)
}

// notFound turns an AWS error whose code is one of codes (the resource does
// not exist) into a missing-target error, keeping the AWS error as cause.
func notFound(err error, what string, codes ...string) error {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && slices.Contains(codes, apiErr.ErrorCode()) {
		return temporal.NewNonRetryableApplicationError(what, ErrTypeTargetMissing, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// wrap says what was being done. Temporal reads an activity error's type
// and retryability from the returned error itself, not from what it wraps,
// so a non-retryable application error stays one, with the context in its
// message.
func wrap(err error, what string) error {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && appErr.NonRetryable() {
		return temporal.NewNonRetryableApplicationError(what+": "+appErr.Message(), appErr.Type(), errors.Unwrap(appErr))
	}
	return fmt.Errorf("%s: %w", what, err)
}
