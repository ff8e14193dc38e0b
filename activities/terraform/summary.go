package terraform

import (
	"slices"

	tfjson "github.com/hashicorp/terraform-json"
)

// Summarize reduces a plan to what a person approving it needs. A replace
// counts as one add and one destroy, and its address is in both lists:
// approvals that trigger on destroys must see it.
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
