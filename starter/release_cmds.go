package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/keelson-dev/keelson/control"
	"github.com/keelson-dev/keelson/release"
	"github.com/keelson-dev/keelson/workflows"
)

// Time limits of one command's calls. Watching has none: it lasts as long
// as the release.
const (
	callTimeout   = 30 * time.Second
	statusTimeout = 15 * time.Second
)

func (a *app) startCmd() *cobra.Command {
	var file, version, commitTime string
	var wait, rerun, supersede, dry bool
	cmd := &cobra.Command{
		Use:   "start -f FILE --version V [--wait] [--rerun] [--supersede]",
		Short: "Start a release (or return the one already running)",
		Args:  cobra.NoArgs,
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "release file (YAML)")
	cmd.Flags().StringVar(&version, "version", "", "application version to release")
	cmd.Flags().BoolVar(&wait, "wait", false, "show progress until the release finishes; exit 1 unless it succeeded")
	cmd.Flags().BoolVar(&rerun, "rerun", false, "start again a release that already succeeded (a failure rolls back only what the re-run changed)")
	cmd.Flags().BoolVar(&supersede, "supersede", false, "abort the application's running and queued releases (each rolls back by its policy), then start this one")
	cmd.Flags().BoolVar(&dry, "dry-run", false, "pack the release's bundle and print its digest and contents; start nothing")
	cmd.Flags().StringVar(&commitTime, "commit-time", "", "when the released change was committed, RFC 3339 (env KEELSON_COMMIT_TIME, or CI_COMMIT_TIMESTAMP): DORA's lead time starts there")
	_ = cmd.MarkFlagRequired("file")
	_ = cmd.MarkFlagRequired("version")
	cmd.RunE = a.runE(func(cmd *cobra.Command, _ []string) error {
		// Everything about the request is checked before dialing: a bad file
		// starts nothing, and says every problem at once.
		var problems []string
		spec, err := a.loadSpec(file)
		if err != nil {
			var errs *release.Errors
			if errors.As(err, &errs) {
				for _, p := range errs.List {
					problems = append(problems, p.Error())
				}
			} else {
				problems = append(problems, err.Error())
			}
		}
		if err := release.ValidateVersion(version); err != nil {
			problems = append(problems, "--version: "+err.Error())
		}
		committed, err := a.commitTime(commitTime)
		if err != nil {
			problems = append(problems, err.Error())
		}
		if len(problems) > 0 {
			return &exitError{code: exitUsage, lines: problems}
		}

		ctx, stop := interruptible(cmd.Context())
		defer stop()
		// The bundle first: the chart and stack are read here, once, and
		// the release carries their digest, never a path of this machine.
		pctx, cancel := context.WithTimeout(ctx, callTimeout)
		p, err := a.pack(pctx, spec, a.g.artifacts, dry)
		cancel()
		if err != nil {
			return err
		}
		if dry {
			fmt.Fprintf(a.out, "release: %s (dry run: nothing uploaded or started)\n", workflows.ReleaseID(spec.Application, version))
			fmt.Fprint(a.out, p.Describe)
			return nil
		}
		r, closeFn, err := a.dial(ctx)
		if err != nil {
			return err
		}
		defer closeFn()
		sctx, cancel := context.WithTimeout(ctx, callTimeout)
		res, err := r.Start(sctx, p.Spec, version, control.StartOptions{StartedBy: a.g.user, CommitTime: committed, Rerun: rerun, Supersede: supersede, Bundle: p.Digest})
		cancel()
		if err != nil {
			return err
		}
		fmt.Fprintf(a.out, "release: %s\n", res.ReleaseID)
		fmt.Fprintf(a.out, "url: %s\n", res.URL)
		fmt.Fprintf(a.out, "bundle: %s\n", p.Digest)
		if res.Existing {
			fmt.Fprintf(a.out, "already running: yes (run %s; nothing new was started)\n", res.RunID)
		} else {
			fmt.Fprintf(a.out, "already running: no (started run %s)\n", res.RunID)
		}
		if !wait {
			return nil
		}
		return a.watch(ctx, r, res.ReleaseID)
	})
	return cmd
}

// commitTime reads the commit time of a start: the flag, else
// KEELSON_COMMIT_TIME, else GitLab's CI_COMMIT_TIMESTAMP; zero when none
// is given (the release then has no lead time).
func (a *app) commitTime(flag string) (time.Time, error) {
	v, from := flag, "--commit-time"
	for _, name := range []string{"KEELSON_COMMIT_TIME", "CI_COMMIT_TIMESTAMP"} {
		if v == "" {
			v, from = a.getenv(name), name
		}
	}
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %q is not an RFC 3339 time (2026-11-22T09:30:00Z)", from, v)
	}
	return t.UTC(), nil
}

func (a *app) statusCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status RELEASE_ID [-o json]",
		Short: "Show a release's phase, gate, and every region",
		Args:  exactID,
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.RunE = a.runE(func(cmd *cobra.Command, args []string) error {
		if output != "table" && output != "json" {
			return usageError("--output %q: want table or json", output)
		}
		return a.call(cmd.Context(), statusTimeout, func(ctx context.Context, r releases) error {
			st, err := r.Status(ctx, args[0])
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(a.out)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			renderStatus(a.out, args[0], st, a.now(), a.loc, a.color)
			return nil
		})
	})
	return cmd
}

func (a *app) watchCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "watch RELEASE_ID",
		Short: "Follow a release until it finishes; exit 1 unless it succeeded",
		Args:  exactID,
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			ctx, stop := interruptible(cmd.Context())
			defer stop()
			r, closeFn, err := a.dial(ctx)
			if err != nil {
				return err
			}
			defer closeFn()
			return a.watch(ctx, r, args[0])
		}),
	}
}

func (a *app) listCmd() *cobra.Command {
	var q control.ListQuery
	cmd := &cobra.Command{
		Use:   "list [--app A] [--phase P] [--version V] [--attention]",
		Short: "List releases, newest first",
		Long: `List releases, newest first. --attention keeps those a person should look at: waiting for an
approval, paused or held now, or failed or rolled back in the last 24 hours. The same filter works in
the Temporal Web UI's search box (see the README).`,
		Args: cobra.NoArgs,
	}
	cmd.Flags().BoolVar(&q.Attention, "attention", false, "only releases waiting for a person, or failed or rolled back in the last 24 hours")
	cmd.Flags().StringVar(&q.Application, "app", "", "only this application")
	cmd.Flags().StringVar(&q.Phase, "phase", "", "only releases in this phase (deploying, awaiting-approval, succeeded...)")
	cmd.Flags().StringVar(&q.Version, "version", "", "only this version")
	cmd.Flags().IntVar(&q.Limit, "limit", 50, "at most this many releases")
	cmd.RunE = a.runE(func(cmd *cobra.Command, _ []string) error {
		return a.call(cmd.Context(), statusTimeout, func(ctx context.Context, r releases) error {
			if q.Attention {
				q.AttentionSince = a.now().Add(-24 * time.Hour)
			}
			list, err := r.List(ctx, q)
			if err != nil {
				return err
			}
			renderList(a.out, list, a.loc)
			return nil
		})
	})
	return cmd
}

// watch prints progress until the release finishes, then its result; the
// error carries the exit code for a release that did not succeed.
func (a *app) watch(ctx context.Context, r releases, id string) error {
	done := make(chan resultOrErr, 1)
	go func() { done <- a.awaitResult(ctx, r, id) }()

	w := &watcher{out: a.out, now: a.now, loc: a.loc, color: a.color, releaseID: id}
	poll := func() error {
		qctx, cancel := context.WithTimeout(ctx, statusTimeout)
		defer cancel()
		st, err := r.Status(qctx, id)
		if err != nil {
			if errors.Is(err, control.ErrNotFound) {
				return err
			}
			// A worker restarting or the server blinking must not end a
			// watch: say so once and keep polling.
			w.problem(err)
			return nil
		}
		w.update(st)
		return nil
	}
	if err := poll(); err != nil {
		return err
	}
	tick := time.NewTicker(a.poll)
	defer tick.Stop()
	for {
		select {
		case res := <-done:
			if res.err != nil {
				return res.err
			}
			_ = poll() // the last transitions, before the summary
			fmt.Fprintln(a.out)
			renderResult(a.out, res.res, a.loc, a.color)
			if code := exitCodeFor(res.res.Phase); code != exitOK {
				msg := fmt.Sprintf("release %s %s", id, res.res.Phase)
				if res.res.Reason != "" {
					msg += ": " + res.res.Reason
				}
				return &exitError{code: code, lines: []string{msg}}
			}
			return nil
		case <-tick.C:
			if err := poll(); err != nil {
				return err
			}
		case <-ctx.Done():
			return fmt.Errorf("stopped watching; release %s goes on (keelson release watch %s)", id, id)
		}
	}
}

type resultOrErr struct {
	res *workflows.ReleaseResult
	err error
}

// awaitResult waits for the release's result, riding out a Temporal
// restart: a watch in CI should survive what the release survives.
func (a *app) awaitResult(ctx context.Context, r releases, id string) resultOrErr {
	for {
		res, err := r.Result(ctx, id)
		if err == nil {
			return resultOrErr{res: res}
		}
		if ctx.Err() != nil || !(errors.Is(err, control.ErrUnavailable) || errors.Is(err, control.ErrNoAnswer)) {
			return resultOrErr{err: err}
		}
		select {
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
		}
	}
}

// exitCodeFor is the exit code of a finished release: only success is 0.
func exitCodeFor(p workflows.Phase) int {
	if p == workflows.PhaseSucceeded {
		return exitOK
	}
	return exitFailure
}

func exactID(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usageError("%s needs one RELEASE_ID (like release-demo-1.2.0), got %d arguments", cmd.CommandPath(), len(args))
	}
	return nil
}

// interruptible ends ctx on Ctrl-C or SIGTERM: watching stops, the release
// does not.
func interruptible(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}
