package helm

import (
	"bytes"
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"
)

// RollingUpdate is the rolling update Keelson sets on every Deployment of a
// release with the rolling strategy: Kubernetes' own controller replaces
// the pods, at most MaxSurge above and MaxUnavailable below the desired
// count, each new pod ready for MinReadySeconds before the next batch.
type RollingUpdate struct {
	MaxSurge        int `json:"maxSurge"`
	MaxUnavailable  int `json:"maxUnavailable"`
	MinReadySeconds int `json:"minReadySeconds,omitempty"`
}

// Run is Helm's post-renderer: it rewrites the strategy of each Deployment
// in the rendered manifests and leaves every other object as it was. It
// goes through the manifests rather than the values because charts name
// their strategy values differently, when they have any.
func (u *RollingUpdate) Run(rendered *bytes.Buffer) (*bytes.Buffer, error) {
	out := &bytes.Buffer{}
	for i, doc := range splitManifests(rendered.String()) {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			return nil, fmt.Errorf("rolling update: read manifest %d: %w", i+1, err)
		}
		if obj["kind"] == "Deployment" {
			spec, _ := obj["spec"].(map[string]any)
			if spec == nil {
				spec = map[string]any{}
				obj["spec"] = spec
			}
			spec["strategy"] = map[string]any{
				"type": "RollingUpdate",
				"rollingUpdate": map[string]any{
					"maxSurge":       u.MaxSurge,
					"maxUnavailable": u.MaxUnavailable,
				},
			}
			if u.MinReadySeconds > 0 {
				spec["minReadySeconds"] = u.MinReadySeconds
			}
			b, err := yaml.Marshal(obj)
			if err != nil {
				return nil, fmt.Errorf("rolling update: write manifest %d: %w", i+1, err)
			}
			doc = string(b)
		}
		out.WriteString("---\n")
		out.WriteString(strings.TrimSpace(doc))
		out.WriteString("\n")
	}
	return out, nil
}

// splitManifests splits a multi-document YAML stream at its "---" lines.
func splitManifests(s string) []string {
	var docs []string
	var cur strings.Builder
	for _, line := range strings.SplitAfter(s, "\n") {
		if t := strings.TrimRight(line, "\r\n"); t == "---" || strings.HasPrefix(t, "--- ") {
			docs = append(docs, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteString(line)
	}
	return append(docs, cur.String())
}
