package release

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// position is where a node sits in the file.
type position struct{ line, column int }

// maxNodes bounds the nodes a document may expand to through aliases, so
// that a small file of nested aliases cannot make the loader run for ever.
const maxNodes = 100_000

// decoder reads a YAML node tree into Go values strictly: unknown keys,
// duplicate keys and values of the wrong kind are problems, each recorded
// with the path of the field. It also remembers where every field was
// written, so that later validation can point at the line.
type decoder struct {
	problems problems
	// pos maps a field path ("waves[1].regions[0]") to where its value is.
	pos map[string]position
	// nodes counts visited nodes against maxNodes.
	nodes int
}

func newDecoder() *decoder {
	return &decoder{pos: map[string]position{}}
}

var (
	durationType = reflect.TypeOf(Duration{})
	valuesType   = reflect.TypeOf(Values{})
)

// decode reads n into v, which must be settable. Problems are recorded, not
// returned, so that one bad field does not hide the next.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if !d.visit(n, path) {
		return
	}
	d.pos[path] = position{n.Line, n.Column}
	n = resolve(n)
	if isNull(n) {
		// An empty value is as good as an absent one; required fields are
		// checked after decoding.
		return
	}
	t := v.Type()
	switch {
	case t == durationType:
		d.decodeDuration(n, v, path)
		return
	case t == valuesType:
		m, ok := d.generic(n, path).(map[string]any)
		if !ok {
			d.problems.add(path, "must be a mapping of chart values, not %s", describe(n))
			return
		}
		if len(m) > 0 {
			v.Set(reflect.ValueOf(Values(m)))
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		p := reflect.New(t.Elem())
		d.decode(n, p.Elem(), path)
		v.Set(p)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.problems.add(path, "must be a list, not %s", describe(n))
			return
		}
		if len(n.Content) == 0 {
			return // nil, like an absent list, so that JSON round trips are exact
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Map:
		d.decodeStringMap(n, v, path)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.problems.add(path, "must be a string, not %s", describe(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Int:
		var i int
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil {
			d.problems.add(path, "must be an integer, not %s", describe(n))
			return
		}
		v.SetInt(int64(i))
	case reflect.Float64:
		var f float64
		if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") || n.Decode(&f) != nil {
			d.problems.add(path, "must be a number, not %s", describe(n))
			return
		}
		v.SetFloat(f)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			d.problems.add(path, "must be true or false, not %s", describe(n))
			return
		}
		v.SetBool(b)
	default:
		// Only reached if spec.go gains a field of a kind added here later.
		d.problems.add(path, "cannot read a field of type %s", t)
	}
}

// visit counts a node against the expansion budget.
func (d *decoder) visit(n *yaml.Node, path string) bool {
	d.nodes++
	if d.nodes == maxNodes+1 {
		d.problems.add(path, "document expands to more than %d nodes (aliases nested too deep?)", maxNodes)
	}
	return d.nodes <= maxNodes
}

func (d *decoder) decodeDuration(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.problems.add(path, "must be a duration such as \"90s\" or \"1h30m\", not %s", describe(n))
		return
	}
	dur, err := time.ParseDuration(n.Value)
	if err != nil {
		d.problems.add(path, "invalid duration %q (use Go durations such as \"90s\" or \"1h30m\")", n.Value)
		return
	}
	v.Set(reflect.ValueOf(Duration{dur}))
}

// pairs walks a mapping's keys, reporting keys that are not plain strings
// or are written twice, and merge keys, which the loader does not expand.
func (d *decoder) pairs(n *yaml.Node, path string, each func(key string, k, val *yaml.Node)) {
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.problems.addAt(position{k.Line, k.Column}, path, "keys must be strings, not %s", describe(k))
			continue
		}
		field := join(path, k.Value)
		if k.ShortTag() == "!!merge" {
			d.problems.addAt(position{k.Line, k.Column}, field, "merge keys (<<) are not supported; repeat the fields or use an alias for the whole value")
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.problems.addAt(position{k.Line, k.Column}, field, "duplicate key %q (first on line %d)", k.Value, first)
			continue
		}
		seen[k.Value] = k.Line
		each(k.Value, k, val)
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.problems.add(path, "must be a mapping, not %s", describe(n))
		return
	}
	fields := yamlFields(v.Type())
	d.pairs(n, path, func(key string, k, val *yaml.Node) {
		field := join(path, key)
		i, ok := fields[key]
		if !ok {
			d.problems.addAt(position{k.Line, k.Column}, field, "unknown key %q%s", key, suggest(key, sortedKeys(fields)))
			return
		}
		d.decode(val, v.Field(i), field)
	})
}

func (d *decoder) decodeStringMap(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.problems.add(path, "must be a mapping, not %s", describe(n))
		return
	}
	m := reflect.MakeMap(v.Type())
	d.pairs(n, path, func(key string, k, val *yaml.Node) {
		field := join(path, key)
		d.visit(val, field)
		d.pos[field] = position{val.Line, val.Column}
		val = resolve(val)
		if val.Kind != yaml.ScalarNode || isNull(val) {
			d.problems.add(field, "must be a string, not %s", describe(val))
			return
		}
		m.SetMapIndex(reflect.ValueOf(key), reflect.ValueOf(val.Value))
	})
	if m.Len() > 0 {
		v.Set(m)
	}
}

// generic reads chart values into the shapes JSON decoding produces
// (map[string]any, []any, float64, string, bool, nil), so that a Spec
// that went through a workflow history compares equal to the one loaded.
// Helm reads values files the same way.
func (d *decoder) generic(n *yaml.Node, path string) any {
	if !d.visit(n, path) {
		return nil
	}
	n = resolve(n)
	switch n.Kind {
	case yaml.MappingNode:
		m := map[string]any{}
		d.pairs(n, path, func(key string, _, val *yaml.Node) {
			m[key] = d.generic(val, join(path, key))
		})
		return m
	case yaml.SequenceNode:
		s := make([]any, len(n.Content))
		for i, item := range n.Content {
			s[i] = d.generic(item, fmt.Sprintf("%s[%d]", path, i))
		}
		return s
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return nil
		case "!!bool":
			var b bool
			if n.Decode(&b) == nil {
				return b
			}
		case "!!int", "!!float":
			var f float64
			if err := n.Decode(&f); err != nil {
				// Integers beyond float64's range still parse as floats.
				f, err = strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
				if err != nil {
					d.problems.add(path, "number %s cannot be represented", n.Value)
					return nil
				}
			}
			if math.IsInf(f, 0) || math.IsNaN(f) {
				d.problems.add(path, "number %s cannot be carried in JSON", n.Value)
				return nil
			}
			return f
		}
		return n.Value
	}
	d.problems.add(path, "unsupported value %s", describe(n))
	return nil
}

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	}
	return "an alias"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// yamlFields maps the YAML names of a struct's fields to their indexes.
func yamlFields(t reflect.Type) map[string]int {
	m := map[string]int{}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		m[name] = i
	}
	return m
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// suggest names the closest known key, or lists them all when none is
// close: a typo costs the reader one glance instead of a trip to the docs.
func suggest(key string, known []string) string {
	best, bestDist := "", -1
	for _, k := range known {
		dist := levenshtein(strings.ToLower(key), strings.ToLower(k))
		if bestDist < 0 || dist < bestDist {
			best, bestDist = k, dist
		}
	}
	if best != "" && bestDist <= max(2, len(best)/3) {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return " (known keys: " + strings.Join(known, ", ") + ")"
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
