// Package release holds the release file: its types, loading and validation.
// Both the CLI and the worker use it; the workflows receive the validated
// Spec as part of their input, so everything here must stay plain data that
// serialises to JSON without loss.
package release

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// APIVersionV1Alpha1 is the only release file format so far. Files name it in
// `apiVersion`, so later formats can be added without breaking files already
// written: the loader converts older versions to the current types.
const APIVersionV1Alpha1 = "keelson.dev/v1alpha1"

// Kind is the only kind of document a release file holds.
const Kind = "Release"

// Spec is one application's release description, validated. Paths in it are
// absolute once loaded (the file names them relative to itself).
type Spec struct {
	APIVersion  string        `json:"apiVersion" yaml:"apiVersion"`
	Kind        string        `json:"kind" yaml:"kind"`
	Application string        `json:"application" yaml:"application"`
	Chart       Chart         `json:"chart" yaml:"chart"`
	Values      Values        `json:"values,omitempty" yaml:"values,omitempty"`
	ValuesFrom  []ValueFrom   `json:"valuesFrom,omitempty" yaml:"valuesFrom,omitempty"` // read by the worker (values_from.go)
	Terraform   *Terraform    `json:"terraform,omitempty" yaml:"terraform,omitempty"`
	Regions     []Region      `json:"regions" yaml:"regions"`
	Waves       []Wave        `json:"waves" yaml:"waves"`
	Health      []HealthCheck `json:"health,omitempty" yaml:"health,omitempty"`
	Readiness   Readiness     `json:"readiness,omitempty" yaml:"readiness,omitempty"`
	Rollback    Rollback      `json:"rollback,omitempty" yaml:"rollback,omitempty"`
	Notify      *Notify       `json:"notify,omitempty" yaml:"notify,omitempty"`
	// Strategy, Traffic, Analysis and Failover are progressive delivery
	// (strategy.go); regions may override Strategy and Traffic.
	Strategy *Strategy       `json:"strategy,omitempty" yaml:"strategy,omitempty"`
	Traffic  *Traffic        `json:"traffic,omitempty" yaml:"traffic,omitempty"`
	Analysis []AnalysisCheck `json:"analysis,omitempty" yaml:"analysis,omitempty"`
	Failover *Failover       `json:"failover,omitempty" yaml:"failover,omitempty"`
	// TimeZone, Windows and Freezes say when regions may change
	// (window.go); a region's own replace them. OnWindowClose says what a
	// region does when its window closes mid-rollout.
	TimeZone      string        `json:"timeZone,omitempty" yaml:"timeZone,omitempty"`
	Windows       []Window      `json:"windows,omitempty" yaml:"windows,omitempty"`
	Freezes       []Freeze      `json:"freezes,omitempty" yaml:"freezes,omitempty"`
	OnWindowClose OnWindowClose `json:"onWindowClose,omitempty" yaml:"onWindowClose,omitempty"`

	// Source is the file the spec was loaded from, for messages.
	Source string `json:"source,omitempty" yaml:"-"`
}

// Values are Helm chart values. They stay a generic tree because charts
// define their own shape.
type Values = map[string]any

// Chart names the Helm chart to install: a local chart directory or
// archive (Path), or a chart of a Helm repository or an OCI registry
// (Repository, Name, Version), fetched once when the release starts.
type Chart struct {
	// Path is a chart directory or .tgz, relative to the release file.
	Path string `json:"path,omitempty" yaml:"path,omitempty"`
	// Repository is a Helm repository URL (https://charts.example.com) or
	// an OCI registry reference (oci://registry.example.com/charts);
	// Name and Version (an exact chart version) name the chart in it.
	Repository string `json:"repository,omitempty" yaml:"repository,omitempty"`
	Name       string `json:"name,omitempty" yaml:"name,omitempty"`
	Version    string `json:"version,omitempty" yaml:"version,omitempty"`
	// Digest is the SHA-256 of the chart archive fetched from Repository
	// at start ("sha256:…"), recorded with the release; set by Keelson.
	Digest string `json:"digest,omitempty" yaml:"-"`
	// Release is the Helm release name; the application name by default.
	Release string `json:"release,omitempty" yaml:"release,omitempty"`
	// VersionValue is the dotted values key that receives the release's
	// version (for example "image.tag"); "version" by default.
	VersionValue string `json:"versionValue,omitempty" yaml:"versionValue,omitempty"`
}

// Terraform is the per-region infrastructure stack.
type Terraform struct {
	// Path is the stack's directory, relative to the release file.
	Path string `json:"path" yaml:"path"`
	// Vars are passed to every region's plan; regions may add or override.
	Vars map[string]string `json:"vars,omitempty" yaml:"vars,omitempty"`
	// OutputsValue is the values key under which Terraform outputs reach the
	// chart; "terraform" by default (so outputs are .Values.terraform.NAME).
	OutputsValue string `json:"outputsValue,omitempty" yaml:"outputsValue,omitempty"`
}

// Region is one place the application runs: a Kubernetes cluster context and
// namespace, an AWS region, and region-specific values and variables.
type Region struct {
	Name          string            `json:"name" yaml:"name"`
	KubeContext   string            `json:"kubeContext" yaml:"kubeContext"`
	Namespace     string            `json:"namespace" yaml:"namespace"`
	AWSRegion     string            `json:"awsRegion,omitempty" yaml:"awsRegion,omitempty"`
	Values        Values            `json:"values,omitempty" yaml:"values,omitempty"`
	ValuesFrom    []ValueFrom       `json:"valuesFrom,omitempty" yaml:"valuesFrom,omitempty"` // replace the application's of the same key
	TerraformVars map[string]string `json:"terraformVars,omitempty" yaml:"terraformVars,omitempty"`
	// Strategy replaces the application's strategy in this region; Traffic
	// replaces its traffic provider (each region has its own records or
	// load balancer).
	Strategy *Strategy `json:"strategy,omitempty" yaml:"strategy,omitempty"`
	Traffic  *Traffic  `json:"traffic,omitempty" yaml:"traffic,omitempty"`
	// TimeZone is the region's IANA zone (Europe/Dublin), in which its
	// windows and local freeze times are read; Windows and Freezes replace
	// the application's.
	TimeZone string   `json:"timeZone,omitempty" yaml:"timeZone,omitempty"`
	Windows  []Window `json:"windows,omitempty" yaml:"windows,omitempty"`
	Freezes  []Freeze `json:"freezes,omitempty" yaml:"freezes,omitempty"`
}

// Wave is a set of regions that change together, after the waves before it.
type Wave struct {
	Name        string   `json:"name" yaml:"name"`
	Regions     []string `json:"regions" yaml:"regions"`
	Parallelism int      `json:"parallelism,omitempty" yaml:"parallelism,omitempty"`
	// Bake is how long the wave's regions keep passing health checks before
	// the next wave may start.
	Bake Duration `json:"bake,omitempty" yaml:"bake,omitempty"`
	// Gate, when set, is an approval asked for before this wave starts.
	Gate *Gate `json:"gate,omitempty" yaml:"gate,omitempty"`
}

// GateWhen says when a gate asks for approval.
type GateWhen string

const (
	GateAlways   GateWhen = "always"
	GateChanges  GateWhen = "changes"  // only when Terraform changes something in the wave's regions
	GateDestroys GateWhen = "destroys" // only when Terraform destroys something
)

// OnTimeout says what a gate does when nobody answered in time.
type OnTimeout string

const (
	TimeoutReject   OnTimeout = "reject"
	TimeoutEscalate OnTimeout = "escalate"
)

// Gate is an approval between waves.
type Gate struct {
	Name string   `json:"name,omitempty" yaml:"name,omitempty"`
	When GateWhen `json:"when,omitempty" yaml:"when,omitempty"`
	// Approvers are user names or Slack user ids allowed to answer. Empty
	// means anyone may answer.
	Approvers []string `json:"approvers,omitempty" yaml:"approvers,omitempty"`
	// ApproverGroups are Slack user group handles or ids whose members may answer.
	ApproverGroups []string  `json:"approverGroups,omitempty" yaml:"approverGroups,omitempty"`
	Timeout        Duration  `json:"timeout,omitempty" yaml:"timeout,omitempty"`
	OnTimeout      OnTimeout `json:"onTimeout,omitempty" yaml:"onTimeout,omitempty"`
	// Escalation is who is called, and for how much longer the gate stays
	// open, when OnTimeout is escalate. It extends the gate once.
	Escalation *Escalation `json:"escalation,omitempty" yaml:"escalation,omitempty"`
	// Reminders are sent this long before the timeout.
	Reminders []Duration `json:"reminders,omitempty" yaml:"reminders,omitempty"`
	// Approvals is how many distinct people must approve before the gate
	// opens; 1 by default. One rejection closes it.
	Approvals int `json:"approvals,omitempty" yaml:"approvals,omitempty"`
	// StarterMayApprove lets whoever started the release answer its gate.
	// Off by default: separation of duties, enforced when the worker
	// verifies identities (package identity).
	StarterMayApprove bool `json:"starterMayApprove,omitempty" yaml:"starterMayApprove,omitempty"`
}

// Escalation is the second chance of a gate that timed out.
type Escalation struct {
	Mention string   `json:"mention" yaml:"mention"`
	Extend  Duration `json:"extend" yaml:"extend"`
}

// HealthCheck is an HTTP probe of the application after it is ready and
// during bake. URL may use Go templates over {{.Region}}, {{.Version}} and
// {{.Outputs.NAME}} (Terraform outputs of the region).
type HealthCheck struct {
	Name string `json:"name" yaml:"name"`
	URL  string `json:"url" yaml:"url"`
	// ExpectStatus is the HTTP status that counts as healthy; 200 by default.
	ExpectStatus int `json:"expectStatus,omitempty" yaml:"expectStatus,omitempty"`
	// JSONField is a dotted path into the JSON body; with ExpectValue set the
	// field must equal it, otherwise it must be present.
	JSONField   string `json:"jsonField,omitempty" yaml:"jsonField,omitempty"`
	ExpectValue string `json:"expectValue,omitempty" yaml:"expectValue,omitempty"`
	// Interval between probes, FailureLimit consecutive failures that fail
	// the check, Timeout of one probe.
	Interval     Duration `json:"interval,omitempty" yaml:"interval,omitempty"`
	FailureLimit int      `json:"failureLimit,omitempty" yaml:"failureLimit,omitempty"`
	Timeout      Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`
	// Successes is how many passing probes in a row make the check pass
	// after readiness; 1 by default.
	Successes          int  `json:"successes,omitempty" yaml:"successes,omitempty"`
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty" yaml:"insecureSkipVerify,omitempty"`
}

// Readiness bounds the wait for a region's workloads after the Helm upgrade.
type Readiness struct {
	Timeout Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`
}

// RollbackPolicy says what happens to regions already changed when a
// release fails.
type RollbackPolicy string

const (
	// RollbackAuto rolls back every region the release changed.
	RollbackAuto RollbackPolicy = "auto"
	// RollbackFailed rolls back only the region that failed.
	RollbackFailed RollbackPolicy = "failed-region"
	// RollbackNone leaves regions as they are for a person to decide.
	RollbackNone RollbackPolicy = "none"
)

// FailedInstall says what happens to a region whose first install failed:
// there is no earlier revision to roll back to.
type FailedInstall string

const (
	// FailedInstallUninstall removes the failed release (its history is kept).
	FailedInstallUninstall FailedInstall = "uninstall"
	// FailedInstallKeep leaves it for a person to look at.
	FailedInstallKeep FailedInstall = "keep"
)

// DefaultRollbackDeadline is how long a rollback is retried when the file
// does not say: long enough to ride out an API server outage, short enough
// that a region that cannot be reached ends the release with an error.
const DefaultRollbackDeadline = time.Hour

// Rollback is the release's rollback policy.
type Rollback struct {
	Policy RollbackPolicy `json:"policy,omitempty" yaml:"policy,omitempty"`
	// Deadline bounds how long a region's rollback is retried.
	Deadline Duration `json:"deadline,omitempty" yaml:"deadline,omitempty"`
	// FailedInstall is uninstall (the default) or keep.
	FailedInstall FailedInstall `json:"failedInstall,omitempty" yaml:"failedInstall,omitempty"`
}

// Notify names where a release reports its progress.
type Notify struct {
	Slack *SlackNotify `json:"slack,omitempty" yaml:"slack,omitempty"`
}

// SlackNotify is the Slack channel of a release.
type SlackNotify struct {
	Channel string `json:"channel" yaml:"channel"`
}

// Duration is a time.Duration written as a Go duration string ("90s", "5m").
type Duration struct{ time.Duration }

// MarshalJSON writes the duration as a Go duration string, so specs in
// workflow histories read like the files they came from.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(`"` + d.Duration.String() + `"`), nil
}

// UnmarshalJSON reads a Go duration string or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	s := string(b)
	if len(s) >= 2 && s[0] == '"' {
		v, err := time.ParseDuration(s[1 : len(s)-1])
		if err != nil {
			return err
		}
		d.Duration = v
		return nil
	}
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			return &time.ParseError{Layout: "duration", Value: s}
		}
		n = n*10 + int64(c-'0')
	}
	d.Duration = time.Duration(n)
	return nil
}

// MarshalYAML writes the duration as a Go duration string, so a completed
// spec written back out loads again.
func (d Duration) MarshalYAML() (any, error) {
	return d.Duration.String(), nil
}

// UnmarshalYAML reads a Go duration string ("90s", "1h30m"). The loader
// reads durations itself, with the field's line in its messages; this is
// for other code that decodes release types with yaml.v3 directly.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: invalid duration %q (use Go durations such as \"90s\" or \"1h30m\")", n.Line, n.Value)
	}
	d.Duration = v
	return nil
}
