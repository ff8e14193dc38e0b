package terraform

import (
	"fmt"
	"slices"

	tfjson "github.com/hashicorp/terraform-json"
)

// Summarize reduces a plan to what a person approving it needs. A replace
// counts as one add and one destroy, and its address is in both lists
// (approvals that trigger on destroys must see it) and in Replaced.
func Summarize(p *tfjson.Plan) Summary {
	var s Summary
	if p == nil {
		return s
	}
	for _, rc := range p.ResourceChanges {
		if rc == nil || rc.Change == nil || rc.Mode == tfjson.DataResourceMode {
			continue
		}
		a := rc.Change.Actions
		switch {
		case a.Replace():
			s.Added = append(s.Added, rc.Address)
			s.Destroyed = append(s.Destroyed, rc.Address)
			s.Replaced = append(s.Replaced, rc.Address)
		case a.Create():
			s.Added = append(s.Added, rc.Address)
		case a.Delete():
			s.Destroyed = append(s.Destroyed, rc.Address)
		case a.Update(), a.Forget():
			// Forgetting drops a resource from state without destroying
			// it: a change to what Terraform manages.
			s.Changed = append(s.Changed, rc.Address)
		}
	}
	slices.Sort(s.Added)
	slices.Sort(s.Changed)
	slices.Sort(s.Destroyed)
	slices.Sort(s.Replaced)
	s.Adds, s.Changes, s.Destroys = len(s.Added), len(s.Changed), len(s.Destroyed)
	return s
}

// hasChanges reports whether applying the plan would do anything, outputs
// included.
func hasChanges(p *tfjson.Plan) bool {
	if Summarize(p).HasChanges() {
		return true
	}
	for _, c := range p.OutputChanges {
		if c != nil && !c.Actions.NoOp() {
			return true
		}
	}
	return false
}

// Exceeds lists, one line per reason, how next does more than approved:
//   - it destroys or replaces an address that approved did not destroy or
//     replace (a destroy is what an approval is most about, and a gate may
//     have been skipped because there was none);
//   - it creates or changes an address that approved did not touch at all.
//
// Doing less is within approved: after an apply that got part-way, the
// re-plan of what is left is a subset of the approved plan, and so is an
// empty one. An address approved created or changed may be created or
// changed again (drift is put back as approved), but destroying it was never
// approved. The lines come destroys and replaces first, each group sorted.
func Exceeds(approved, next Summary) []string {
	touched := setOf(approved.Added, approved.Changed, approved.Destroyed)
	destroyed := setOf(approved.Destroyed)
	replaced := setOf(next.Replaced)
	// A summary made before Replaced existed shows a replace as an address
	// both added and destroyed.
	nextAdded := setOf(next.Added)
	for _, addr := range next.Destroyed {
		if nextAdded[addr] {
			replaced[addr] = true
		}
	}
	var out []string
	for _, addr := range sortedUnique(next.Destroyed) {
		if destroyed[addr] {
			continue
		}
		verb := "destroys"
		if replaced[addr] {
			verb = "replaces"
		}
		out = append(out, fmt.Sprintf("%s %s (the approved plan did not)", verb, addr))
	}
	for _, addr := range sortedUnique(next.Added) {
		if !touched[addr] && !replaced[addr] {
			out = append(out, fmt.Sprintf("creates %s (the approved plan did not touch it)", addr))
		}
	}
	for _, addr := range sortedUnique(next.Changed) {
		if !touched[addr] {
			out = append(out, fmt.Sprintf("changes %s (the approved plan did not touch it)", addr))
		}
	}
	return out
}

func setOf(lists ...[]string) map[string]bool {
	set := map[string]bool{}
	for _, l := range lists {
		for _, s := range l {
			set[s] = true
		}
	}
	return set
}

func sortedUnique(list []string) []string {
	out := slices.Clone(list)
	slices.Sort(out)
	return slices.Compact(out)
}
