package train

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
)

func resolve(t *testing.T, a *Activities, src VersionSource) (*ResolvedVersion, error) {
	t.Helper()
	return a.ResolveVersion(context.Background(), ResolveVersionInput{Schedule: "weekly", Application: "demo", Source: src})
}

// nonRetryable returns the error's type when the workflow would not retry it.
func nonRetryable(err error) string {
	var app *temporal.ApplicationError
	if errors.As(err, &app) && app.NonRetryable() {
		return app.Type()
	}
	return ""
}

func TestResolveVersionFromAFile(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "VERSION")
	if err := os.WriteFile(f, []byte("\n  1.4.2  \n2026-11-20T08:00:00+01:00\nignored\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := resolve(t, &Activities{}, VersionSource{File: f})
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != "1.4.2" || !got.CommitTime.Equal(time.Date(2026, 11, 20, 7, 0, 0, 0, time.UTC)) || got.From != "file "+f {
		t.Errorf("got %+v", got)
	}

	// A missing file may appear (a CI job writing it): retried.
	_, err = resolve(t, &Activities{}, VersionSource{File: filepath.Join(dir, "missing")})
	if err == nil || nonRetryable(err) != "" || !strings.Contains(err.Error(), "read version file") {
		t.Errorf("missing file: %v", err)
	}
}

func TestResolveVersionFromACommand(t *testing.T) {
	a := &Activities{Env: CommandEnv(os.Environ())}
	got, err := resolve(t, a, VersionSource{Command: `echo "$KEELSON_APPLICATION-1.0.$((1+1))"`})
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != "demo-1.0.2" || !got.CommitTime.IsZero() {
		t.Errorf("got %+v", got)
	}

	cases := []struct {
		name, command string
		timeout       time.Duration
		want          string // in the message
		typ           string // non-retryable type, "" when retried
	}{
		{"fails", "echo 'registry unreachable' >&2; exit 3", 0, "exited with status 3: registry unreachable", ""},
		{"not found", "no-such-tool-keelson --latest", 0, "exited with status 127", ErrCommandNotFound},
		{"no output", "true", 0, "printed no version", ErrBadVersion},
		{"not a version", "echo 'v 1.2'", 0, `version "v 1.2" contains spaces`, ErrBadVersion},
		{"bad commit time", "printf '1.2.0\\nyesterday\\n'", 0, "not an RFC 3339 commit time", ErrBadVersion},
		{"hangs", "sleep 30 & sleep 30; echo 1.0.0", 300 * time.Millisecond, "did not finish within 300ms", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			_, err := resolve(t, a, VersionSource{Command: c.command, Timeout: c.timeout})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to say %q", err, c.want)
			}
			if got := nonRetryable(err); got != c.typ {
				t.Errorf("non-retryable type %q, want %q (%v)", got, c.typ, err)
			}
			// The whole process group goes on timeout, so a background
			// child holding the pipe does not keep the activity waiting.
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %s", d)
			}
		})
	}
}

func TestVersionSourceValidate(t *testing.T) {
	for _, c := range []struct {
		src  VersionSource
		want string
	}{
		{VersionSource{Command: "git describe"}, ""},
		{VersionSource{File: "/srv/VERSION"}, ""},
		{VersionSource{Version: "1.2.3"}, ""},
		{VersionSource{}, "no version source"},
		{VersionSource{Command: "x", File: "/y"}, "more than one"},
		{VersionSource{File: "VERSION"}, "not an absolute path"},
		{VersionSource{Version: "1 2"}, "contains spaces"},
	} {
		err := c.src.Validate()
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%+v: error %v, want %q", c.src, err, c.want)
		}
	}
}

func TestCommandEnvKeepsOnlyWhatToolsNeed(t *testing.T) {
	env := CommandEnv([]string{"PATH=/bin", "HOME=/root", "AWS_PROFILE=ci", "KEELSON_SLACK_BOT_TOKEN=xoxb-secret", "GIT_SSH_COMMAND=ssh", "TEMPORAL_ADDRESS=x"})
	if got := strings.Join(env, " "); got != "PATH=/bin HOME=/root AWS_PROFILE=ci GIT_SSH_COMMAND=ssh" {
		t.Errorf("env %q", got)
	}
}
