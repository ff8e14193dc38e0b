package release

import (
	"bytes"
	"fmt"
	"net/url"
	"text/template"
	"text/template/parse"
)

// URLData is what a health check URL template sees: {{.Region}},
// {{.Version}} and {{.Outputs.NAME}} (the region's Terraform outputs).
type URLData struct {
	Region  string
	Version string
	Outputs map[string]any
}

// RenderURL renders a health check URL template and checks that the result
// is an absolute http or https URL. A missing output is an error rather
// than an empty string, because probing the wrong URL would pass or fail
// for the wrong reason.
func RenderURL(tmpl string, data URLData) (string, error) {
	t, err := parseURLTemplate(tmpl)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return "", fmt.Errorf("render url %q: %w", tmpl, err)
	}
	u := b.String()
	if err := checkURL(u); err != nil {
		return "", err
	}
	return u, nil
}

func parseURLTemplate(tmpl string) (*template.Template, error) {
	t, err := template.New("url").Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return nil, fmt.Errorf("parse url template %q: %w", tmpl, err)
	}
	// A URL needs substitution, not loops: without range and template
	// calls, rendering is linear in the template's size, so a hostile or
	// mistaken file cannot make the loader or a probe spin.
	if _, loops := outputNames(t); loops {
		return nil, fmt.Errorf("url template %q: range and template actions are not allowed", tmpl)
	}
	if len(t.Templates()) > 1 {
		return nil, fmt.Errorf("url template %q: define and block actions are not allowed", tmpl)
	}
	return t, nil
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("invalid url %q: %w", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("url %q must start with http:// or https://", s)
	}
	if u.Host == "" {
		return fmt.Errorf("url %q has no host", s)
	}
	return nil
}

// outputNames lists the {{.Outputs.NAME}} references of a parsed template,
// so that validation can render it before any Terraform output exists, and
// reports whether it loops (range or template actions).
func outputNames(t *template.Template) (names []string, loops bool) {
	var walk func(n parse.Node)
	walk = func(n parse.Node) {
		switch n := n.(type) {
		case *parse.ListNode:
			if n == nil {
				return
			}
			for _, c := range n.Nodes {
				walk(c)
			}
		case *parse.ActionNode:
			walk(n.Pipe)
		case *parse.PipeNode:
			if n == nil {
				return
			}
			for _, c := range n.Cmds {
				walk(c)
			}
		case *parse.CommandNode:
			for _, a := range n.Args {
				walk(a)
			}
		case *parse.FieldNode:
			if len(n.Ident) > 1 && n.Ident[0] == "Outputs" {
				names = append(names, n.Ident[1])
			}
		case *parse.ChainNode:
			walk(n.Node)
		case *parse.IfNode:
			walk(&n.BranchNode)
		case *parse.RangeNode:
			loops = true
			walk(&n.BranchNode)
		case *parse.WithNode:
			walk(&n.BranchNode)
		case *parse.BranchNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.TemplateNode:
			loops = true
			walk(n.Pipe)
		}
	}
	if t.Tree != nil {
		walk(t.Tree.Root)
	}
	return names, loops
}

// validateURL renders tmpl for a region with stand-ins for the outputs it
// names. Outputs are only known after Terraform ran, so a stand-in that is
// a bare host is tried first and a full URL second (the output may be the
// whole base URL).
func validateURL(tmpl, region string) error {
	t, err := parseURLTemplate(tmpl)
	if err != nil {
		return err
	}
	names, _ := outputNames(t)
	var firstErr error
	for _, standIn := range []string{"placeholder", "http://placeholder"} {
		outputs := map[string]any{}
		for _, n := range names {
			outputs[n] = standIn
		}
		var b bytes.Buffer
		if err := t.Execute(&b, URLData{Region: region, Version: "0.0.0", Outputs: outputs}); err != nil {
			return fmt.Errorf("render url %q: %w", tmpl, err)
		}
		err := checkURL(b.String())
		if err == nil {
			return nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if len(names) == 0 {
			break
		}
	}
	return firstErr
}
