// Package terraform runs a region's Terraform stack with terraform-exec:
// plan to a saved file, a summary of the plan for the workflow, a check that
// a saved plan still applies as approved, apply of the saved plan
// (re-planning when it went stale, never beyond what was approved), and
// outputs.
package terraform

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"strings"

	"go.temporal.io/sdk/temporal"

	"github.com/keelson-dev/keelson/activities/artifacts"
	"github.com/keelson-dev/keelson/bundle"
)

// Error types of non-retryable failures, for errors.As on the workflow side
// (temporal.ApplicationError.Type()).
const (
	ErrConfig   = "TerraformConfigError" // the stack does not validate or plan: retrying cannot help
	ErrBadInput = "TerraformBadInput"
	// ErrBadBundle: the release's bundle is missing, malformed or not what
	// its digest says; nothing was run.
	ErrBadBundle = "KeelsonBadBundle"
	// ErrPlanExceedsApproved: a re-plan of a stale saved plan does more
	// than the plan that was approved (a destroy or replace that was not in
	// it, an address that was not in it). Non-retryable. Its details carry
	// one *PlanResult: the new plan, saved in the artifact store under a key
	// of its own (never overwriting the approved plan's key), so that the
	// workflow can open the gate again with it.
	ErrPlanExceedsApproved = "TerraformPlanExceedsApproved"
	// ErrPlanNotApproved: the saved plan at the key is not the file that
	// was approved (its digest differs from ApplyInput.Approved's): it was
	// replaced in the artifact store. Non-retryable; nothing is applied.
	ErrPlanNotApproved = "TerraformPlanNotApproved"
	// ErrStateLineage: the state's lineage differs from the saved plan's: it
	// is another stack's state, or was replaced; never re-planned over.
	// Non-retryable; the message names both lineages and the cause.
	ErrStateLineage = "TerraformStateLineage"
)

// Activities holds what Terraform runs need. One value serves every region.
type Activities struct {
	// Binary is the terraform executable; found on PATH when empty.
	Binary string
	// WorkDir is where each application's region keeps its working copy of
	// the stack and its local state: WorkDir/APP/REGION.
	WorkDir string
	// Artifacts keeps plan files and full plan JSON.
	Artifacts artifacts.Store
	// Bundles fetches and caches release bundles by digest.
	Bundles *bundle.Cache
	// Backend, when set, keeps state in S3 where every worker finds it;
	// nil keeps it in the working copy (one worker only).
	Backend *S3Backend
	// Env is passed to Terraform explicitly instead of the whole process
	// environment (TF_CLI_CONFIG_FILE, credentials for real backends).
	Env map[string]string
	// Logger receives Terraform's output line by line; slog.Default() when nil.
	Logger *slog.Logger

	terraforms terraforms
}

// Variables Keelson always sets from Stack, overriding Vars: every stack
// declares them. The version's variable is not called "version" because
// Terraform reserves that name.
const (
	VarApplication = "application"
	VarRegion      = "region"
	VarVersion     = "app_version"
)

// Stack identifies a region's stack and its variables.
type Stack struct {
	Application string `json:"application"`
	Version     string `json:"version"`
	Region      string `json:"region"`
	// Dir is the stack's source directory: absolute on the worker's disk,
	// or, with Bundle, a folder inside the release's bundle.
	Dir string `json:"dir"`
	// Bundle is the digest of the release's bundle (see bundle.ForSpec);
	// empty for releases started before bundles.
	Bundle string            `json:"bundle,omitempty"`
	Vars   map[string]string `json:"vars,omitempty"`
}

// PlanInput asks for a plan saved for a later apply.
type PlanInput struct {
	Stack Stack `json:"stack"`
	// Ungated says that nobody looks at this plan before it applies (its
	// wave has no gate). Plan then runs no terraform show: the result has
	// no summary and no JSONKey (Shown is false), and Apply shows the plan
	// beside the apply, for the summary it returns and the JSON it keeps in
	// the artifact store. Releases started before it leave it false.
	Ungated bool `json:"ungated,omitempty"`
}

// Summary is a plan reduced to what a person approving it needs.
type Summary struct {
	Adds     int      `json:"adds"`
	Changes  int      `json:"changes"`
	Destroys int      `json:"destroys"`
	Added    []string `json:"added,omitempty"`
	Changed  []string `json:"changed,omitempty"`
	// Destroyed lists addresses destroyed, including those replaced.
	Destroyed []string `json:"destroyed,omitempty"`
	// Replaced lists addresses replaced (delete and create, either order);
	// they are in Added and Destroyed too.
	Replaced []string `json:"replaced,omitempty"`
}

// HasChanges reports whether applying the plan would change anything.
func (s Summary) HasChanges() bool { return s.Adds+s.Changes+s.Destroys > 0 }

// PlanResult names the saved plan in the artifact store and summarises it.
type PlanResult struct {
	PlanKey string  `json:"planKey"`
	JSONKey string  `json:"jsonKey"`
	Summary Summary `json:"summary"`
	// SHA256 is the hex digest of the plan file: the plan that was shown
	// is the plan that is applied, whatever happens to the artifact store
	// in between. Empty in results of workers before it.
	SHA256 string `json:"sha256,omitempty"`
	// Changes is true when applying the plan changes anything, resources
	// or outputs (Summary counts resources only).
	Changes bool `json:"changes,omitempty"`
}

// Shown reports whether the plan was shown when it was made: its Summary
// and the JSON at JSONKey exist. An ungated plan (PlanInput.Ungated) is
// shown by Apply.
func (p *PlanResult) Shown() bool { return p != nil && p.JSONKey != "" }

// ApplyInput applies a saved plan.
type ApplyInput struct {
	Stack   Stack  `json:"stack"`
	PlanKey string `json:"planKey"`
	// Approved is the plan as Plan returned it and the gate showed it.
	// When it has a digest, the saved plan must be that very file (a plan
	// file replaced in the store is refused, ErrPlanNotApproved), and its
	// summary is taken from here instead of asking terraform show again.
	// Releases that started before it was passed leave it nil.
	Approved *PlanResult `json:"approved,omitempty"`
}

// ApplyResult tells what the apply did and the stack's outputs afterwards.
type ApplyResult struct {
	// Replanned is true when the saved plan was stale and a new one was made.
	Replanned bool `json:"replanned"`
	// Applied is false when there was nothing left to apply.
	Applied bool    `json:"applied"`
	Summary Summary `json:"summary"`
	// Outputs are the stack's outputs by name, values decoded from their
	// JSON; sensitive outputs are left out (they would land in history).
	Outputs map[string]any `json:"outputs,omitempty"`
}

// PlanKeyFor names a region's saved plan in the artifact store:
// APP/VERSION/REGION/plan.tfplan.
func PlanKeyFor(st Stack) string {
	return path.Join(st.Application, st.Version, st.Region, "plan.tfplan")
}

// JSONKeyFor names the full JSON of a region's saved plan in the artifact
// store: APP/VERSION/REGION/plan.json.
func JSONKeyFor(st Stack) string {
	return path.Join(st.Application, st.Version, st.Region, "plan.json")
}

// Plan runs init and plan -out in the region's working copy of the stack
// (and validate when plan fails, to tell a wrong configuration), uploads
// the plan file and its full JSON to the artifact store, and returns their
// keys and digest with a summary small enough for workflow history.
func (a *Activities) Plan(ctx context.Context, in PlanInput) (*PlanResult, error) {
	s, err := a.open(ctx, in.Stack, "plan")
	if err != nil {
		return nil, err
	}
	defer s.close()

	if err := s.init(ctx); err != nil {
		return nil, err
	}
	planFile := s.scratch("plan.tfplan")
	changes, err := s.plan(ctx, planFile)
	if err != nil {
		if verr := s.validate(ctx); isConfig(verr) {
			return nil, verr
		}
		return nil, err
	}
	digest, err := fileSHA256(planFile)
	if err != nil {
		return nil, fmt.Errorf("plan of %s: %w", s.name, err)
	}
	res := &PlanResult{PlanKey: PlanKeyFor(in.Stack), SHA256: digest, Changes: changes}
	if !in.Ungated {
		plan, raw, err := s.show(ctx, planFile)
		if err != nil {
			return nil, err
		}
		res.JSONKey, res.Summary = JSONKeyFor(in.Stack), Summarize(plan)
		if err := a.Artifacts.Put(ctx, res.JSONKey, bytes.NewReader(raw)); err != nil {
			return nil, fmt.Errorf("upload plan JSON of %s: %w", s.name, err)
		}
	}
	if err := s.upload(ctx, res.PlanKey, planFile); err != nil {
		return nil, err
	}
	s.log.Info("terraform plan saved", "plan", res.PlanKey, "shown", res.Shown(), "changes", changes,
		"adds", res.Summary.Adds, "changed", res.Summary.Changes, "destroys", res.Summary.Destroys)
	return res, nil
}

// Apply applies the saved plan, re-planning if it went stale, and returns
// the outputs. What it applies never exceeds the saved plan, which is the
// plan that was approved: a re-plan that would do more (destroy what the
// saved plan did not, touch an address it did not) is saved under a key of
// its own and returned in an ErrPlanExceedsApproved error, unapplied, for
// the workflow to take back to the gate. A state of another lineage is
// never planned over (ErrStateLineage).
//
// It is safe to retry after a worker died in the middle: the state lock of
// a dead Terraform goes with its process (and a live one is waited for with
// a lock timeout); a saved plan that was already applied, fully or in part,
// is stale, so the retry re-plans and applies only what is left, or nothing;
// what is left is within the saved plan.
func (a *Activities) Apply(ctx context.Context, in ApplyInput) (*ApplyResult, error) {
	// Before anything is applied: a state of another lineage stops here,
	// and a plan known to be stale is not even tried.
	s, saved, stale, err := a.openSaved(ctx, "apply", in.Stack, in.PlanKey)
	if err != nil {
		return nil, err
	}
	defer s.close()
	approvedPlan, err := s.approved(ctx, saved, in)
	if err != nil {
		return nil, err
	}
	var applyErr error
	if !stale {
		// An empty saved plan is applied too: Terraform checks, under the
		// state lock, that the state has not moved since our own look.
		applyErr = s.apply(ctx, saved)
	}
	approved, changes, err := approvedPlan()
	switch {
	case applyErr != nil && !isStale(applyErr):
		return nil, applyErr
	case err != nil:
		return nil, err
	}
	res := &ApplyResult{Summary: approved}
	switch {
	case stale:
	case applyErr != nil:
		stale = true // another run applied between our look and the lock
	default:
		res.Applied = changes
	}
	if stale {
		// The state changed since the plan: another apply, or this very
		// activity's earlier attempt that finished (or got part-way) before
		// its worker died. Plan again and apply whatever is still missing,
		// as long as that stays within what was approved.
		s.log.Info("saved plan is stale, planning again", "plan", in.PlanKey)
		res.Replanned = true
		replan := s.scratch("replan.tfplan")
		changes, err := s.plan(ctx, replan)
		if err != nil {
			return nil, err
		}
		next, raw, err := s.show(ctx, replan)
		if err != nil {
			return nil, err
		}
		res.Summary = Summarize(next)
		if reasons := Exceeds(approved, res.Summary); len(reasons) > 0 {
			pr, err := s.saveReplan(ctx, replan, raw, res.Summary, changes)
			if err != nil {
				return nil, err
			}
			s.log.Warn("re-plan does more than the approved plan; not applied", "plan", in.PlanKey,
				"newPlan", pr.PlanKey, "exceeds", reasons)
			return nil, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("re-plan of %s does more than the approved plan: %s", s.name, strings.Join(reasons, "; ")),
				ErrPlanExceedsApproved, nil, pr)
		}
		if changes {
			if err := s.apply(ctx, replan); err != nil {
				return nil, err
			}
		}
		res.Applied = changes
	}
	if res.Outputs, err = s.outputs(ctx); err != nil {
		return nil, err
	}
	s.log.Info("terraform apply done", "applied", res.Applied, "replanned", res.Replanned,
		"adds", res.Summary.Adds, "changes", res.Summary.Changes, "destroys", res.Summary.Destroys)
	return res, nil
}

// approved returns what waits for the approved plan's summary, and whether
// applying it changes anything. A release that passed the approved plan
// has them already, once the saved file is checked to be that plan; an
// older one's are read with terraform show, beside the apply, and so are
// an ungated plan's, whose JSON is then kept in the artifact store.
func (s *session) approved(ctx context.Context, saved string, in ApplyInput) (func() (Summary, bool, error), error) {
	if a := in.Approved; a != nil && a.SHA256 != "" {
		digest, err := fileSHA256(saved)
		if err != nil {
			return nil, fmt.Errorf("apply %s: %w", s.name, err)
		}
		if digest != a.SHA256 {
			s.log.Error("saved plan is not the approved plan; not applied", "plan", in.PlanKey,
				"sha256", digest, "approved", a.SHA256)
			return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf(
				"apply %s: saved plan %s has digest %s but the approved plan had %s: it was replaced "+
					"in the artifact store after the approval; not applied", s.name, in.PlanKey, digest, a.SHA256),
				ErrPlanNotApproved, nil)
		}
		if a.Shown() {
			return func() (Summary, bool, error) { return a.Summary, a.Changes, nil }, nil
		}
	}
	wait := s.showAside(ctx, saved)
	return func() (Summary, bool, error) {
		plan, raw, err := wait()
		if err != nil {
			return Summary{}, false, err
		}
		if in.Approved != nil && !in.Approved.Shown() {
			// An ungated plan is kept as JSON now, as a gated one was
			// when it was made.
			key := JSONKeyFor(s.st)
			if err := s.a.Artifacts.Put(ctx, key, bytes.NewReader(raw)); err != nil {
				return Summary{}, false, fmt.Errorf("upload plan JSON of %s: %w", s.name, err)
			}
		}
		return Summarize(plan), hasChanges(plan), nil
	}, nil
}

// fileSHA256 is the hex SHA-256 digest of a file.
func fileSHA256(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// checkPlanKey refuses a missing or malformed saved plan key.
func checkPlanKey(op string, st Stack, key string) error {
	if key == "" {
		return badInput("%s %s/%s: no plan key", op, st.Application, st.Region)
	}
	if err := artifacts.CheckKey(key); err != nil {
		return badInput("%s %s/%s: %v", op, st.Application, st.Region, err)
	}
	return nil
}

// download fetches a saved plan into the working copy.
func (s *session) download(ctx context.Context, key, dst string) error {
	rc, err := s.a.Artifacts.Get(ctx, key)
	if errors.Is(err, artifacts.ErrNotFound) || errors.Is(err, artifacts.ErrBadKey) {
		return badInput("%s: saved plan %s: %v", s.name, key, err)
	}
	if err != nil {
		return fmt.Errorf("fetch saved plan %s for %s: %w", key, s.name, err)
	}
	defer rc.Close()
	f, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("fetch saved plan %s for %s: %w", key, s.name, err)
	}
	if _, err := f.ReadFrom(rc); err != nil {
		f.Close()
		return fmt.Errorf("fetch saved plan %s for %s: %w", key, s.name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("fetch saved plan %s for %s: %w", key, s.name, err)
	}
	return nil
}

// upload stores the plan file under key.
func (s *session) upload(ctx context.Context, key, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("upload plan of %s: %w", s.name, err)
	}
	defer f.Close()
	if err := s.a.Artifacts.Put(ctx, key, f); err != nil {
		return fmt.Errorf("upload plan of %s: %w", s.name, err)
	}
	return nil
}
