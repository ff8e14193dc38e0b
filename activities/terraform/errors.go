package terraform

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"go.temporal.io/sdk/temporal"
)

func badInput(format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, args...), ErrBadInput, nil)
}

func configError(msg string, cause error) error {
	return temporal.NewNonRetryableApplicationError(msg, ErrConfig, cause)
}

// isConfig reports whether err is a configuration error (configError).
func isConfig(err error) bool {
	var ae *temporal.ApplicationError
	return errors.As(err, &ae) && ae.Type() == ErrConfig
}

// segment reports whether s can name one level of the working copy and of
// artifact keys: no separators, nothing that climbs out.
func segment(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, `/\`) && !strings.ContainsRune(s, 0)
}

func checkStack(st Stack) error {
	switch {
	case !segment(st.Application):
		return badInput("terraform stack: bad application name %q", st.Application)
	case !segment(st.Region):
		return badInput("terraform stack %s: bad region name %q", st.Application, st.Region)
	case !segment(st.Version):
		return badInput("terraform stack %s/%s: bad version %q", st.Application, st.Region, st.Version)
	case st.Dir == "":
		return badInput("terraform stack %s/%s: no stack dir", st.Application, st.Region)
	}
	return nil
}

// Diagnostics that mean the stack (or the variables given to it) is wrong,
// whatever the state of the world: retrying cannot make them go away. The
// rest of the configuration errors are told by validate once plan failed.
var configSummaries = []string{
	"problems with the configuration", // init could not even read the configuration
	"No value for required variable",
	"Value for undeclared variable",
	"Invalid value for input variable",
	"Invalid value for variable",
	"Unsupported Terraform Core version",
}

var errorLine = regexp.MustCompile(`(?m)^Error: (.+)$`)

// fail wraps the error of a Terraform command, deciding whether a retry can
// help. Cancellation is reported as such; configuration errors are not
// retryable; anything else (a lock held too long, a crash, a cloud API
// error) is.
func (s *session) fail(ctx context.Context, command string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("terraform %s %s stopped: %w", command, s.name, errors.Join(ctx.Err(), err))
	}
	// Terraform wraps its messages at 78 columns.
	text := strings.Join(strings.Fields(err.Error()), " ")
	for _, c := range configSummaries {
		if strings.Contains(text, c) {
			return configError(fmt.Sprintf("terraform %s %s: %s", command, s.name, diagnostics(err.Error())), err)
		}
	}
	return fmt.Errorf("terraform %s %s: %w", command, s.name, err)
}

// diagnostics is the "Error: ..." summaries of Terraform's output, or the
// first line when there are none.
func diagnostics(text string) string {
	var out []string
	for _, m := range errorLine.FindAllStringSubmatch(text, -1) {
		s := strings.TrimSpace(m[1])
		if strings.HasPrefix(s, "Terraform encountered problems during initialisation") {
			continue // the preamble of the errors that follow
		}
		if !contains(out, s) {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		first, _, _ := strings.Cut(text, "\n")
		return first
	}
	return strings.Join(out, "; ")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// isStale reports whether apply refused a saved plan because the state
// changed after the plan was made.
func isStale(err error) bool {
	return err != nil && strings.Contains(err.Error(), "Saved plan is stale")
}

// isOtherLineage reports whether apply refused a saved plan because the
// state is not the one the plan was made from (another lineage): not stale,
// and never re-planned over.
func isOtherLineage(err error) bool {
	return err != nil && strings.Contains(err.Error(), "Saved plan does not match the given state")
}
