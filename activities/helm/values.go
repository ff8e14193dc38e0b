package helm

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/release"
)

const (
	defaultVersionValue = "version"
	defaultOutputsValue = "terraform"
	// versionValueLabel records, on the release's storage Secret, where the
	// version sits in the values, so History can read it back for
	// revisions made with a non-default VersionValue.
	versionValueLabel = "keelson.dev/version-value"
)

// composeValues merges BaseValues, RegionValues, SideValues (later wins, maps merged
// key by key), then sets Version at VersionValue and the Terraform outputs
// under OutputsValue. The result has gone through JSON, as the values of a
// stored release have, so that it compares equal to what Helm reads back.
func composeValues(in UpgradeInput) (map[string]any, error) {
	base, err := jsonCopy(in.BaseValues)
	if err != nil {
		return nil, fmt.Errorf("base values: %w", err)
	}
	region, err := jsonCopy(in.RegionValues)
	if err != nil {
		return nil, fmt.Errorf("region values: %w", err)
	}
	vals := deepMerge(base, region)
	if len(in.SideValues) > 0 {
		side, err := jsonCopy(in.SideValues)
		if err != nil {
			return nil, fmt.Errorf("side values: %w", err)
		}
		vals = deepMerge(vals, side)
	}

	if err := setPath(vals, orDefault(in.VersionValue, defaultVersionValue), in.Version); err != nil {
		return nil, fmt.Errorf("version value: %w", err)
	}
	if len(in.Outputs) > 0 {
		outputs, err := jsonCopy(in.Outputs)
		if err != nil {
			return nil, fmt.Errorf("outputs: %w", err)
		}
		key := orDefault(in.OutputsValue, defaultOutputsValue)
		// Merge into what the values already hold there, so a default in
		// BaseValues is only replaced where Terraform gives a value.
		if existing, ok := getPath(vals, key).(map[string]any); ok {
			outputs = deepMerge(existing, outputs)
		}
		if err := setPath(vals, key, outputs); err != nil {
			return nil, fmt.Errorf("outputs value: %w", err)
		}
	}
	return vals, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// jsonCopy deep-copies m through JSON (numbers become float64, as in a
// release read back from storage).
func jsonCopy(m map[string]any) (map[string]any, error) {
	out := map[string]any{}
	if len(m) == 0 {
		return out, nil
	}
	data, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// deepMerge merges src into dst: maps merge recursively, anything else in
// src replaces what dst has. dst is modified and returned.
func deepMerge(dst, src map[string]any) map[string]any {
	for k, sv := range src {
		if sm, ok := sv.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				dst[k] = deepMerge(dm, sm)
				continue
			}
		}
		dst[k] = sv
	}
	return dst
}

// splitKey splits a dotted key ("image.tag") and rejects empty segments.
func splitKey(key string) ([]string, error) {
	parts := strings.Split(key, ".")
	for _, p := range parts {
		if p == "" {
			return nil, fmt.Errorf("bad dotted key %q", key)
		}
	}
	return parts, nil
}

// setPath sets v at the dotted key, creating maps on the way and replacing
// any non-map in the way.
func setPath(m map[string]any, key string, v any) error {
	parts, err := splitKey(key)
	if err != nil {
		return err
	}
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[parts[len(parts)-1]] = v
	return nil
}

// getPath returns the value at the dotted key, or nil.
func getPath(m map[string]any, key string) any {
	parts, err := splitKey(key)
	if err != nil {
		return nil
	}
	var cur any = m
	for _, p := range parts {
		cm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = cm[p]
	}
	return cur
}

// content identifies what a revision deploys: the chart's name and version,
// a digest of the chart's own templates and default values (so that a chart
// edited without a version bump is not taken as already deployed), and the
// user-supplied values in canonical JSON.
type content struct {
	chartName    string
	chartVersion string
	chartDigest  string
	values       string
}

func contentOf(ch *chart.Chart, vals map[string]any) (content, error) {
	if ch == nil || ch.Metadata == nil {
		return content{}, fmt.Errorf("release has no chart")
	}
	if vals == nil {
		vals = map[string]any{}
	}
	// encoding/json sorts map keys: equal values give equal bytes, and
	// float64 3 and int 3 both print as 3.
	v, err := json.Marshal(vals)
	if err != nil {
		return content{}, fmt.Errorf("encode values: %w", err)
	}
	d, err := chartDigest(ch)
	if err != nil {
		return content{}, err
	}
	return content{
		chartName:    ch.Metadata.Name,
		chartVersion: ch.Metadata.Version,
		chartDigest:  d,
		values:       string(v),
	}, nil
}

func releaseContent(rel *release.Release) (content, error) {
	return contentOf(rel.Chart, rel.Config)
}

func chartDigest(ch *chart.Chart) (string, error) {
	h := sha256.New()
	templates := append([]*chart.File(nil), ch.Templates...)
	sort.Slice(templates, func(i, j int) bool { return templates[i].Name < templates[j].Name })
	for _, f := range templates {
		fmt.Fprintf(h, "%s\x00%d\x00", f.Name, len(f.Data))
		h.Write(f.Data)
	}
	defaults, err := json.Marshal(ch.Values)
	if err != nil {
		return "", fmt.Errorf("encode chart values: %w", err)
	}
	h.Write(defaults)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// versionOf reads the application version from a revision's values.
func versionOf(rel *release.Release) string {
	key := defaultVersionValue
	if k := rel.Labels[versionValueLabel]; k != "" {
		key = k
	}
	switch v := getPath(rel.Config, key).(type) {
	case nil:
		return ""
	case string:
		return v
	default:
		var b bytes.Buffer
		_ = json.NewEncoder(&b).Encode(v)
		return strings.TrimSpace(b.String())
	}
}
