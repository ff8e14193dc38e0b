// Package train holds the activities of a release train, the workflow a
// schedule starts: resolve which version to release (a command or a file on
// the worker), and find the application's last successful release in
// Temporal's visibility so that a train with nothing new does nothing.
package train

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/keelson-dev/keelson/release"
)

// Types of the non-retryable errors, for errors.As on the workflow side and
// for people reading a failed train.
const (
	// ErrBadInput: the train's own input is wrong (no source, relative path).
	ErrBadInput = "TrainBadInput"
	// ErrBadVersion: the source answered, with something that is not a
	// version. Asking again gives the same answer.
	ErrBadVersion = "TrainBadVersion"
	// ErrCommandNotFound: the shell could not find or run the command.
	ErrCommandNotFound = "TrainCommandNotFound"
)

// DefaultCommandTimeout bounds a version command when the schedule does not
// say: long enough for a registry or git remote to answer, short enough that
// a hung one fails the train within minutes rather than holding the schedule
// (skip-overlap) for the whole activity timeout.
const DefaultCommandTimeout = time.Minute

// maxOutput bounds what is read of a command's output or a version file:
// a version is one short line, and a misdirected command (a log dump) must
// not pull megabytes into the worker or the history.
const maxOutput = 64 << 10

// killGrace is how long a command's pipes may stay open after it was killed
// (a grandchild holding them) before Wait gives up on them.
const killGrace = 2 * time.Second

// VersionSource says where a train finds the version to release. Exactly
// one of Command, File and Version is set.
type VersionSource struct {
	// Command runs with `sh -c` on the worker; the first line it prints is
	// the version, an optional second line an RFC 3339 commit time.
	Command string `json:"command,omitempty"`
	// File is an absolute path on the worker, read the same way.
	File string `json:"file,omitempty"`
	// Version is a fixed version: a one-off scheduled release.
	Version string `json:"version,omitempty"`
	// Timeout bounds Command; DefaultCommandTimeout when zero.
	Timeout time.Duration `json:"timeout,omitempty"`
}

// Validate checks the source without running or reading anything.
func (s VersionSource) Validate() error {
	n := 0
	for _, v := range []string{s.Command, s.File, s.Version} {
		if strings.TrimSpace(v) != "" {
			n++
		}
	}
	switch {
	case n == 0:
		return errors.New("no version source: give a command, a file or a version")
	case n > 1:
		return errors.New("more than one version source: give one of a command, a file or a version")
	case s.File != "" && !filepath.IsAbs(s.File):
		return fmt.Errorf("version file %q is not an absolute path: the worker reads it, from its own working directory", s.File)
	case s.Version != "":
		return release.ValidateVersion(s.Version)
	case s.Timeout < 0:
		return fmt.Errorf("version command timeout %s is negative", s.Timeout)
	}
	return nil
}

// CommandTimeout is the command's time limit.
func (s VersionSource) CommandTimeout() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	return DefaultCommandTimeout
}

// String says where the version comes from, for summaries and messages.
func (s VersionSource) String() string {
	switch {
	case s.Command != "":
		return fmt.Sprintf("command `%s`", s.Command)
	case s.File != "":
		return "file " + s.File
	case s.Version != "":
		return "fixed version " + s.Version
	}
	return "no source"
}

// Activities resolve versions and read visibility. The worker registers one
// value with its Temporal client.
type Activities struct {
	Client client.Client
	// Env is the whole environment of version commands: the worker passes
	// an explicit list (CommandEnv), never its own environment by accident.
	Env    []string
	Logger *slog.Logger
}

// CommandEnv is the environment version commands get from the worker's:
// what git, curl and the cloud CLIs need to find themselves, their
// configuration and credentials, and nothing else of the worker's (its
// Slack tokens stay with it).
func CommandEnv(environ []string) []string {
	var env []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "PATH", k == "HOME", k == "USER", k == "LANG", k == "TMPDIR", k == "TZ",
			k == "SSL_CERT_FILE", k == "SSL_CERT_DIR", k == "HTTPS_PROXY", k == "HTTP_PROXY", k == "NO_PROXY",
			strings.HasPrefix(k, "AWS_"), strings.HasPrefix(k, "GIT_"), strings.HasPrefix(k, "KEELSON_VERSION_"):
			env = append(env, kv)
		}
	}
	return env
}

func (a *Activities) log() *slog.Logger {
	if a.Logger != nil {
		return a.Logger
	}
	return slog.Default()
}

// ResolveVersionInput asks for the version a train releases.
type ResolveVersionInput struct {
	Schedule    string        `json:"schedule"`
	Application string        `json:"application"`
	Source      VersionSource `json:"source"`
}

// ResolvedVersion is what the source said.
type ResolvedVersion struct {
	Version string `json:"version"`
	// CommitTime is the source's second line, when it gave one: DORA's
	// lead time of a scheduled release starts there.
	CommitTime time.Time `json:"commitTime,omitempty"`
	// From repeats the source, for the train's details.
	From string `json:"from"`
}

// ResolveVersion runs the command or reads the file. A source that cannot
// be reached (a command that failed or timed out, a file missing) is retried
// by the workflow's policy; one that answers with something that is not a
// version, or a command the shell cannot find, is not.
func (a *Activities) ResolveVersion(ctx context.Context, in ResolveVersionInput) (*ResolvedVersion, error) {
	if err := in.Source.Validate(); err != nil {
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), ErrBadInput, nil)
	}
	var (
		out []byte
		err error
	)
	switch {
	case in.Source.Version != "":
		return &ResolvedVersion{Version: in.Source.Version, From: in.Source.String()}, nil
	case in.Source.File != "":
		out, err = readHead(in.Source.File)
	default:
		out, err = a.run(ctx, in)
	}
	if err != nil {
		return nil, err
	}
	res, err := parseVersion(out)
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: %v", in.Source, err), ErrBadVersion, nil)
	}
	res.From = in.Source.String()
	a.log().Info("train version resolved", "schedule", in.Schedule, "application", in.Application, "from", res.From, "version", res.Version)
	return res, nil
}

func readHead(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read version file %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxOutput))
	if err != nil {
		return nil, fmt.Errorf("read version file %s: %w", path, err)
	}
	return b, nil
}

func (a *Activities) run(ctx context.Context, in ResolveVersionInput) ([]byte, error) {
	timeout := in.Source.CommandTimeout()
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, "sh", "-c", in.Source.Command)
	cmd.Env = append(append([]string{}, a.Env...),
		"KEELSON_SCHEDULE="+in.Schedule, "KEELSON_APPLICATION="+in.Application)
	// The command may start others (a pipeline, git's helpers): on timeout
	// the whole group goes, not only the shell.
	ownGroup(cmd)
	cmd.WaitDelay = killGrace
	var stdout, stderr limitedBuffer
	stdout.max, stderr.max = maxOutput, 4<<10
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if errors.Is(cctx.Err(), context.DeadlineExceeded) {
		return nil, fmt.Errorf("version command `%s` did not finish within %s%s", in.Source.Command, timeout, tail(stderr.String()))
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("version command `%s`: %w", in.Source.Command, ctx.Err())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		msg := fmt.Sprintf("version command `%s` exited with status %d%s", in.Source.Command, ee.ExitCode(), tail(stderr.String()))
		// 126 and 127 are the shell's "cannot execute" and "not found":
		// the worker lacks the tool, which no retry brings.
		if code := ee.ExitCode(); code == 126 || code == 127 {
			return nil, temporal.NewNonRetryableApplicationError(msg, ErrCommandNotFound, nil)
		}
		return nil, errors.New(msg)
	}
	if err != nil {
		return nil, fmt.Errorf("run version command `%s`: %w", in.Source.Command, err)
	}
	return stdout.Bytes(), nil
}

// tail is the last line of a command's stderr, to say why it failed.
func tail(stderr string) string {
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if last := strings.TrimSpace(lines[len(lines)-1]); last != "" {
		return ": " + last
	}
	return ""
}

// parseVersion reads the first non-empty line as the version and an
// optional next line as the commit time.
func parseVersion(out []byte) (*ResolvedVersion, error) {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() && len(lines) < 2 {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return nil, errors.New("printed no version (want the version on the first line)")
	}
	if err := release.ValidateVersion(lines[0]); err != nil {
		return nil, err
	}
	res := &ResolvedVersion{Version: lines[0]}
	if len(lines) > 1 {
		t, err := time.Parse(time.RFC3339, lines[1])
		if err != nil {
			return nil, fmt.Errorf("second line %q is not an RFC 3339 commit time (2026-11-22T09:30:00Z); leave it out if there is none", lines[1])
		}
		res.CommitTime = t.UTC()
	}
	return res, nil
}

// limitedBuffer keeps the first max bytes written and drops the rest, so a
// chatty command cannot fill the worker's memory.
type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// LastReleaseInput asks about an application's successful releases.
type LastReleaseInput struct {
	Application string `json:"application"`
	// ReleaseID is the release the train would start: has it succeeded
	// before?
	ReleaseID string `json:"releaseId"`
}

// ReleaseRef is one finished release as visibility sees it.
type ReleaseRef struct {
	ReleaseID string    `json:"releaseId"`
	RunID     string    `json:"runId"`
	Version   string    `json:"version"`
	Finished  time.Time `json:"finished"`
}

// LastReleaseResult is the application's last successful release, and the
// train's release if it succeeded before.
type LastReleaseResult struct {
	// Last is the successful release that finished last (a release or an
	// undo: what the regions run now); nil when none is known.
	Last *ReleaseRef `json:"last,omitempty"`
	// Same is the newest successful run of the release the train would
	// start, nil when it never succeeded.
	Same *ReleaseRef `json:"same,omitempty"`
}

// Search attributes and the workflow type read here; the workflows package
// defines them, but activities do not import workflows.
const (
	attrApplication = "KeelsonApplication"
	attrVersion     = "KeelsonVersion"
	attrPhase       = "KeelsonPhase"
	phaseSucceeded  = "succeeded"
	releaseWorkflow = "Release"
)

// lastPage is how many succeeded releases are read to find the newest:
// visibility lists closed runs newest first, so the first is normally it;
// a page guards against a store that orders by start time instead.
const lastPage = 20

// LastRelease reads visibility. Visibility is eventually consistent: a
// release that finished a second ago may be missing, which at worst starts a
// train whose release finds the application's lane busy or its own ID taken.
func (a *Activities) LastRelease(ctx context.Context, in LastReleaseInput) (*LastReleaseResult, error) {
	if in.Application == "" || in.ReleaseID == "" {
		return nil, temporal.NewNonRetryableApplicationError("last release needs an application and a release id", ErrBadInput, nil)
	}
	succeeded := fmt.Sprintf("WorkflowType = '%s' AND %s = '%s' AND %s = '%s'",
		releaseWorkflow, attrApplication, quote(in.Application), attrPhase, phaseSucceeded)
	var res LastReleaseResult
	last, err := a.newest(ctx, succeeded)
	if err != nil {
		return nil, fmt.Errorf("find the last successful release of %s: %w", in.Application, err)
	}
	res.Last = last
	same, err := a.newest(ctx, succeeded+fmt.Sprintf(" AND WorkflowId = '%s'", quote(in.ReleaseID)))
	if err != nil {
		return nil, fmt.Errorf("find a successful run of %s: %w", in.ReleaseID, err)
	}
	res.Same = same
	return &res, nil
}

// newest is the closed run matching query that finished last.
func (a *Activities) newest(ctx context.Context, query string) (*ReleaseRef, error) {
	resp, err := a.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{PageSize: lastPage, Query: query})
	if err != nil {
		return nil, err
	}
	var best *ReleaseRef
	for _, e := range resp.GetExecutions() {
		if e.GetCloseTime() == nil {
			continue
		}
		r := &ReleaseRef{
			ReleaseID: e.GetExecution().GetWorkflowId(),
			RunID:     e.GetExecution().GetRunId(),
			Version:   keyword(e.GetSearchAttributes().GetIndexedFields(), attrVersion),
			Finished:  e.GetCloseTime().AsTime(),
		}
		if best == nil || r.Finished.After(best.Finished) {
			best = r
		}
	}
	return best, nil
}

func quote(s string) string { return strings.ReplaceAll(s, "'", "\\'") }

// keyword decodes a Keyword search attribute; they are plain JSON.
func keyword(fields map[string]*commonpb.Payload, name string) string {
	p, ok := fields[name]
	if !ok {
		return ""
	}
	var s string
	if err := converter.GetDefaultDataConverter().FromPayload(p, &s); err != nil {
		return ""
	}
	return s
}
