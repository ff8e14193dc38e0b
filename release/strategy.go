package release

// Progressive delivery: how a region moves from the version it runs to the
// new one (Strategy), how users' requests are split between the two
// (Traffic), what judges the new version on real signals (AnalysisCheck),
// and how a region that goes bad after it finished loses its share of
// users to the others (Failover).
//
// Two versions run side by side in a region as two Helm releases: the
// stable one (Chart.Release, the only one whose history grows by one
// revision per version) and a side release named Chart.Release+"-canary"
// (canary) or Chart.Release+"-preview" (blue-green), installed with the new
// version for the length of the rollout and uninstalled at its end. See
// docs/release-file.md, "Strategies".

// StrategyKind names a strategy.
type StrategyKind string

const (
	StrategyAllAtOnce StrategyKind = "all-at-once"
	StrategyCanary    StrategyKind = "canary"
	StrategyBlueGreen StrategyKind = "blue-green"
	StrategyRolling   StrategyKind = "rolling"
)

// Strategy says how a region changes version. At most one of its fields is
// set; none means the whole region is upgraded at once (the Helm upgrade,
// readiness, health checks and bake of earlier versions of Keelson).
type Strategy struct {
	Canary    *Canary    `json:"canary,omitempty" yaml:"canary,omitempty"`
	BlueGreen *BlueGreen `json:"blueGreen,omitempty" yaml:"blueGreen,omitempty"`
	Rolling   *Rolling   `json:"rolling,omitempty" yaml:"rolling,omitempty"`
}

// Kind is the strategy's name.
func (s *Strategy) Kind() StrategyKind {
	switch {
	case s == nil:
		return StrategyAllAtOnce
	case s.Canary != nil:
		return StrategyCanary
	case s.BlueGreen != nil:
		return StrategyBlueGreen
	case s.Rolling != nil:
		return StrategyRolling
	}
	return StrategyAllAtOnce
}

// Canary sends a growing share of the region's traffic to the new version,
// running on the canary side, step by step; analysis between the steps
// judges it against the stable side. Reaching 100 promotes it: the stable
// Helm release is upgraded to the new version, traffic returns to it, and
// the canary side is removed.
type Canary struct {
	Steps []CanaryStep `json:"steps" yaml:"steps"`
	// Values apply to the canary side's Helm release over the application's
	// and the region's (for example fewer replicas).
	Values Values `json:"values,omitempty" yaml:"values,omitempty"`
}

// CanaryStep is one step of a canary: exactly one of its fields is set.
type CanaryStep struct {
	// SetWeight sends this percentage of the region's traffic to the canary.
	SetWeight *int `json:"setWeight,omitempty" yaml:"setWeight,omitempty"`
	// Pause waits for a duration, or until promoted when it has none.
	Pause *Pause `json:"pause,omitempty" yaml:"pause,omitempty"`
	// Analysis runs checks against the canary and the stable side.
	Analysis *AnalysisStep `json:"analysis,omitempty" yaml:"analysis,omitempty"`
}

// Pause is a wait in a strategy. With no duration it lasts until a person
// promotes the release (`keelson promote`).
type Pause struct {
	Duration Duration `json:"duration,omitempty" yaml:"duration,omitempty"`
}

// AnalysisStep runs named checks (from the file's analysis list) for a
// duration; it fails as soon as one check fails.
type AnalysisStep struct {
	Checks []string `json:"checks" yaml:"checks"`
	// Duration is how long the checks run; when zero they run until each
	// has its minimum number of samples.
	Duration Duration `json:"duration,omitempty" yaml:"duration,omitempty"`
}

// BlueGreen starts the new version beside the old one on the preview side
// with no traffic, checks it, switches all traffic to it at once, and keeps
// the old version for ScaleDownDelay so that a rollback is a switch back.
type BlueGreen struct {
	// Values apply to the preview side's Helm release.
	Values Values `json:"values,omitempty" yaml:"values,omitempty"`
	// PrePromotion runs against the preview before the switch.
	PrePromotion *AnalysisStep `json:"prePromotionAnalysis,omitempty" yaml:"prePromotionAnalysis,omitempty"`
	// ManualPromotion holds the switch until a person promotes.
	ManualPromotion bool `json:"manualPromotion,omitempty" yaml:"manualPromotion,omitempty"`
	// PostPromotion runs after the switch, during the scale-down delay.
	PostPromotion *AnalysisStep `json:"postPromotionAnalysis,omitempty" yaml:"postPromotionAnalysis,omitempty"`
	// ScaleDownDelay keeps the old version after the switch; 30s by default.
	ScaleDownDelay Duration `json:"scaleDownDelay,omitempty" yaml:"scaleDownDelay,omitempty"`
}

// Rolling replaces the region's pods in batches, by Kubernetes' own rolling
// update with the surge and unavailability Keelson sets on every
// Deployment the chart renders.
type Rolling struct {
	// MaxSurge is how many pods above the desired count may run at once.
	MaxSurge int `json:"maxSurge,omitempty" yaml:"maxSurge,omitempty"`
	// MaxUnavailable is how many pods below it may be unavailable.
	MaxUnavailable int `json:"maxUnavailable,omitempty" yaml:"maxUnavailable,omitempty"`
	// BatchSize is how many pods are replaced at a time: MaxSurge plus
	// MaxUnavailable. Given alone, it is the surge (none unavailable).
	BatchSize int `json:"batchSize,omitempty" yaml:"batchSize,omitempty"`
	// BatchPause is how long a new pod must stay ready before the next
	// batch starts (the Deployment's minReadySeconds).
	BatchPause Duration `json:"batchPause,omitempty" yaml:"batchPause,omitempty"`
	// Analysis runs after the last batch.
	Analysis *AnalysisStep `json:"analysis,omitempty" yaml:"analysis,omitempty"`
}

// Traffic is where a region's users are split between its stable and
// canary (or preview) sides. Exactly one provider is set.
type Traffic struct {
	Route53 *Route53Traffic `json:"route53,omitempty" yaml:"route53,omitempty"`
	ELBv2   *ELBv2Traffic   `json:"elbv2,omitempty" yaml:"elbv2,omitempty"`
}

// Route53Traffic is a pair of weighted records of one name: the stable
// side's and the canary side's.
type Route53Traffic struct {
	// HostedZoneID, or HostedZone (the zone's name) to look it up.
	HostedZoneID string `json:"hostedZoneId,omitempty" yaml:"hostedZoneId,omitempty"`
	HostedZone   string `json:"hostedZone,omitempty" yaml:"hostedZone,omitempty"`
	// Record is the record name users resolve (demo.us-east-1.example.com).
	Record string `json:"record" yaml:"record"`
	// Type is CNAME (the default), A or AAAA.
	Type string `json:"type,omitempty" yaml:"type,omitempty"`
	// TTL in seconds; 30 by default.
	TTL    int            `json:"ttl,omitempty" yaml:"ttl,omitempty"`
	Stable WeightedRecord `json:"stable" yaml:"stable"`
	Canary WeightedRecord `json:"canary" yaml:"canary"`
}

// WeightedRecord is one weighted record: its set identifier and value.
type WeightedRecord struct {
	SetIdentifier string `json:"setIdentifier" yaml:"setIdentifier"`
	Value         string `json:"value" yaml:"value"`
}

// ELBv2Traffic is a forward action with two weighted target groups, on a
// listener's default action or on a listener rule.
type ELBv2Traffic struct {
	ListenerARN       string `json:"listenerArn,omitempty" yaml:"listenerArn,omitempty"`
	RuleARN           string `json:"ruleArn,omitempty" yaml:"ruleArn,omitempty"`
	StableTargetGroup string `json:"stableTargetGroupArn" yaml:"stableTargetGroupArn"`
	CanaryTargetGroup string `json:"canaryTargetGroupArn" yaml:"canaryTargetGroupArn"`
}

// NoData says what a sample without data counts as.
type NoData string

const (
	NoDataFail NoData = "fail"
	NoDataPass NoData = "pass"
	// NoDataInconclusive pauses the release for a person.
	NoDataInconclusive NoData = "inconclusive"
)

// Compare makes a check judge the canary against the stable side: the same
// query is run for both and the threshold applies to canary/stable (ratio)
// or canary-stable (difference).
type Compare string

const (
	CompareNone       Compare = ""
	CompareRatio      Compare = "ratio"
	CompareDifference Compare = "difference"
)

// AnalysisCheck is a named check that strategy steps and failover run.
// Exactly one of HTTP, Prometheus and CloudWatch is set. Queries, URLs and
// dimensions are Go templates over .Application, .Region, .Version (of the
// side measured), .Side ("canary", "stable" or "preview"), .StableVersion
// and .CanaryVersion.
type AnalysisCheck struct {
	Name string `json:"name" yaml:"name"`
	// Interval between samples; 5s by default.
	Interval Duration `json:"interval,omitempty" yaml:"interval,omitempty"`
	// FailureLimit is how many failing samples in a row fail the check; 1
	// by default.
	FailureLimit int `json:"failureLimit,omitempty" yaml:"failureLimit,omitempty"`
	// MinSamples is how many samples the check needs before it may pass; 1
	// by default.
	MinSamples int `json:"minSamples,omitempty" yaml:"minSamples,omitempty"`
	// NoData is fail, pass or inconclusive (the default).
	NoData NoData `json:"noData,omitempty" yaml:"noData,omitempty"`
	// Compare is ratio or difference (canary against stable), or empty for
	// an absolute threshold on the measured side.
	Compare Compare `json:"compare,omitempty" yaml:"compare,omitempty"`
	// Max and Min bound the value (or the comparison); a sample outside
	// fails.
	Max *float64 `json:"max,omitempty" yaml:"max,omitempty"`
	Min *float64 `json:"min,omitempty" yaml:"min,omitempty"`

	HTTP       *HTTPAnalysis       `json:"http,omitempty" yaml:"http,omitempty"`
	Prometheus *PrometheusAnalysis `json:"prometheus,omitempty" yaml:"prometheus,omitempty"`
	CloudWatch *CloudWatchAnalysis `json:"cloudwatch,omitempty" yaml:"cloudwatch,omitempty"`
}

// HTTPAnalysis probes a URL: the sample fails on another status, a latency
// over MaxLatency, or a JSON field that is missing or differs. With
// JSONField and no ExpectValue the field's number is the sample's value,
// judged by Max and Min.
type HTTPAnalysis struct {
	URL                string   `json:"url" yaml:"url"`
	ExpectStatus       int      `json:"expectStatus,omitempty" yaml:"expectStatus,omitempty"`
	MaxLatency         Duration `json:"maxLatency,omitempty" yaml:"maxLatency,omitempty"`
	JSONField          string   `json:"jsonField,omitempty" yaml:"jsonField,omitempty"`
	ExpectValue        string   `json:"expectValue,omitempty" yaml:"expectValue,omitempty"`
	Timeout            Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`
	InsecureSkipVerify bool     `json:"insecureSkipVerify,omitempty" yaml:"insecureSkipVerify,omitempty"`
}

// PrometheusAnalysis runs a PromQL query over Prometheus' HTTP API. The
// result must be one number (a scalar or a vector of one sample); an empty
// vector is no data.
type PrometheusAnalysis struct {
	Address string `json:"address" yaml:"address"`
	Query   string `json:"query" yaml:"query"`
	// Range makes it a range query over the last Range, its samples
	// averaged; an instant query when zero.
	Range Duration `json:"range,omitempty" yaml:"range,omitempty"`
	Step  Duration `json:"step,omitempty" yaml:"step,omitempty"`
}

// CloudWatchAnalysis reads an alarm's state (ALARM fails, INSUFFICIENT_DATA
// is no data) or a metric through GetMetricData.
type CloudWatchAnalysis struct {
	// AWSRegion of the API; the region's awsRegion by default.
	AWSRegion  string            `json:"awsRegion,omitempty" yaml:"awsRegion,omitempty"`
	Alarm      string            `json:"alarm,omitempty" yaml:"alarm,omitempty"`
	Namespace  string            `json:"namespace,omitempty" yaml:"namespace,omitempty"`
	Metric     string            `json:"metric,omitempty" yaml:"metric,omitempty"`
	Dimensions map[string]string `json:"dimensions,omitempty" yaml:"dimensions,omitempty"`
	// Stat is Sum, Average, Maximum, … or a percentile (p99); Average by default.
	Stat string `json:"stat,omitempty" yaml:"stat,omitempty"`
	// Period of the metric; 60s by default. Window is how far back the
	// data is read; 5m by default. The latest datapoint is the sample.
	Period Duration `json:"period,omitempty" yaml:"period,omitempty"`
	Window Duration `json:"window,omitempty" yaml:"window,omitempty"`
}

// Failover moves a finished region's share of users to the healthy regions
// while later waves roll out: the regions are weighted records of one
// Route 53 name, and Check judges each finished region.
type Failover struct {
	HostedZoneID string `json:"hostedZoneId,omitempty" yaml:"hostedZoneId,omitempty"`
	HostedZone   string `json:"hostedZone,omitempty" yaml:"hostedZone,omitempty"`
	Record       string `json:"record" yaml:"record"`
	Type         string `json:"type,omitempty" yaml:"type,omitempty"`
	TTL          int    `json:"ttl,omitempty" yaml:"ttl,omitempty"`
	// Regions are the regions' weighted records.
	Regions []FailoverRecord `json:"regions" yaml:"regions"`
	// Check is the analysis check (by name) that judges a region's health.
	Check string `json:"check" yaml:"check"`
}

// FailoverRecord is a region's record in the failover name and its share
// when healthy.
type FailoverRecord struct {
	Region        string `json:"region" yaml:"region"`
	SetIdentifier string `json:"setIdentifier" yaml:"setIdentifier"`
	Value         string `json:"value" yaml:"value"`
	Weight        int    `json:"weight" yaml:"weight"`
}
