package release

import (
	"fmt"
	"sort"
	"strings"
	"text/template"
)

// validateProgressive checks strategies, traffic, analysis checks and
// failover, and that every region's strategy has what it needs.
func validateProgressive(s *Spec, ps *problems) {
	checks := validateAnalysis(s, ps)
	if s.Strategy != nil {
		validateStrategy(s.Strategy, "strategy", checks, ps)
	}
	if s.Traffic != nil {
		validateTraffic(s.Traffic, "traffic", ps)
	}
	for i, reg := range s.Regions {
		at := fmt.Sprintf("regions[%d]", i)
		if reg.Strategy != nil {
			validateStrategy(reg.Strategy, at+".strategy", checks, ps)
		}
		if reg.Traffic != nil {
			validateTraffic(reg.Traffic, at+".traffic", ps)
		}
		strategy, tr := s.Strategy, s.Traffic
		if reg.Strategy != nil {
			strategy = reg.Strategy
		}
		if reg.Traffic != nil {
			tr = reg.Traffic
		}
		if k := strategy.Kind(); (k == StrategyCanary || k == StrategyBlueGreen) && tr == nil {
			ps.add(at, "region %s has the %s strategy but no traffic: set traffic (route53 or elbv2) for the application or the region", reg.Name, k)
		}
	}
	if s.Failover != nil {
		validateFailover(s, checks, ps)
	}
}

func validateStrategy(st *Strategy, at string, checks map[string]bool, ps *problems) {
	n := 0
	for _, set := range []bool{st.Canary != nil, st.BlueGreen != nil, st.Rolling != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		ps.add(at, "set exactly one of canary, blueGreen and rolling (found %d)", n)
		return
	}
	switch {
	case st.Canary != nil:
		c := st.Canary
		if len(c.Steps) == 0 {
			ps.add(at+".canary.steps", "required field is missing (for example: - setWeight: 10, - pause: {duration: 1m}, - analysis: {checks: [errors]})")
		}
		last := 0
		for i, step := range c.Steps {
			sat := fmt.Sprintf("%s.canary.steps[%d]", at, i)
			set := 0
			for _, b := range []bool{step.SetWeight != nil, step.Pause != nil, step.Analysis != nil} {
				if b {
					set++
				}
			}
			if set != 1 {
				ps.add(sat, "a step sets exactly one of setWeight, pause and analysis (found %d)", set)
				continue
			}
			switch {
			case step.SetWeight != nil:
				w := *step.SetWeight
				if w < 0 || w > 100 {
					ps.add(sat+".setWeight", "%d is not a percentage (0 to 100)", w)
				} else if w < last {
					ps.add(sat+".setWeight", "%d is below the weight of an earlier step (%d): a canary only grows; a rollback is automatic", w, last)
				} else {
					last = w
				}
			case step.Pause != nil:
				if step.Pause.Duration.Duration < 0 {
					ps.add(sat+".pause.duration", "must not be negative")
				}
			case step.Analysis != nil:
				validateAnalysisStep(step.Analysis, sat+".analysis", checks, ps)
			}
		}
	case st.BlueGreen != nil:
		bg := st.BlueGreen
		if bg.PrePromotion != nil {
			validateAnalysisStep(bg.PrePromotion, at+".blueGreen.prePromotionAnalysis", checks, ps)
		}
		if bg.PostPromotion != nil {
			validateAnalysisStep(bg.PostPromotion, at+".blueGreen.postPromotionAnalysis", checks, ps)
		}
		if bg.ScaleDownDelay.Duration < 0 {
			ps.add(at+".blueGreen.scaleDownDelay", "must not be negative")
		}
	case st.Rolling != nil:
		ro := st.Rolling
		for _, f := range []struct {
			name string
			v    int
		}{{"maxSurge", ro.MaxSurge}, {"maxUnavailable", ro.MaxUnavailable}, {"batchSize", ro.BatchSize}} {
			if f.v < 0 {
				ps.add(at+".rolling."+f.name, "must not be negative")
			}
		}
		switch {
		case ro.MaxSurge == 0 && ro.MaxUnavailable == 0 && ro.BatchSize == 0:
			ps.add(at+".rolling", "set batchSize, or maxSurge and maxUnavailable (a rollout with neither could never replace a pod)")
		case ro.BatchSize > 0 && (ro.MaxSurge > 0 || ro.MaxUnavailable > 0) && ro.BatchSize != ro.MaxSurge+ro.MaxUnavailable:
			ps.add(at+".rolling.batchSize", "%d differs from maxSurge + maxUnavailable (%d): Kubernetes replaces that many pods at a time; set one or the other", ro.BatchSize, ro.MaxSurge+ro.MaxUnavailable)
		}
		if ro.BatchPause.Duration < 0 {
			ps.add(at+".rolling.batchPause", "must not be negative")
		}
		if ro.Analysis != nil {
			validateAnalysisStep(ro.Analysis, at+".rolling.analysis", checks, ps)
		}
	}
}

func validateAnalysisStep(a *AnalysisStep, at string, checks map[string]bool, ps *problems) {
	if len(a.Checks) == 0 {
		ps.add(at+".checks", "required field is missing (names of checks in the file's analysis list)")
	}
	for i, name := range a.Checks {
		if !checks[name] {
			ps.add(fmt.Sprintf("%s.checks[%d]", at, i), "no analysis check named %q%s", name, suggest(name, sortedSet(checks)))
		}
	}
	if a.Duration.Duration < 0 {
		ps.add(at+".duration", "must not be negative")
	}
}

func validateTraffic(t *Traffic, at string, ps *problems) {
	switch {
	case t.Route53 != nil && t.ELBv2 != nil, t.Route53 == nil && t.ELBv2 == nil:
		ps.add(at, "set exactly one of route53 and elbv2")
	case t.Route53 != nil:
		r := t.Route53
		validateZone(r.HostedZoneID, r.HostedZone, r.Record, r.Type, r.TTL, at+".route53", ps)
		for _, side := range []struct {
			name string
			rec  WeightedRecord
		}{{"stable", r.Stable}, {"canary", r.Canary}} {
			if side.rec.SetIdentifier == "" {
				ps.add(at+".route53."+side.name+".setIdentifier", "required field is missing")
			}
			if side.rec.Value == "" {
				ps.add(at+".route53."+side.name+".value", "required field is missing")
			}
		}
		if r.Stable.SetIdentifier != "" && r.Stable.SetIdentifier == r.Canary.SetIdentifier {
			ps.add(at+".route53.canary.setIdentifier", "must differ from the stable record's (%q)", r.Stable.SetIdentifier)
		}
	case t.ELBv2 != nil:
		e := t.ELBv2
		if (e.ListenerARN == "") == (e.RuleARN == "") {
			ps.add(at+".elbv2", "set exactly one of listenerArn and ruleArn")
		}
		if e.StableTargetGroup == "" {
			ps.add(at+".elbv2.stableTargetGroupArn", "required field is missing")
		}
		if e.CanaryTargetGroup == "" {
			ps.add(at+".elbv2.canaryTargetGroupArn", "required field is missing")
		}
	}
}

func validateZone(id, name, record, typ string, ttl int, at string, ps *problems) {
	if id == "" && name == "" {
		ps.add(at, "set hostedZoneId, or hostedZone (the zone's name)")
	}
	if record == "" {
		ps.add(at+".record", "required field is missing")
	}
	switch typ {
	case "", "CNAME", "A", "AAAA":
	default:
		ps.add(at+".type", "unsupported record type %q (CNAME, A or AAAA)", typ)
	}
	if ttl < 0 {
		ps.add(at+".ttl", "must not be negative")
	}
}

// validateAnalysis checks the file's analysis list and returns its names.
func validateAnalysis(s *Spec, ps *problems) map[string]bool {
	names := map[string]bool{}
	first := map[string]int{}
	for i, c := range s.Analysis {
		at := fmt.Sprintf("analysis[%d]", i)
		if c.Name == "" {
			ps.add(at+".name", "required field is missing")
		} else if j, dup := first[c.Name]; dup {
			ps.add(at+".name", "duplicate analysis check %q (also analysis[%d])", c.Name, j)
		} else {
			first[c.Name] = i
			names[c.Name] = true
		}
		n := 0
		for _, set := range []bool{c.HTTP != nil, c.Prometheus != nil, c.CloudWatch != nil} {
			if set {
				n++
			}
		}
		if n != 1 {
			ps.add(at, "set exactly one of http, prometheus and cloudwatch (found %d)", n)
		}
		if c.Interval.Duration < 0 {
			ps.add(at+".interval", "must not be negative")
		}
		if c.FailureLimit < 0 {
			ps.add(at+".failureLimit", "must not be negative")
		}
		if c.MinSamples < 0 {
			ps.add(at+".minSamples", "must not be negative")
		}
		switch c.NoData {
		case "", NoDataFail, NoDataPass, NoDataInconclusive:
		default:
			ps.add(at+".noData", "unknown rule %q (fail, pass or inconclusive)", c.NoData)
		}
		switch c.Compare {
		case CompareNone, CompareRatio, CompareDifference:
		default:
			ps.add(at+".compare", "unknown comparison %q (ratio or difference)", c.Compare)
		}
		if c.Max != nil && c.Min != nil && *c.Min > *c.Max {
			ps.add(at+".min", "%g is above max %g", *c.Min, *c.Max)
		}
		bounded := c.Max != nil || c.Min != nil
		switch {
		case c.HTTP != nil:
			h := c.HTTP
			if h.URL == "" {
				ps.add(at+".http.url", "required field is missing")
			} else {
				checkTemplate(h.URL, at+".http.url", ps)
			}
			if h.ExpectStatus != 0 && (h.ExpectStatus < 100 || h.ExpectStatus > 599) {
				ps.add(at+".http.expectStatus", "%d is not an HTTP status (100 to 599)", h.ExpectStatus)
			}
			if h.ExpectValue != "" && h.JSONField == "" {
				ps.add(at+".http.expectValue", "needs jsonField")
			}
			if c.Compare != CompareNone && (h.JSONField == "" || h.ExpectValue != "") {
				ps.add(at+".compare", "an HTTP check compares a number: set jsonField (without expectValue)")
			}
		case c.Prometheus != nil:
			p := c.Prometheus
			if p.Address == "" {
				ps.add(at+".prometheus.address", "required field is missing (for example http://127.0.0.1:9090)")
			}
			if p.Query == "" {
				ps.add(at+".prometheus.query", "required field is missing")
			} else {
				checkTemplate(p.Query, at+".prometheus.query", ps)
			}
			if p.Range.Duration < 0 || p.Step.Duration < 0 {
				ps.add(at+".prometheus.range", "must not be negative")
			}
			if !bounded {
				ps.add(at, "a prometheus check needs max or min: the threshold its value is judged by")
			}
		case c.CloudWatch != nil:
			cw := c.CloudWatch
			metric := cw.Namespace != "" || cw.Metric != ""
			switch {
			case cw.Alarm != "" && metric:
				ps.add(at+".cloudwatch", "set alarm, or namespace and metric, not both")
			case cw.Alarm == "" && !metric:
				ps.add(at+".cloudwatch", "set alarm, or namespace and metric")
			case metric && (cw.Namespace == "" || cw.Metric == ""):
				ps.add(at+".cloudwatch", "a metric needs both namespace and metric")
			case metric && !bounded:
				ps.add(at, "a cloudwatch metric check needs max or min")
			case cw.Alarm != "" && c.Compare != CompareNone:
				ps.add(at+".compare", "an alarm has a state, not a number to compare")
			}
		}
	}
	return names
}

func validateFailover(s *Spec, checks map[string]bool, ps *problems) {
	f := s.Failover
	validateZone(f.HostedZoneID, f.HostedZone, f.Record, f.Type, f.TTL, "failover", ps)
	if f.Check == "" {
		ps.add("failover.check", "required field is missing (the analysis check that judges a region's health)")
	} else if !checks[f.Check] {
		ps.add("failover.check", "no analysis check named %q%s", f.Check, suggest(f.Check, sortedSet(checks)))
	} else {
		for _, c := range s.Analysis {
			if c.Name == f.Check && c.Compare != CompareNone {
				// A finished region runs one version: there is no
				// second side to compare it with.
				ps.add("failover.check", "check %q compares two sides (compare: %s); a finished region has one, so its health check needs an absolute max or min", f.Check, c.Compare)
			}
		}
	}
	known := map[string]bool{}
	for _, r := range s.Regions {
		known[r.Name] = true
	}
	seen := map[string]bool{}
	for i, r := range f.Regions {
		at := fmt.Sprintf("failover.regions[%d]", i)
		switch {
		case r.Region == "":
			ps.add(at+".region", "required field is missing")
		case !known[r.Region]:
			ps.add(at+".region", "unknown region %q", r.Region)
		case seen[r.Region]:
			ps.add(at+".region", "region %q is listed twice", r.Region)
		}
		seen[r.Region] = true
		if r.SetIdentifier == "" {
			ps.add(at+".setIdentifier", "required field is missing")
		}
		if r.Value == "" {
			ps.add(at+".value", "required field is missing")
		}
		if r.Weight < 0 || r.Weight > 255 {
			ps.add(at+".weight", "%d is not a Route 53 weight (0 to 255)", r.Weight)
		}
	}
	if len(f.Regions) < 2 {
		ps.add("failover.regions", "failover needs at least two regions to move traffic between")
	}
}

// checkTemplate parses a query or URL template so that a typo is found
// when the file is loaded, not in the middle of a canary.
func checkTemplate(text, at string, ps *problems) {
	if _, err := template.New(at).Option("missingkey=error").Parse(text); err != nil {
		ps.add(at, "bad template: %s", strings.TrimPrefix(err.Error(), "template: "+at+":"))
	}
}

func sortedSet(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
