package main

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/keelson-dev/keelson/control"
	"github.com/keelson-dev/keelson/workflows"
)

// freezeCmd is `keelson freeze` and `keelson unfreeze`: the stop-the-line
// switch.
func (a *app) freezeCmd(unfreeze bool) *cobra.Command {
	var q workflows.FreezeRequest
	use, short := "freeze (--all | --app A) --reason R", "Stop the line: hold running releases at their next step, and new ones before their first wave"
	if unfreeze {
		use, short = "unfreeze (--all | --app A)", "Lift a freeze: held releases go on"
	}
	cmd := &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs}
	cmd.Flags().BoolVar(&q.All, "all", false, "every application")
	cmd.Flags().StringVar(&q.Application, "app", "", "one application")
	if !unfreeze {
		cmd.Flags().StringVar(&q.Reason, "reason", "", "why (required): the people held read it")
	} else {
		cmd.Flags().StringVar(&q.Reason, "reason", "", "why, recorded in the switch's history")
	}
	cmd.RunE = a.runE(func(cmd *cobra.Command, _ []string) error {
		if q.All == (q.Application != "") {
			return usageError("name --all or one --app")
		}
		if !unfreeze && q.Reason == "" {
			return usageError("freeze needs --reason: the people it holds read it")
		}
		return a.call(cmd.Context(), callTimeout, func(ctx context.Context, r releases) error {
			q.User, q.Via = a.g.user, "cli"
			var st *workflows.FreezeState
			var err error
			if unfreeze {
				st, err = r.Unfreeze(ctx, q)
			} else {
				st, err = r.Freeze(ctx, q)
			}
			if err != nil {
				return err
			}
			scope := "every application"
			if !q.All {
				scope = q.Application
			}
			if unfreeze {
				fmt.Fprintf(a.out, "unfrozen: %s\n", scope)
			} else {
				fmt.Fprintf(a.out, "frozen: %s (%s)\n", scope, q.Reason)
			}
			renderFreezes(a, st)
			return nil
		})
	})
	return cmd
}

// freezesCmd lists the freezes in force.
func (a *app) freezesCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "freezes",
		Short: "Show the freezes in force and how many running releases the switch tells",
		Args:  cobra.NoArgs,
		RunE: a.runE(func(cmd *cobra.Command, _ []string) error {
			return a.call(cmd.Context(), statusTimeout, func(ctx context.Context, r releases) error {
				st, err := r.Freezes(ctx)
				if err != nil {
					return err
				}
				renderFreezes(a, st)
				return nil
			})
		}),
	}
}

func renderFreezes(a *app, st *workflows.FreezeState) {
	if st.All == nil && len(st.Apps) == 0 {
		fmt.Fprintln(a.out, "no freeze in force")
	}
	line := func(scope string, e workflows.FreezeEntry) {
		fmt.Fprintf(a.out, "%-20s frozen by %s since %s (%s ago): %s\n", scope, e.User, when(e.Since, a.loc), a.now().Sub(e.Since).Round(time.Second), e.Reason)
	}
	if st.All != nil {
		line("all applications", *st.All)
	}
	apps := make([]string, 0, len(st.Apps))
	for app := range st.Apps {
		apps = append(apps, app)
	}
	sort.Strings(apps)
	for _, app := range apps {
		line(app, st.Apps[app])
	}
	fmt.Fprintf(a.out, "running releases told: %d\n", len(st.Subscribers))
}

// overrideWindowCmd is `keelson release override-window`.
func (a *app) overrideWindowCmd() *cobra.Command {
	var reason, key string
	cmd := &cobra.Command{
		Use:   "override-window RELEASE_ID --reason R",
		Short: "Let a release go outside its deploy windows and the file's freezes (approvers only)",
		Long: `The release's waves stop waiting for their deploy windows, and its regions stop holding when a
window closes. Only the approvers of the file's gates may do it; the override is recorded with the
release's approvals. The stop-the-line switch (keelson freeze) is not overridden.`,
		Args: exactID,
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (required), recorded with the approvals")
	cmd.Flags().StringVar(&key, "idempotency-key", "", "the same key makes a repeated command one request")
	cmd.RunE = a.runE(func(cmd *cobra.Command, args []string) error {
		if reason == "" {
			return usageError("override-window needs --reason: it is recorded with the approvals")
		}
		return a.call(cmd.Context(), callTimeout, func(ctx context.Context, r releases) error {
			if err := r.OverrideWindow(ctx, args[0], workflows.GateAnswer{User: a.g.user, Reason: reason, Via: "cli"}, control.WithIdempotencyKey(key)); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "deploy windows of %s overridden by %s\n", args[0], a.g.user)
			return nil
		})
	})
	return cmd
}
