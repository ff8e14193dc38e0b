package terraform

import (
	"context"
	"errors"
	"sync"

	"go.temporal.io/sdk/temporal"
)

// The batch activities plan or verify every region of a wave in one
// activity: a release's history then holds three events for the wave
// instead of three per region, and one workflow task for the completion
// instead of one per region. Regions run in parallel, a few at a time.
//
// A region that fails for good (bad input, a plan that cannot be made) is
// reported in its own outcome and does not fail the others; a region that
// may succeed on a retry fails the activity, and Temporal retries the
// whole batch. Plans and verifications only write under their own keys,
// so doing a region again is safe.

// batchParallelism bounds the Terraform processes one batch runs at once.
const batchParallelism = 4

// PlanAllInput plans each stack.
type PlanAllInput struct {
	Inputs []PlanInput `json:"inputs"`
}

// Outcome is one region's result, or why it failed for good.
type Outcome[T any] struct {
	Result *T     `json:"result,omitempty"`
	Error  string `json:"error,omitempty"`
}

// PlanOutcome is one region's plan, or why it failed for good.
type PlanOutcome = Outcome[PlanResult]

// PlanAll is Plan for every input, in the order given.
func (a *Activities) PlanAll(ctx context.Context, in PlanAllInput) ([]PlanOutcome, error) {
	return all(ctx, in.Inputs, a.Plan)
}

// VerifyAllInput verifies each saved plan.
type VerifyAllInput struct {
	Inputs []VerifyInput `json:"inputs"`
}

// VerifyOutcome is one region's verification, or why it failed for good.
type VerifyOutcome = Outcome[VerifyResult]

// VerifyAll is Verify for every input, in the order given.
func (a *Activities) VerifyAll(ctx context.Context, in VerifyAllInput) ([]VerifyOutcome, error) {
	return all(ctx, in.Inputs, a.Verify)
}

// all runs fn for each input (forEach) and gathers the outcomes in order.
func all[I, O any](ctx context.Context, inputs []I, fn func(context.Context, I) (*O, error)) ([]Outcome[O], error) {
	out := make([]Outcome[O], len(inputs))
	err := forEach(len(inputs), func(i int) error {
		res, err := fn(ctx, inputs[i])
		if err != nil {
			return err
		}
		out[i].Result = res
		return nil
	}, func(i int, err error) { out[i].Error = message(err) })
	return out, err
}

// message is an error's text without the cause a Temporal application
// error appends (which repeats it).
func message(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Message()
	}
	return err.Error()
}

// forEach runs fn for 0..n-1, batchParallelism at a time. Errors that are
// non-retryable application errors go to final; the others are joined
// into the returned error, which makes Temporal retry the batch.
func forEach(n int, fn func(int) error, final func(int, error)) error {
	sem := make(chan struct{}, batchParallelism)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = fn(i)
		}()
	}
	wg.Wait()
	var retry []error
	for i, err := range errs {
		if err == nil {
			continue
		}
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.NonRetryable() {
			final(i, err)
			continue
		}
		retry = append(retry, err)
	}
	if len(retry) == 1 {
		return retry[0]
	}
	return errors.Join(retry...)
}
