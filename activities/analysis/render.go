package analysis

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"text/template"

	"github.com/keelson-dev/keelson/release"
)

// Sides of a release that checks measure.
const (
	SideCanary  = "canary"
	SideStable  = "stable"
	SidePreview = "preview"
)

// templateData is what queries, URLs, alarm names and dimensions see.
type templateData struct {
	Application   string
	Region        string
	Version       string // of the side measured
	Side          string
	StableVersion string
	CanaryVersion string
}

// target is a check rendered for one side: a copy of its provider's
// settings with every template replaced by its text.
type target struct {
	side       string
	http       *release.HTTPAnalysis
	prometheus *release.PrometheusAnalysis
	cloudwatch *release.CloudWatchAnalysis
}

// prepared is a check ready to sample: its targets are the measured side,
// or the new side then the stable side when it compares.
type prepared struct {
	check   release.AnalysisCheck // with defaults
	targets []target
}

// validate says what is wrong with a check before anything is measured.
// These are mistakes in the release file, which retrying cannot fix.
func validate(c release.AnalysisCheck) error {
	if c.Name == "" {
		return errors.New("a check has no name")
	}
	n := 0
	for _, set := range []bool{c.HTTP != nil, c.Prometheus != nil, c.CloudWatch != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("check %s: exactly one of http, prometheus and cloudwatch must be set, not %d", c.Name, n)
	}
	switch c.Compare {
	case release.CompareNone, release.CompareRatio, release.CompareDifference:
	default:
		return fmt.Errorf("check %s: compare is ratio or difference, not %q", c.Name, c.Compare)
	}
	switch c.NoData {
	case "", release.NoDataFail, release.NoDataPass, release.NoDataInconclusive:
	default:
		return fmt.Errorf("check %s: noData is fail, pass or inconclusive, not %q", c.Name, c.NoData)
	}
	if c.Interval.Duration < 0 || c.FailureLimit < 0 || c.MinSamples < 0 {
		return fmt.Errorf("check %s: interval, failureLimit and minSamples cannot be negative", c.Name)
	}
	if c.Max != nil && c.Min != nil && *c.Min > *c.Max {
		return fmt.Errorf("check %s: min %s is above max %s", c.Name, fmtNum(*c.Min), fmtNum(*c.Max))
	}
	numbered := true // whether the check's samples have a number to judge
	switch {
	case c.HTTP != nil:
		if c.HTTP.URL == "" {
			return fmt.Errorf("check %s: http has no url", c.Name)
		}
		if c.HTTP.MaxLatency.Duration < 0 || c.HTTP.Timeout.Duration < 0 {
			return fmt.Errorf("check %s: maxLatency and timeout cannot be negative", c.Name)
		}
		numbered = c.HTTP.JSONField != "" && c.HTTP.ExpectValue == ""
	case c.Prometheus != nil:
		p := c.Prometheus
		if p.Address == "" || p.Query == "" {
			return fmt.Errorf("check %s: prometheus needs an address and a query", c.Name)
		}
		if p.Range.Duration < 0 || p.Step.Duration < 0 {
			return fmt.Errorf("check %s: range and step cannot be negative", c.Name)
		}
	case c.CloudWatch != nil:
		cw := c.CloudWatch
		metric := cw.Namespace != "" || cw.Metric != ""
		if (cw.Alarm != "") == metric {
			return fmt.Errorf("check %s: cloudwatch reads an alarm or a metric (namespace and metric): one of them", c.Name)
		}
		if metric && (cw.Namespace == "" || cw.Metric == "") {
			return fmt.Errorf("check %s: cloudwatch needs both a namespace and a metric", c.Name)
		}
		if cw.Period.Duration < 0 || cw.Window.Duration < 0 {
			return fmt.Errorf("check %s: period and window cannot be negative", c.Name)
		}
		numbered = metric
	}
	if !numbered && (c.Compare != release.CompareNone || c.Max != nil || c.Min != nil) {
		return fmt.Errorf("check %s: compare, max and min need a number, which this check does not give "+
			"(an alarm's state, or http without jsonField or with expectValue)", c.Name)
	}
	return nil
}

// prepare validates the checks and renders them for the sides they
// measure.
func prepare(in RunInput) ([]prepared, error) {
	side := in.Side
	if side == "" {
		side = SideCanary
	}
	if side != SideCanary && side != SideStable && side != SidePreview {
		return nil, fmt.Errorf("side is canary, stable or preview, not %q", in.Side)
	}
	seen := map[string]bool{}
	out := make([]prepared, 0, len(in.Checks))
	for _, c := range in.Checks {
		if err := validate(c); err != nil {
			return nil, err
		}
		if seen[c.Name] {
			return nil, fmt.Errorf("check %s is listed twice", c.Name)
		}
		seen[c.Name] = true
		p := prepared{check: withDefaults(c)}
		sides := []string{side}
		if c.Compare != release.CompareNone {
			// The new side against the stable one, whatever side is
			// measured otherwise: a comparison of stable with itself would
			// say nothing.
			newSide := SideCanary
			if side == SidePreview {
				newSide = SidePreview
			}
			sides = []string{newSide, SideStable}
		}
		for _, s := range sides {
			t, err := render(c, in, s)
			if err != nil {
				return nil, fmt.Errorf("check %s (%s side): %w", c.Name, s, err)
			}
			p.targets = append(p.targets, t)
		}
		out = append(out, p)
	}
	return out, nil
}

func render(c release.AnalysisCheck, in RunInput, side string) (target, error) {
	data := templateData{
		Application: in.Application, Region: in.Region, Side: side,
		StableVersion: in.StableVersion, CanaryVersion: in.CanaryVersion,
		Version: in.CanaryVersion,
	}
	if side == SideStable {
		data.Version = in.StableVersion
	}
	var err error
	text := func(field, tmpl string) string {
		if err != nil || tmpl == "" {
			return tmpl
		}
		var s string
		s, err = renderText(field, tmpl, data)
		return s
	}
	t := target{side: side}
	switch {
	case c.HTTP != nil:
		h := *c.HTTP
		h.URL = text("url", h.URL)
		if err == nil {
			err = checkHTTPURL(h.URL)
		}
		t.http = &h
	case c.Prometheus != nil:
		p := *c.Prometheus
		p.Address = text("address", p.Address)
		p.Query = text("query", p.Query)
		t.prometheus = &p
	case c.CloudWatch != nil:
		cw := *c.CloudWatch
		cw.Alarm = text("alarm", cw.Alarm)
		cw.Namespace = text("namespace", cw.Namespace)
		cw.Metric = text("metric", cw.Metric)
		if cw.Dimensions != nil {
			dims := make(map[string]string, len(cw.Dimensions))
			for _, k := range slices.Sorted(maps.Keys(cw.Dimensions)) {
				dims[k] = text("dimension "+k, cw.Dimensions[k])
			}
			cw.Dimensions = dims
		}
		t.cloudwatch = &cw
	}
	return t, err
}

func renderText(field, tmpl string, data templateData) (string, error) {
	t, err := template.New(field).Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return "", fmt.Errorf("parse %s template %q: %w", field, tmpl, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return "", fmt.Errorf("render %s template %q: %w", field, tmpl, err)
	}
	return b.String(), nil
}

func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("invalid url %q: %w", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("url %q must be an http:// or https:// URL with a host", s)
	}
	return nil
}
