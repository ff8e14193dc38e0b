package release

import (
	"fmt"
	"path"
	"regexp"
	"strings"
)

// ValueFrom is a chart value the worker reads when it renders the chart.
// The value itself is never in the Spec: it is read on the worker at the
// moment the Helm activity renders the chart, so it never enters the
// workflow's input or history. Secret values are also kept out of the
// activity's errors and logs.
type ValueFrom struct {
	Key    string `json:"key" yaml:"key"`                       // dotted values key, e.g. db.password
	Env    string `json:"env,omitempty" yaml:"env,omitempty"`   // an environment variable of the worker
	File   string `json:"file,omitempty" yaml:"file,omitempty"` // an absolute path on the worker (a mounted Secret)
	Secret bool   `json:"secret,omitempty" yaml:"secret,omitempty"`
}

// ValuesFromFor is the list the Helm activity resolves for region: the
// application's entries, each replaced by the region's entry of the same
// key, then the region's other entries, in the order written.
func (s *Spec) ValuesFromFor(region Region) []ValueFrom {
	return MergeValuesFrom(s.ValuesFrom, region.ValuesFrom)
}

// MergeValuesFrom is the application's list app with the region's entries
// replacing those of the same key, and the region's other entries after
// them. It is deterministic (workflows call it): the order comes from the
// lists, never from a map.
func MergeValuesFrom(app, region []ValueFrom) []ValueFrom {
	if len(app) == 0 && len(region) == 0 {
		return nil
	}
	out := make([]ValueFrom, 0, len(app)+len(region))
	used := make([]bool, len(region))
	for _, a := range app {
		for j, r := range region {
			if r.Key == a.Key {
				a, used[j] = r, true
				break
			}
		}
		out = append(out, a)
	}
	for j, r := range region {
		if !used[j] {
			out = append(out, r)
		}
	}
	return out
}

// EnvValuePrefix starts the name of every worker environment variable a
// release file may read (valuesFrom env): the worker's own settings and
// credentials (KEELSON_SLACK_BOT_TOKEN, AWS_SECRET_ACCESS_KEY) stay out of
// reach of whoever writes release files.
const EnvValuePrefix = "KEELSON_VALUE_"

// EnvValuesDir names the worker's folder of value files (valuesFrom file):
// files elsewhere are refused for the same reason.
const EnvValuesDir = "KEELSON_VALUES_DIR"

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// validateAllValuesFrom checks the application's valuesFrom and every
// region's, and that a region's list and the application's do not
// overlap (a key inside another: one would replace the other).
func validateAllValuesFrom(s *Spec, ps *problems) {
	versionKey := s.Chart.VersionValue
	if versionKey == "" {
		versionKey = DefaultVersionValue
	}
	validateValuesFrom("valuesFrom", s.ValuesFrom, s.Values, versionKey, ps)
	for i, r := range s.Regions {
		at := fmt.Sprintf("regions[%d].valuesFrom", i)
		validateValuesFrom(at, r.ValuesFrom, r.Values, versionKey, ps)
		for j, v := range r.ValuesFrom {
			for k, a := range s.ValuesFrom {
				if v.Key != "" && a.Key != "" && v.Key != a.Key && keysOverlap(v.Key, a.Key) {
					ps.add(fmt.Sprintf("%s[%d].key", at, j), "%q overlaps %q (valuesFrom[%d]): one would replace the other; use the same key to replace the application's entry", v.Key, a.Key, k)
				}
			}
		}
	}
}

// validateValuesFrom checks one list; plain is the values of the same
// level (the application's or the region's).
func validateValuesFrom(at string, list []ValueFrom, plain Values, versionKey string, ps *problems) {
	for i, v := range list {
		vat := fmt.Sprintf("%s[%d]", at, i)
		switch {
		case v.Key == "":
			ps.add(vat+".key", "required field is missing (the dotted values key, such as db.password)")
		case strings.ContainsAny(v.Key, " \t\r\n") || strings.Contains("."+v.Key+".", ".."):
			ps.add(vat+".key", "%q is not a dotted values key such as db.password", v.Key)
		default:
			for j, w := range list[:i] {
				switch {
				case w.Key == v.Key:
					ps.add(vat+".key", "duplicate key %q (also %s[%d])", v.Key, at, j)
				case w.Key != "" && keysOverlap(w.Key, v.Key):
					ps.add(vat+".key", "%q overlaps %q (%s[%d]): one would replace the other", v.Key, w.Key, at, j)
				}
			}
			if valuesSet(plain, v.Key) {
				ps.add(vat+".key", "%q is also set in values at the same level: give it in one place", v.Key)
			}
			if keysOverlap(v.Key, versionKey) {
				ps.add(vat+".key", "%q overlaps %q, where the release's version goes (chart.versionValue)", v.Key, versionKey)
			}
		}
		switch {
		case v.Env != "" && v.File != "":
			ps.add(vat+".file", "give either env or file, not both")
		case v.Env == "" && v.File == "":
			ps.add(vat, "give env (an environment variable of the worker) or file (an absolute path on the worker)")
		case v.Env != "":
			if !envName.MatchString(v.Env) {
				ps.add(vat+".env", "%q is not an environment variable name (letters, digits and '_', not starting with a digit)", v.Env)
			} else if !strings.HasPrefix(v.Env, EnvValuePrefix) {
				ps.add(vat+".env", "%q: workers give charts only the variables named %s*, so that a release file cannot read the worker's own credentials", v.Env, EnvValuePrefix)
			}
		default:
			if !path.IsAbs(v.File) {
				ps.add(vat+".file", "%q is not absolute: file is a path on the worker (a mounted Secret, say), read when the chart renders, not a file beside the release file", v.File)
			}
		}
	}
}

// keysOverlap tells whether two dotted keys are the same or one holds the
// other (db and db.password).
func keysOverlap(a, b string) bool {
	return a == b || strings.HasPrefix(a, b+".") || strings.HasPrefix(b, a+".")
}

// valuesSet tells whether plain values set key, or set something on its
// way that is not a mapping (db: "x" for db.password): either way the
// value from the worker and the plain one would compete.
func valuesSet(plain Values, key string) bool {
	var cur any = plain
	for _, part := range strings.Split(key, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return true
		}
		next, ok := m[part]
		if !ok {
			return false
		}
		cur = next
	}
	return true
}
