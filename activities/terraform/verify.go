package terraform

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"go.temporal.io/sdk/temporal"
)

// VerifyInput names a saved (approved) plan to check against the state.
type VerifyInput struct {
	Stack   Stack  `json:"stack"`
	PlanKey string `json:"planKey"`
}

// VerifyResult tells whether a saved plan still applies as approved.
type VerifyResult struct {
	// Stale is true when the state moved since the saved plan was made.
	Stale bool `json:"stale"`
	// Plan is the new plan when Stale (saved under its own key); nil otherwise.
	Plan *PlanResult `json:"plan,omitempty"`
	// Exceeds is Exceeds(approved, new) when Stale.
	Exceeds []string `json:"exceeds,omitempty"`
}

// Verify tells whether the saved plan at PlanKey still applies as approved,
// cheaply: it compares the state's lineage and serial with those of the
// prior state recorded in the saved plan, as Terraform does before it
// applies, and only re-plans when they differ. A state of another lineage is
// an ErrStateLineage error. The workflow calls it after a gate is approved,
// before the wave's regions apply, so that a plan that grew in the meantime
// goes back to the gate instead of failing region by region.
func (a *Activities) Verify(ctx context.Context, in VerifyInput) (*VerifyResult, error) {
	s, saved, stale, err := a.openSaved(ctx, "verify", in.Stack, in.PlanKey)
	if err != nil {
		return nil, err
	}
	defer s.close()
	if !stale {
		return &VerifyResult{}, nil
	}

	s.log.Info("saved plan is stale, planning again to compare", "plan", in.PlanKey)
	plan, _, err := s.show(ctx, saved)
	if err != nil {
		return nil, err
	}
	replan := s.scratch("replan.tfplan")
	changes, err := s.plan(ctx, replan)
	if err != nil {
		return nil, err
	}
	next, raw, err := s.show(ctx, replan)
	if err != nil {
		return nil, err
	}
	pr, err := s.saveReplan(ctx, replan, raw, Summarize(next), changes)
	if err != nil {
		return nil, err
	}
	res := &VerifyResult{Stale: true, Plan: pr, Exceeds: Exceeds(Summarize(plan), pr.Summary)}
	s.log.Info("terraform verify done", "plan", in.PlanKey, "newPlan", pr.PlanKey, "exceeds", res.Exceeds)
	return res, nil
}

// openSaved opens the region's working copy for op, fetches the saved plan
// at key into it, initialises the backend (state pull needs it) and
// compares the state with the plan's prior state: a state of another
// lineage is an error, a moved one is stale. The caller closes s.
func (a *Activities) openSaved(ctx context.Context, op string, st Stack, key string) (*session, string, bool, error) {
	if err := checkPlanKey(op, st, key); err != nil {
		return nil, "", false, err
	}
	s, err := a.open(ctx, st, op)
	if err != nil {
		return nil, "", false, err
	}
	saved := s.scratch("saved.tfplan")
	if err := s.download(ctx, key, saved); err != nil {
		s.close()
		return nil, "", false, err
	}
	if err := s.init(ctx); err != nil {
		s.close()
		return nil, "", false, err
	}
	stale, err := s.checkState(ctx, saved, key)
	if err != nil {
		s.close()
		return nil, "", false, err
	}
	return s, saved, stale, nil
}

// stateMeta is what Terraform compares to tell whether a saved plan still
// applies to the state: the state's lineage (a UUID given when a state is
// first written, kept for its whole life) and serial (counts its writes).
type stateMeta struct {
	Lineage string `json:"lineage"`
	Serial  uint64 `json:"serial"`
}

// planPriorState reads the prior state recorded in a saved plan: a plan file
// is a zip whose "tfstate" entry is the state the plan was made from.
func planPriorState(file string) (stateMeta, error) {
	var m stateMeta
	z, err := zip.OpenReader(file)
	if err != nil {
		return m, err
	}
	defer z.Close()
	f, err := z.Open("tfstate")
	if err != nil {
		return m, err
	}
	defer f.Close()
	if err := json.NewDecoder(f).Decode(&m); err != nil {
		return m, fmt.Errorf("tfstate: %w", err)
	}
	return m, nil
}

// currentState reads the lineage and serial of the stack's state: directly
// where Keelson knows where it is (stateDirect), through its backend with
// terraform state pull otherwise. No state at all reads as no lineage and
// serial 0, as in a plan made before the first apply.
func (s *session) currentState(ctx context.Context) (stateMeta, error) {
	var m stateMeta
	if doc, ok, err := s.stateDirect(ctx); err != nil {
		return m, err
	} else if ok {
		return stateMeta{Lineage: doc.Lineage, Serial: doc.Serial}, nil
	}
	var out string
	// The state can hold secrets: its text stays out of the log.
	err := s.run(ctx, "state pull", io.Discard, func() (err error) {
		out, err = s.tf.StatePull(ctx)
		return err
	})
	if err != nil {
		return m, s.fail(ctx, "state pull", err)
	}
	if strings.TrimSpace(out) == "" {
		return m, nil
	}
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		return m, fmt.Errorf("read state of %s: %w", s.name, err)
	}
	return m, nil
}

// checkState compares the saved plan's prior state with the current state
// by Terraform's own rule (its local backend's, before an apply): a lineage
// that differs is another state altogether; a serial that differs is a
// stale plan. A plan made before the first state was written has neither
// lineage nor serial, and only the serial can be compared.
func (s *session) checkState(ctx context.Context, saved, key string) (stale bool, err error) {
	prior, err := planPriorState(saved)
	if err != nil {
		return false, badInput("%s: saved plan %s is not a Terraform plan file: %v", s.name, key, err)
	}
	cur, err := s.currentState(ctx)
	if err != nil {
		return false, err
	}
	firstPlan := prior.Lineage == "" && prior.Serial == 0
	if !firstPlan && prior.Lineage != cur.Lineage {
		s.log.Error("state of another lineage than the saved plan's", "plan", key,
			"planLineage", prior.Lineage, "stateLineage", cur.Lineage)
		return false, lineageError(s.name, key, prior.Lineage, cur.Lineage)
	}
	return prior.Serial != cur.Serial, nil
}

// lineageError is the non-retryable refusal to apply or re-plan a saved plan
// over a state that is not the one it was made from: a re-plan would treat
// another stack's resources, or a state that lost track of them, as this
// one's.
func lineageError(name, key, planLineage, stateLineage string) error {
	msg := fmt.Sprintf("state of %s has lineage %s but saved plan %s was made from state lineage %s: "+
		"the state was replaced or is another stack's; not planning over it", name, stateLineage, key, planLineage)
	if stateLineage == "" {
		msg = fmt.Sprintf("state of %s is empty (no lineage) but saved plan %s was made from state lineage %s: "+
			"the state was removed or replaced by an empty one; not planning over it", name, key, planLineage)
	}
	return temporal.NewNonRetryableApplicationError(msg, ErrStateLineage, nil)
}

// saveReplan stores a re-plan and its JSON under keys of their own, beside
// the approved plan's and never over them: the approved plan stays what the
// approvers saw, and the re-plan is what the gate shows next. The name is
// the plan file's digest, so that two re-plans never share a key (a plan
// file records its prior state and the time it was made).
func (s *session) saveReplan(ctx context.Context, file string, raw []byte, sum Summary, changes bool) (*PlanResult, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("save re-plan of %s: %w", s.name, err)
	}
	digest := sha256.Sum256(b)
	base := path.Join(s.st.Application, s.st.Version, s.st.Region, "replan-"+hex.EncodeToString(digest[:6]))
	pr := &PlanResult{PlanKey: base + ".tfplan", JSONKey: base + ".json", Summary: sum,
		SHA256: hex.EncodeToString(digest[:]), Changes: changes}
	if err := s.a.Artifacts.Put(ctx, pr.PlanKey, bytes.NewReader(b)); err != nil {
		return nil, fmt.Errorf("save re-plan of %s: %w", s.name, err)
	}
	if err := s.a.Artifacts.Put(ctx, pr.JSONKey, bytes.NewReader(raw)); err != nil {
		return nil, fmt.Errorf("save re-plan JSON of %s: %w", s.name, err)
	}
	return pr, nil
}
