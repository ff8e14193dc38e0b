package identity

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"
)

// Policy is the worker's access policy file (keelson-worker --access):
//
//	people:
//	  - id: alice
//	    keys: ["ssh-ed25519 AAAA… alice@laptop"]
//	    slack: ["T0123/U0456"]          # TEAM/USER
//	allowedSigners: allowed_signers     # optional, OpenSSH's format, beside this file
//	bridges: ["ssh-ed25519 AAAA… keelson-slack"]
//	applications:
//	  - match: payments                 # a name, or a glob: "*", "team-a-*"
//	    starters: [ci]
//	    approvers: [alice, "@release-managers"]
//	    operators: [alice, "slack:T0123/U0789"]
//
// An application takes the entry whose match is its name, else the first
// glob that matches it; with none, nobody may do anything to it.
type Policy struct {
	People         []Person    `yaml:"people"`
	AllowedSigners string      `yaml:"allowedSigners"`
	Bridges        []string    `yaml:"bridges"`
	Applications   []AppAccess `yaml:"applications"`

	source string
	digest string
}

// AppAccess is one entry of the policy's applications.
type AppAccess struct {
	Match     string   `yaml:"match"`
	Starters  []string `yaml:"starters"`
	Approvers []string `yaml:"approvers"`
	Operators []string `yaml:"operators"`
}

// LoadPolicy reads and checks a policy file. Errors name the file and line.
func LoadPolicy(file string) (*Policy, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read access policy: %w", err)
	}
	return ParsePolicy(data, file)
}

// ParsePolicy reads a policy from data; source names it in errors and
// locates its allowed signers file.
func ParsePolicy(data []byte, source string) (*Policy, error) {
	var p Policy
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) && len(te.Errors) > 0 {
			// "line 3: field x not found in type identity.Policy" → file:3: …
			msg := te.Errors[0]
			if line, rest, ok := strings.Cut(strings.TrimPrefix(msg, "line "), ": "); ok {
				msg = line + ": " + strings.Replace(rest, " in type identity.Policy", "", 1)
			}
			return nil, fmt.Errorf("%s:%s", source, msg)
		}
		return nil, fmt.Errorf("%s: %v", source, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var root yaml.Node
	_ = yaml.Unmarshal(data, &root)
	at := func(list string, i int) string {
		return fmt.Sprintf("%s:%d: %s[%d]", source, lineOf(&root, list, i), list, i)
	}
	sum := sha256.Sum256(data)
	p.source, p.digest = source, "sha256:"+hex.EncodeToString(sum[:6])

	if p.AllowedSigners != "" {
		f := p.AllowedSigners
		if !filepath.IsAbs(f) {
			f = filepath.Join(filepath.Dir(source), f)
		}
		if err := p.readAllowedSigners(f); err != nil {
			return nil, err
		}
	}
	ids := map[string]bool{}
	for i, person := range p.People {
		switch {
		case person.ID == "":
			return nil, fmt.Errorf("%s.id: required", at("people", i))
		case strings.ContainsAny(person.ID[:1], "@*") || strings.Contains(person.ID, ":"):
			return nil, fmt.Errorf("%s.id: %q may not start with @ or * or hold a colon (those name groups and Slack accounts)", at("people", i), person.ID)
		case ids[person.ID]:
			return nil, fmt.Errorf("%s.id: %q listed twice (merge its keys into one entry)", at("people", i), person.ID)
		}
		ids[person.ID] = true
		for j, k := range person.Keys {
			if err := checkKey(k); err != nil {
				return nil, fmt.Errorf("%s.keys[%d]: %v", at("people", i), j, err)
			}
		}
		for j, s := range person.Slack {
			if t, u, ok := strings.Cut(s, "/"); !ok || t == "" || u == "" || strings.Contains(u, "/") {
				return nil, fmt.Errorf("%s.slack[%d]: %q is not TEAM/USER (a Slack team id and user id, like T0123/U0456)", at("people", i), j, s)
			}
		}
	}
	for i, k := range p.Bridges {
		if err := checkKey(k); err != nil {
			return nil, fmt.Errorf("%s: %v", at("bridges", i), err)
		}
	}
	for i, app := range p.Applications {
		if app.Match == "" {
			return nil, fmt.Errorf("%s.match: required (an application name or a glob such as \"*\")", at("applications", i))
		}
		if _, err := path.Match(app.Match, ""); err != nil {
			return nil, fmt.Errorf("%s.match: %q is not a glob: %v", at("applications", i), app.Match, err)
		}
		for role, list := range map[string][]string{"starters": app.Starters, "approvers": app.Approvers, "operators": app.Operators} {
			for j, e := range list {
				if err := p.checkEntry(e, ids); err != nil {
					return nil, fmt.Errorf("%s.%s[%d]: %v", at("applications", i), role, j, err)
				}
			}
		}
	}
	return &p, nil
}

// checkEntry refuses a role entry that names nobody: a typo there would
// silently leave a role empty.
func (p *Policy) checkEntry(e string, ids map[string]bool) error {
	switch {
	case e == "*", ids[e]:
		return nil
	case strings.HasPrefix(e, "@") && len(e) > 1:
		return nil
	case strings.HasPrefix(e, "slack:"):
		if t, u, ok := strings.Cut(strings.TrimPrefix(e, "slack:"), "/"); ok && t != "" && u != "" {
			return nil
		}
		return fmt.Errorf("%q is not slack:TEAM/USER", e)
	}
	return fmt.Errorf("%q is not a person of the policy, a Slack account (slack:TEAM/USER), a Slack group (@handle) or *", e)
}

// readAllowedSigners adds the keys of an allowed signers file (the format
// of ssh-keygen -Y verify and git's gpg.ssh.allowedSignersFile:
// "principals [options] keytype key [comment]") to the people it names.
func (p *Policy) readAllowedSigners(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("%s: allowedSigners: %w", p.source, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		principals, rest, ok := strings.Cut(line, " ")
		rest = strings.TrimSpace(rest)
		if !ok {
			return fmt.Errorf("%s:%d: want principals, then a key", file, n)
		}
		// Options (namespaces="keelson", valid-after=…) come before the key.
		if fields := strings.Fields(rest); len(fields) > 1 && !strings.HasPrefix(fields[0], "ssh-") && !strings.HasPrefix(fields[0], "ecdsa-") && !strings.HasPrefix(fields[0], "sk-") {
			if ns, found := strings.CutPrefix(fields[0], "namespaces="); found && !slices.Contains(strings.Split(strings.Trim(ns, `"`), ","), Namespace) {
				continue // a key allowed for other namespaces only
			}
			rest = strings.Join(fields[1:], " ")
		}
		if err := checkKey(rest); err != nil {
			return fmt.Errorf("%s:%d: %v", file, n, err)
		}
		for _, id := range strings.Split(principals, ",") {
			i := slices.IndexFunc(p.People, func(q Person) bool { return q.ID == id })
			if i < 0 {
				p.People = append(p.People, Person{ID: id})
				i = len(p.People) - 1
			}
			p.People[i].Keys = append(p.People[i].Keys, rest)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", file, err)
	}
	return nil
}

func checkKey(k string) error {
	pub, err := parseKey(k)
	if err != nil {
		return err
	}
	if pub.Type() != ssh.KeyAlgoED25519 {
		return fmt.Errorf("a %s key; Keelson takes ssh-ed25519 keys", pub.Type())
	}
	return nil
}

// For is the Access of one application: the people and bridges, and the
// roles of the entry that matches it.
func (p *Policy) For(application string) Access {
	a := Access{Enforced: true, Policy: p.source + " (" + p.digest + ")", People: p.People, Bridges: p.Bridges}
	entry := -1
	for i, app := range p.Applications {
		if app.Match == application {
			entry = i
			break
		}
	}
	if entry < 0 {
		for i, app := range p.Applications {
			if ok, _ := path.Match(app.Match, application); ok {
				entry = i
				break
			}
		}
	}
	if entry >= 0 {
		app := p.Applications[entry]
		a.Starters, a.Approvers, a.Operators = app.Starters, app.Approvers, app.Operators
	}
	return a
}

// lineOf is the line of the i-th item of the top-level sequence key.
func lineOf(root *yaml.Node, key string, i int) int {
	if root == nil || len(root.Content) == 0 {
		return 0
	}
	m := root.Content[0]
	for k := 0; k+1 < len(m.Content); k += 2 {
		if m.Content[k].Value == key {
			if seq := m.Content[k+1]; i < len(seq.Content) {
				return seq.Content[i].Line
			}
			return m.Content[k+1].Line
		}
	}
	return 0
}

// SlackGroups are the Slack user groups (entries starting with @) that the
// policy file names in application's roles; none when it cannot be read
// (the release, which has the policy in its history, decides anyway).
func SlackGroups(file, application string) []string {
	p, err := LoadPolicy(file)
	if err != nil {
		return nil
	}
	a := p.For(application)
	var out []string
	for _, list := range [][]string{a.Approvers, a.Operators} {
		for _, e := range list {
			if strings.HasPrefix(e, "@") && !slices.Contains(out, e) {
				out = append(out, e)
			}
		}
	}
	return out
}
