package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/converter"

	"github.com/keelson-dev/keelson/codec"
	"github.com/keelson-dev/keelson/control"
	"github.com/keelson-dev/keelson/identity"
	"github.com/keelson-dev/keelson/release"
	"github.com/keelson-dev/keelson/workflows"
)

// Exit codes: 0 done (or the release succeeded), 1 failure (or the release
// did not succeed), 2 bad usage or a bad release file: nothing was done.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// releases is what the commands need of a release backend; *control.Client
// implements it, and tests give a fake.
type releases interface {
	Start(ctx context.Context, spec *release.Spec, version string, opts control.StartOptions) (control.StartResult, error)
	Answer(ctx context.Context, releaseID string, approve bool, a workflows.GateAnswer, opts ...control.UpdateOption) error
	Control(ctx context.Context, releaseID, name string, c workflows.Control, opts ...control.UpdateOption) error
	Rollback(ctx context.Context, releaseID string, c workflows.Control, opts ...control.UpdateOption) (*control.StartResult, error)
	RollbackTo(ctx context.Context, application, version string, o control.UndoOptions) (control.StartResult, error)
	Status(ctx context.Context, releaseID string) (*workflows.Status, error)
	Result(ctx context.Context, releaseID string) (*workflows.ReleaseResult, error)
	List(ctx context.Context, q control.ListQuery) ([]control.ReleaseInfo, error)
	RestoreTraffic(ctx context.Context, o control.RestoreOptions) (control.RestoreResult, error)
	Freeze(ctx context.Context, q workflows.FreezeRequest) (*workflows.FreezeState, error)
	Unfreeze(ctx context.Context, q workflows.FreezeRequest) (*workflows.FreezeState, error)
	Freezes(ctx context.Context) (*workflows.FreezeState, error)
	OverrideWindow(ctx context.Context, releaseID string, a workflows.GateAnswer, opts ...control.UpdateOption) error
	DoraRecords(ctx context.Context, q control.DoraQuery) (control.DoraData, error)
	URL(releaseID string) string
}

// globals are the flags every command shares.
type globals struct {
	address   string
	namespace string
	taskQueue string
	uiURL     string
	user      string
	// artifacts is the artifact store bundles are uploaded to: the
	// workers' store (a URL, or a folder on a machine they share).
	artifacts string
	// codecKeys, when set, are the workers' payload keys (codec.ParseKeys),
	// so that encrypted inputs, results and queries read.
	codecKeys string
	// key is the SSH private key that signs as user; empty uses
	// ssh-agent's ed25519 key when there is an agent.
	key string
}

type app struct {
	g      globals
	out    io.Writer
	errOut io.Writer
	getenv func(string) string
	// connect dials Temporal; replaced in tests.
	connect func(ctx context.Context, g globals) (releases, func(), error)
	now     func() time.Time
	loc     *time.Location
	// color is true when stdout is a terminal and NO_COLOR is unset.
	color bool
	// poll is the interval of status queries while watching.
	poll time.Duration
	// ran is set once a command's own code runs: an error before that is a
	// usage error from parsing.
	ran bool
	// loadSpec reads a release file; release.Load outside tests.
	loadSpec func(path string) (*release.Spec, error)
	// pack bundles a loaded spec (and uploads the bundle unless dry);
	// packSpec outside tests.
	pack func(ctx context.Context, spec *release.Spec, store string, dry bool) (*packed, error)
}

func newApp(stdout, stderr io.Writer, getenv func(string) string) *app {
	return &app{
		out:      stdout,
		errOut:   stderr,
		getenv:   getenv,
		connect:  dialControl,
		now:      time.Now,
		loc:      time.Local,
		color:    isTerminal(stdout) && getenv("NO_COLOR") == "",
		poll:     time.Second,
		loadSpec: release.Load,
		pack:     packSpec,
	}
}

func run(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	return newApp(stdout, stderr, getenv).execute(args)
}

func (a *app) execute(args []string) int {
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetOut(a.out)
	root.SetErr(a.errOut)
	return a.report(root.Execute())
}

// exitError ends the command with a code and, unless quiet, its lines.
type exitError struct {
	code  int
	lines []string
}

func (e *exitError) Error() string { return strings.Join(e.lines, "; ") }

func usageError(format string, args ...any) error {
	return &exitError{code: exitUsage, lines: []string{fmt.Sprintf(format, args...)}}
}

// report prints err as `keelson: ...`, one line per problem, and picks the
// exit code.
func (a *app) report(err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		for _, l := range ee.lines {
			fmt.Fprintf(a.errOut, "keelson: %s\n", oneLine(l))
		}
		return ee.code
	}
	fmt.Fprintf(a.errOut, "keelson: %s\n", oneLine(err.Error()))
	if !a.ran {
		// Cobra's own errors: unknown command or flag, wrong arguments.
		return exitUsage
	}
	return exitFailure
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "; "), "\n", "; ")
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "keelson",
		Short: "Start and steer durable releases on Temporal",
		Long: "keelson starts releases described in a release file and steers them: status, watch,\n" +
			"approve and reject gates, pause, resume, abort, promote and roll back, and give a\n" +
			"region back the traffic a failover took from it.",
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError("%s (see %s --help)", err, c.CommandPath())
	})
	user := a.getenv("USER")
	if user == "" {
		user = "cli"
	}
	f := root.PersistentFlags()
	f.StringVar(&a.g.address, "address", a.env("TEMPORAL_ADDRESS", "127.0.0.1:7233"), "Temporal frontend host:port (env TEMPORAL_ADDRESS)")
	f.StringVar(&a.g.namespace, "namespace", a.env("TEMPORAL_NAMESPACE", "default"), "Temporal namespace (env TEMPORAL_NAMESPACE)")
	f.StringVar(&a.g.taskQueue, "task-queue", a.env("KEELSON_TASK_QUEUE", workflows.TaskQueue), "task queue of Keelson's workers (env KEELSON_TASK_QUEUE)")
	f.StringVar(&a.g.uiURL, "ui-url", a.env("KEELSON_UI_URL", "http://localhost:8233"), "Temporal Web UI base URL, for links (env KEELSON_UI_URL)")
	f.StringVar(&a.g.user, "user", a.env("KEELSON_USER", user), "who you are, recorded with answers and controls (env KEELSON_USER)")
	f.StringVar(&a.g.key, "key", a.env("KEELSON_SIGNING_KEY", ""), "ed25519 SSH private key that signs your starts, answers and controls as --user; empty: ssh-agent's ed25519 key, if any (env KEELSON_SIGNING_KEY)")
	f.StringVar(&a.g.codecKeys, "codec-keys", a.env(codec.EnvKeys, ""), "the workers' payload keys when payloads are encrypted: ID=file:/path or ID=env:NAME, comma-separated (env "+codec.EnvKeys+")")
	f.StringVar(&a.g.artifacts, "artifacts", a.env("KEELSON_ARTIFACTS", defaultArtifacts(a.getenv)), "artifact store the workers read bundles from: s3://bucket/prefix?region=R, file:///path or a folder (env KEELSON_ARTIFACTS)")

	rel := &cobra.Command{Use: "release", Short: "Start, inspect and list releases"}
	rel.AddCommand(a.startCmd(), a.statusCmd(), a.watchCmd(), a.listCmd(), a.overrideWindowCmd())
	root.AddCommand(rel, a.answerCmd(true), a.answerCmd(false))
	for _, name := range []string{workflows.UpdatePause, workflows.UpdateResume, workflows.UpdateAbort, workflows.UpdatePromote, workflows.UpdateRollback} {
		root.AddCommand(a.controlCmd(name))
	}
	root.AddCommand(a.freezeCmd(false), a.freezeCmd(true), a.freezesCmd())
	root.AddCommand(a.trafficCmd(), a.versionCmd())
	root.AddCommand(a.scheduleCmd())
	root.AddCommand(a.reportCmd())
	return root
}

func (a *app) env(name, def string) string {
	if v := a.getenv(name); v != "" {
		return v
	}
	return def
}

// runE marks the point where parsing is over, so that report can tell a
// usage error from a failure.
func (a *app) runE(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		a.ran = true
		return fn(cmd, args)
	}
}

// dial connects for one command; the returned func closes the connection.
func (a *app) dial(ctx context.Context) (releases, func(), error) {
	if a.g.user == "" {
		return nil, nil, usageError("--user is empty")
	}
	return a.connect(ctx, a.g)
}

// call dials for one command and runs fn with a context bounded by
// timeout; the connection is closed when fn returns.
func (a *app) call(parent context.Context, timeout time.Duration, fn func(ctx context.Context, r releases) error) error {
	r, closeFn, err := a.dial(parent)
	if err != nil {
		return err
	}
	defer closeFn()
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	return fn(ctx, r)
}

func dialControl(ctx context.Context, g globals) (releases, func(), error) {
	dc := codec.NewKeylessDataConverter()
	var fc converter.FailureConverter
	if g.codecKeys != "" {
		keys, err := codec.ParseKeys(g.codecKeys, os.Getenv)
		if err != nil {
			return nil, nil, usageError("--codec-keys: %v", err)
		}
		dc = codec.NewDataConverter(keys)
		fc = codec.NewFailureConverter(dc)
	}
	host, _ := os.Hostname()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	t, err := control.Dial(dctx, control.DialOptions{
		Address:          g.address,
		Namespace:        g.namespace,
		Identity:         fmt.Sprintf("keelson-cli %s@%s", g.user, host),
		DataConverter:    dc,
		FailureConverter: fc,
	})
	if err != nil {
		return nil, nil, err
	}
	c := &control.Client{T: t, Namespace: g.namespace, TaskQueue: g.taskQueue, UIBaseURL: g.uiURL, Address: g.address, DataConverter: dc}
	if g.key != "" {
		if c.Signer, err = identity.LoadSigner(g.user, g.key); err != nil {
			t.Close()
			return nil, nil, usageError("--key: %v", err)
		}
	} else if c.Signer, err = identity.AgentSigner(g.user, ""); err != nil {
		t.Close()
		return nil, nil, fmt.Errorf("sign as %s: %w", g.user, err)
	}
	return c, t.Close, nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
