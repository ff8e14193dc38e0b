package release

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// format reads one apiVersion of the release file into the current types.
// Today there is one; when the file format changes, the new version gets
// its own entry and the old one keeps decoding into its own types and
// converting, so files already written keep loading.
type format struct {
	decode func(d *decoder, root *yaml.Node) *Spec
}

var formats = map[string]format{
	APIVersionV1Alpha1: {decode: decodeV1Alpha1},
}

// KnownAPIVersions lists the release file formats this build reads.
func KnownAPIVersions() []string {
	vs := make([]string, 0, len(formats))
	for v := range formats {
		vs = append(vs, v)
	}
	sort.Strings(vs)
	return vs
}

// decodeV1Alpha1 reads the current format: its types are Spec's.
func decodeV1Alpha1(d *decoder, root *yaml.Node) *Spec {
	var s Spec
	d.decode(root, reflect.ValueOf(&s).Elem(), "")
	return &s
}

// Load reads, validates and completes the release file at path. Problems
// in the file come back as *Errors; a file that cannot be read as a plain
// error.
func Load(path string) (*Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load release file: %w", err)
	}
	return Parse(data, path)
}

// Parse validates and completes a release file's content. source names the
// file in messages and is the folder relative paths start from. Every
// problem found is returned at once as *Errors; on success defaults are
// filled in and paths are absolute.
func Parse(data []byte, source string) (*Spec, error) {
	p := &parser{file: source, d: newDecoder()}
	s := p.parse(data)
	if errs := p.errors(); errs != nil {
		return nil, errs
	}
	s.Source = source
	s.ApplyDefaults()
	return s, nil
}

type parser struct {
	file  string
	d     *decoder
	fatal []Error // problems that stop decoding (syntax, apiVersion)
}

func (p *parser) parse(data []byte) *Spec {
	root, ok := p.document(data)
	if !ok {
		return nil
	}
	apiVersion, at := scalarField(root, "apiVersion")
	f, known := formats[apiVersion]
	if !known {
		field, msg := "apiVersion", ""
		if apiVersion == "" {
			msg = "required field is missing"
		} else {
			msg = fmt.Sprintf("unknown apiVersion %q", apiVersion)
		}
		p.fatal = append(p.fatal, Error{File: p.file, Line: at.line, Column: at.column, Field: field,
			Message: msg + " (known: " + strings.Join(KnownAPIVersions(), ", ") + ")"})
		return nil
	}
	s := f.decode(p.d, root)
	// Later checks add to the decoder's list, so that all problems are
	// placed and sorted together.
	p.d.problems = append(p.d.problems, validate(s)...)
	if s.Chart.Path != "" {
		s.Chart.Path = p.folder(s.Chart.Path, "chart.path", false)
	}
	if s.Terraform != nil && s.Terraform.Path != "" {
		s.Terraform.Path = p.folder(s.Terraform.Path, "terraform.path", true)
	}
	return s
}

// document parses the YAML and returns its root mapping.
func (p *parser) document(data []byte) (*yaml.Node, bool) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.fatal = append(p.fatal, Error{File: p.file, Message: "empty file: expected a release (apiVersion, kind, application, ...)"})
		} else {
			p.fatal = append(p.fatal, p.syntaxError(err))
		}
		return nil, false
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		e := Error{File: p.file, Message: "a release file holds one document; found a second one"}
		if err != nil {
			e = p.syntaxError(err)
		} else {
			e.Line, e.Column = next.Line, next.Column
		}
		p.fatal = append(p.fatal, e)
		return nil, false
	}
	if len(doc.Content) == 0 {
		p.fatal = append(p.fatal, Error{File: p.file, Message: "empty file: expected a release (apiVersion, kind, application, ...)"})
		return nil, false
	}
	root := resolve(doc.Content[0])
	if root.Kind != yaml.MappingNode {
		p.fatal = append(p.fatal, Error{File: p.file, Line: root.Line, Column: root.Column,
			Message: "a release file is a mapping (apiVersion, kind, application, ...), not " + describe(root)})
		return nil, false
	}
	return root, true
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError places a YAML parser error on its line.
func (p *parser) syntaxError(err error) Error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return Error{File: p.file, Line: line, Message: "invalid YAML: " + m[2]}
	}
	return Error{File: p.file, Message: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

// scalarField finds a top-level scalar before the document is decoded,
// to choose the format.
func scalarField(root *yaml.Node, key string) (string, position) {
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := resolve(root.Content[i]), resolve(root.Content[i+1])
		if k.Kind == yaml.ScalarNode && k.Value == key {
			if v.Kind == yaml.ScalarNode && !isNull(v) {
				return v.Value, position{v.Line, v.Column}
			}
			return "", position{v.Line, v.Column}
		}
	}
	return "", position{root.Line, root.Column}
}

// folder makes a path from the file absolute and checks it exists: a
// missing chart is better reported here, with its line, than by Helm in
// the middle of a release.
func (p *parser) folder(written, field string, mustBeDir bool) string {
	path := written
	if !filepath.IsAbs(path) {
		abs, err := filepath.Abs(filepath.Join(filepath.Dir(p.file), path))
		if err != nil {
			p.d.problems.add(field, "cannot make %q absolute: %v", path, err)
			return path
		}
		path = abs
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		p.d.problems.add(field, "%q does not exist (looked for %s)", written, path)
	case err != nil:
		p.d.problems.add(field, "%v", err)
	case mustBeDir && !fi.IsDir():
		p.d.problems.add(field, "%q is not a folder (%s)", written, path)
	}
	return path
}

// errors places every problem in the file and sorts them, or returns nil.
func (p *parser) errors() *Errors {
	errs := &Errors{List: p.fatal}
	for _, pr := range p.d.problems {
		at := pr.at
		if at == (position{}) {
			at = p.d.lookup(pr.field)
		}
		errs.List = append(errs.List, Error{File: p.file, Line: at.line, Column: at.column, Field: pr.field, Message: pr.msg})
	}
	if len(errs.List) == 0 {
		return nil
	}
	errs.sort()
	return errs
}

// lookup finds where a field is, or where the nearest enclosing field is
// when it is missing ("chart.path" absent points at "chart").
func (d *decoder) lookup(field string) position {
	for {
		if at, ok := d.pos[field]; ok {
			return at
		}
		if field == "" {
			return position{}
		}
		i := strings.LastIndexAny(field, ".[")
		if i < 0 {
			field = ""
		} else {
			field = field[:i]
		}
	}
}
