package release

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Defaults applied to a valid file; the reference (docs/release-file.md)
// lists the same values.
const (
	DefaultVersionValue   = "version"
	DefaultOutputsValue   = "terraform"
	DefaultGateTimeout    = 24 * time.Hour
	DefaultHealthInterval = 5 * time.Second
	DefaultHealthTimeout  = 5 * time.Second
	DefaultFailureLimit   = 3
	DefaultExpectStatus   = 200
	DefaultSuccesses      = 1
	DefaultReadiness      = 5 * time.Minute
	// GateNamePrefix names a gate without a name after its wave.
	GateNamePrefix = "before-"
)

// maxNameLen is Helm's limit on release names (53, so that generated
// object names stay within Kubernetes' 63); the application name is the
// Helm release name by default, so it is held to it too.
const maxNameLen = 53

var (
	dnsLabel     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	helmRelease  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	versionChars = regexp.MustCompile(`^[A-Za-z0-9._+-]+$`)
)

// ValidateVersion checks a release version as given to `keelson release
// start --version`: it goes into workflow ids, Helm values and search
// attributes, so it is kept to a safe alphabet.
func ValidateVersion(v string) error {
	switch {
	case v == "":
		return errors.New("version is empty")
	case strings.ContainsAny(v, " \t\r\n"):
		return fmt.Errorf("version %q contains spaces", v)
	case len(v) > 63:
		return fmt.Errorf("version %q is longer than 63 characters", v)
	case !versionChars.MatchString(v):
		return fmt.Errorf("version %q may only contain letters, digits, '.', '_', '+' and '-'", v)
	}
	return nil
}

// Validate checks a Spec that did not come straight from Load, such as one
// received in a workflow input. It checks everything Parse checks except
// what needs the file: unknown keys, lines, and that folders exist.
func (s *Spec) Validate() error {
	ps := validate(s)
	if len(ps) == 0 {
		return nil
	}
	errs := &Errors{}
	for _, p := range ps {
		errs.List = append(errs.List, Error{File: s.Source, Field: p.field, Message: p.msg})
	}
	return errs
}

// validate finds every problem of a decoded spec. It reads the spec as
// written: unset fields count as their defaults.
func validate(s *Spec) problems {
	var ps problems
	if s.Kind != Kind {
		if s.Kind == "" {
			ps.add("kind", "required field is missing (kind: %s)", Kind)
		} else {
			ps.add("kind", "unknown kind %q (a release file holds kind: %s)", s.Kind, Kind)
		}
	}
	if s.Application == "" {
		ps.add("application", "required field is missing")
	} else if msg := checkName(s.Application, maxNameLen, dnsLabel); msg != "" {
		ps.add("application", "%s; the application name becomes the Helm release name and part of workflow ids", msg)
	}

	switch c := s.Chart; {
	case c.Path != "" && c.Repository != "":
		ps.add("chart.repository", "give either chart.path or chart.repository with chart.name and chart.version, not both")
	case c.Path == "" && c.Repository == "":
		ps.add("chart.path", "required field is missing (or chart.repository, chart.name and chart.version)")
	case c.Repository != "":
		if u, err := url.Parse(c.Repository); err != nil || (u.Scheme != "https" && u.Scheme != "http" && u.Scheme != "oci") || u.Host == "" {
			ps.add("chart.repository", "%q is not a Helm repository URL (https://…) or OCI reference (oci://…)", c.Repository)
		} else if u.User != nil {
			ps.add("chart.repository", "credentials do not belong in the release file: use Helm's registry login or repository configuration")
		}
		if c.Name == "" {
			ps.add("chart.name", "required with chart.repository")
		}
		if c.Version == "" {
			ps.add("chart.version", "required with chart.repository: an exact chart version, so that every start fetches the same chart")
		} else if strings.ContainsAny(c.Version, "^~><=*| ") {
			ps.add("chart.version", "%q is a range; give an exact chart version", c.Version)
		}
	case c.Name != "" || c.Version != "":
		ps.add("chart.name", "chart.name and chart.version go with chart.repository; a local chart has only chart.path")
	}
	if s.Chart.Release != "" {
		if msg := checkName(s.Chart.Release, maxNameLen, helmRelease); msg != "" {
			ps.add("chart.release", "invalid Helm release name: %s", msg)
		}
	}
	if s.Terraform != nil && s.Terraform.Path == "" {
		ps.add("terraform.path", "required field is missing")
	}

	validateAllValuesFrom(s, &ps)
	regionIndex := validateRegions(s, &ps)
	validateWaves(s, regionIndex, &ps)
	validateHealth(s, &ps)
	validateProgressive(s, &ps)

	if s.Readiness.Timeout.Duration < 0 {
		ps.add("readiness.timeout", "must not be negative")
	}
	switch s.Rollback.Policy {
	case "", RollbackAuto, RollbackFailed, RollbackNone:
	default:
		ps.add("rollback.policy", "unknown policy %q (policies: %s, %s, %s)", s.Rollback.Policy, RollbackAuto, RollbackFailed, RollbackNone)
	}
	if s.Rollback.Deadline.Duration < 0 {
		ps.add("rollback.deadline", "must not be negative")
	}
	switch s.Rollback.FailedInstall {
	case "", FailedInstallUninstall, FailedInstallKeep:
	default:
		ps.add("rollback.failedInstall", "unknown value %q (values: %s, %s)", s.Rollback.FailedInstall, FailedInstallUninstall, FailedInstallKeep)
	}
	if s.Notify != nil && s.Notify.Slack != nil && s.Notify.Slack.Channel == "" {
		ps.add("notify.slack.channel", "required field is missing")
	}
	return ps
}

func checkName(name string, maxLen int, re *regexp.Regexp) string {
	if len(name) > maxLen {
		return fmt.Sprintf("%q is longer than %d characters", name, maxLen)
	}
	if !re.MatchString(name) {
		return fmt.Sprintf("%q is not a DNS label (lower-case letters, digits and '-', starting and ending with a letter or digit)", name)
	}
	return ""
}

// validateRegions returns the index of each region name.
func validateRegions(s *Spec, ps *problems) map[string]int {
	index := map[string]int{}
	if len(s.Regions) == 0 {
		ps.add("regions", "required field is missing: list at least one region")
	}
	for i, r := range s.Regions {
		at := fmt.Sprintf("regions[%d]", i)
		switch {
		case r.Name == "":
			ps.add(at+".name", "required field is missing")
		case strings.ContainsAny(r.Name, " \t\r\n/"):
			ps.add(at+".name", "region name %q may not contain spaces or '/'", r.Name)
		default:
			if first, dup := index[r.Name]; dup {
				ps.add(at+".name", "duplicate region %q (also regions[%d])", r.Name, first)
			} else {
				index[r.Name] = i
			}
		}
		if r.KubeContext == "" {
			ps.add(at+".kubeContext", "required field is missing")
		}
		if r.Namespace == "" {
			ps.add(at+".namespace", "required field is missing")
		} else if msg := checkName(r.Namespace, 63, dnsLabel); msg != "" {
			ps.add(at+".namespace", "invalid Kubernetes namespace: %s", msg)
		}
		zone := r.TimeZone
		if zone == "" {
			zone = s.TimeZone
		}
		if r.TimeZone != "" || len(r.Windows) > 0 || len(r.Freezes) > 0 {
			validateDeployPolicy(at, zone, r.Windows, r.Freezes, ps)
		}
	}
	if s.TimeZone != "" || len(s.Windows) > 0 || len(s.Freezes) > 0 {
		validateDeployPolicy("", s.TimeZone, s.Windows, s.Freezes, ps)
	}
	switch s.OnWindowClose {
	case "", WindowCloseHold, WindowCloseFinish:
	default:
		ps.add("onWindowClose", "unknown value %q (values: %s, %s)", s.OnWindowClose, WindowCloseHold, WindowCloseFinish)
	}
	return index
}

func validateWaves(s *Spec, regionIndex map[string]int, ps *problems) {
	if len(s.Waves) == 0 {
		ps.add("waves", "required field is missing: list at least one wave")
	}
	known := make([]string, 0, len(s.Regions))
	for _, r := range s.Regions {
		if r.Name != "" {
			known = append(known, r.Name)
		}
	}
	waveOf := map[string]string{}
	waveNames := map[string]int{}
	gateNames := map[string]string{}
	for i, w := range s.Waves {
		at := fmt.Sprintf("waves[%d]", i)
		if w.Name == "" {
			ps.add(at+".name", "required field is missing")
		} else if first, dup := waveNames[w.Name]; dup {
			ps.add(at+".name", "duplicate wave %q (also waves[%d])", w.Name, first)
		} else {
			waveNames[w.Name] = i
		}
		if len(w.Regions) == 0 {
			ps.add(at+".regions", "empty wave: list at least one region")
		}
		for j, name := range w.Regions {
			rat := fmt.Sprintf("%s.regions[%d]", at, j)
			if _, ok := regionIndex[name]; !ok {
				if len(known) == 0 {
					continue // "regions" is reported missing; one message is enough
				}
				ps.add(rat, "unknown region %q (regions: %s)", name, strings.Join(known, ", "))
				continue
			}
			if other, ok := waveOf[name]; ok {
				if other == w.Name {
					ps.add(rat, "region %q is listed twice in this wave", name)
				} else {
					ps.add(rat, "region %q is already in wave %q: a region belongs to one wave", name, other)
				}
				continue
			}
			waveOf[name] = w.Name
		}
		if w.Parallelism < 0 {
			ps.add(at+".parallelism", "must not be negative (0 means all the wave's regions at once)")
		}
		if w.Bake.Duration < 0 {
			ps.add(at+".bake", "must not be negative")
		}
		if w.Gate != nil {
			validateGate(w.Gate, at+".gate", ps)
			name := w.Gate.Name
			if name == "" && w.Name != "" {
				name = GateNamePrefix + w.Name
			}
			if name != "" {
				if other, dup := gateNames[name]; dup {
					ps.add(at+".gate.name", "duplicate gate name %q (also the gate of wave %q); approvals name gates, so names must differ", name, other)
				} else {
					gateNames[name] = w.Name
				}
			}
		}
	}
	for i, r := range s.Regions {
		// With no waves at all, "waves" is reported missing; one message is enough.
		if _, ok := waveOf[r.Name]; r.Name != "" && !ok && len(s.Waves) > 0 {
			ps.add(fmt.Sprintf("regions[%d].name", i), "region %q is in no wave: add it to a wave or remove it", r.Name)
		}
	}
}

func validateGate(g *Gate, at string, ps *problems) {
	switch g.When {
	case "", GateAlways, GateChanges, GateDestroys:
	default:
		ps.add(at+".when", "unknown value %q (values: %s, %s, %s)", g.When, GateAlways, GateChanges, GateDestroys)
	}
	timeout := g.Timeout.Duration
	if timeout < 0 {
		ps.add(at+".timeout", "must not be negative")
	}
	if timeout <= 0 {
		timeout = DefaultGateTimeout
	}
	switch g.OnTimeout {
	case "", TimeoutReject:
		if g.Escalation != nil {
			ps.add(at+".escalation", "escalation is only used with onTimeout: %s", TimeoutEscalate)
		}
	case TimeoutEscalate:
		if g.Escalation == nil {
			ps.add(at+".escalation", "required when onTimeout is %s: give mention and extend", TimeoutEscalate)
		}
	default:
		ps.add(at+".onTimeout", "unknown value %q (values: %s, %s)", g.OnTimeout, TimeoutReject, TimeoutEscalate)
	}
	if e := g.Escalation; e != nil {
		if e.Mention == "" {
			ps.add(at+".escalation.mention", "required field is missing")
		}
		if e.Extend.Duration <= 0 {
			ps.add(at+".escalation.extend", "must be longer than 0 (how much longer the gate stays open)")
		}
	}
	if g.Approvals < 0 {
		ps.add(at+".approvals", "must not be negative (how many distinct people must approve; 1 by default)")
	}
	if n := len(g.Approvers); n > 0 && len(g.ApproverGroups) == 0 && g.Approvals > n {
		ps.add(at+".approvals", "%d approvals needed but only %d approvers listed: the gate could never open", g.Approvals, n)
	}
	for i, r := range g.Reminders {
		rat := fmt.Sprintf("%s.reminders[%d]", at, i)
		switch {
		case r.Duration <= 0:
			ps.add(rat, "must be longer than 0 (reminders are sent this long before the timeout)")
		case r.Duration >= timeout:
			ps.add(rat, "reminder %s before the timeout is not shorter than the timeout %s", r.Duration, timeout)
		}
	}
}

func validateHealth(s *Spec, ps *problems) {
	names := map[string]int{}
	for i, h := range s.Health {
		at := fmt.Sprintf("health[%d]", i)
		if h.Name == "" {
			ps.add(at+".name", "required field is missing")
		} else if first, dup := names[h.Name]; dup {
			ps.add(at+".name", "duplicate health check %q (also health[%d])", h.Name, first)
		} else {
			names[h.Name] = i
		}
		if h.URL == "" {
			ps.add(at+".url", "required field is missing")
		} else {
			// Render once per region: the region name is part of many URLs.
			regions := []string{"region"}
			if len(s.Regions) > 0 {
				regions = regions[:0]
				for _, r := range s.Regions {
					regions = append(regions, r.Name)
				}
			}
			for _, r := range regions {
				if err := validateURL(h.URL, r); err != nil {
					ps.add(at+".url", "%v", err)
					break
				}
			}
		}
		if h.ExpectStatus != 0 && (h.ExpectStatus < 100 || h.ExpectStatus > 599) {
			ps.add(at+".expectStatus", "%d is not an HTTP status (100 to 599)", h.ExpectStatus)
		}
		if h.ExpectValue != "" && h.JSONField == "" {
			ps.add(at+".expectValue", "needs jsonField: the value is compared with that field of the JSON body")
		}
		if h.JSONField != "" && strings.Contains("."+h.JSONField+".", "..") {
			ps.add(at+".jsonField", "%q is not a dotted path such as status.ready", h.JSONField)
		}
		for _, d := range []struct {
			field string
			v     Duration
		}{{"interval", h.Interval}, {"timeout", h.Timeout}} {
			if d.v.Duration < 0 {
				ps.add(at+"."+d.field, "must not be negative")
			}
		}
		if h.FailureLimit < 0 {
			ps.add(at+".failureLimit", "must not be negative")
		}
		if h.Successes < 0 {
			ps.add(at+".successes", "must not be negative")
		}
	}
}
