package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/keelson-dev/keelson/control"
	"github.com/keelson-dev/keelson/workflows"
)

// version is set at build time: -ldflags "-X main.version=1.0.0".
var version = "dev"

func (a *app) answerCmd(approve bool) *cobra.Command {
	name, short := workflows.UpdateReject, "Reject a release's open gate (ends the release)"
	if approve {
		name, short = workflows.UpdateApprove, "Approve a release's open gate"
	}
	var gate, reason, key string
	cmd := &cobra.Command{
		Use:   name + " RELEASE_ID [--gate G] [--reason R]",
		Short: short,
		Args:  exactID,
	}
	cmd.Flags().StringVar(&gate, "gate", "", "gate to answer; the gate open now when empty")
	if approve {
		cmd.Flags().StringVar(&reason, "reason", "", "why, recorded with the approval")
	} else {
		cmd.Flags().StringVar(&reason, "reason", "", "why (required), recorded with the rejection")
	}
	cmd.Flags().StringVar(&key, "idempotency-key", "", "the same key makes a repeated command one answer")
	cmd.RunE = a.runE(func(cmd *cobra.Command, args []string) error {
		if !approve && reason == "" {
			return usageError("reject needs --reason: it is recorded in the release's history")
		}
		return a.call(cmd.Context(), callTimeout, func(ctx context.Context, r releases) error {
			ans := workflows.GateAnswer{Gate: gate, User: a.g.user, Reason: reason, Via: "cli"}
			if err := r.Answer(ctx, args[0], approve, ans, control.WithIdempotencyKey(key)); err != nil {
				return err
			}
			what := "the open gate"
			if gate != "" {
				what = "gate " + gate
			}
			verb := "rejected"
			if approve {
				verb = "approved"
			}
			fmt.Fprintf(a.out, "%s %s of %s as %s\n", verb, what, args[0], a.g.user)
			return nil
		})
	})
	return cmd
}

var controlShort = map[string]string{
	workflows.UpdatePause:    "Pause a release before its next step",
	workflows.UpdateResume:   "Resume a paused release",
	workflows.UpdateAbort:    "Abort a release (regions are rolled back as its policy says)",
	workflows.UpdatePromote:  "Promote now: skip the rest of the canary or bake",
	workflows.UpdateRollback: "Roll back the release, or some of its regions",
}

var controlDone = map[string]string{
	workflows.UpdatePause:    "paused",
	workflows.UpdateResume:   "resumed",
	workflows.UpdateAbort:    "aborted",
	workflows.UpdatePromote:  "promoted",
	workflows.UpdateRollback: "rollback requested for",
}

func (a *app) controlCmd(name string) *cobra.Command {
	var ctl workflows.Control
	var key, to string
	regional := name == workflows.UpdatePromote || name == workflows.UpdateRollback
	use := name + " RELEASE_ID [--reason R]"
	if regional {
		use += " [--region R ...]"
	}
	if name == workflows.UpdateRollback {
		use = "rollback (RELEASE_ID | APP --to VERSION) [--reason R] [--region R ...] [--wave W ...]"
	}
	cmd := &cobra.Command{Use: use, Short: controlShort[name], Args: exactID}
	if name == workflows.UpdateRollback {
		cmd.Long = `Roll back a release. A running release rolls back through its rollback Update: it
stops, and the regions it changed go back wave by wave, the last wave first; in each region traffic
returns to the stable side before Helm rolls back. A finished release is undone by a release of its own (rollback-APP-VERSION): the regions it changed
return, in reverse wave order, to the revisions it recorded before changing them, through the
application's lane, with the same ownership checks and the file's gates. With --to VERSION, the
argument is an application, and its latest finished release is undone if every region returns to VERSION.`
		cmd.Flags().StringVar(&to, "to", "", "the version to return to: the argument is then an application")
	}
	cmd.Flags().StringVar(&ctl.Reason, "reason", "", "why, recorded in the release's history")
	if regional {
		cmd.Flags().StringSliceVar(&ctl.Regions, "region", nil, "only these regions (repeat or comma-separate); all when absent")
	}
	if name == workflows.UpdateRollback {
		cmd.Flags().StringSliceVar(&ctl.Waves, "wave", nil, "only the regions of these waves (repeat or comma-separate)")
	}
	cmd.Flags().StringVar(&key, "idempotency-key", "", "the same key makes a repeated command one request")
	cmd.RunE = a.runE(func(cmd *cobra.Command, args []string) error {
		return a.call(cmd.Context(), callTimeout, func(ctx context.Context, r releases) error {
			ctl.User, ctl.Via = a.g.user, "cli"
			if name == workflows.UpdateRollback {
				var undo *control.StartResult
				var err error
				if to != "" {
					res, err := r.RollbackTo(ctx, args[0], to, control.UndoOptions{StartedBy: a.g.user, Reason: ctl.Reason, Regions: ctl.Regions, Waves: ctl.Waves})
					if err != nil {
						return err
					}
					undo = &res
				} else if undo, err = r.Rollback(ctx, args[0], ctl, control.WithIdempotencyKey(key)); err != nil {
					return err
				}
				if undo != nil {
					fmt.Fprintf(a.out, "undo started: %s\nurl: %s\n", undo.ReleaseID, undo.URL)
					return nil
				}
			} else if err := r.Control(ctx, args[0], name, ctl, control.WithIdempotencyKey(key)); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "%s %s", controlDone[name], args[0])
			if len(ctl.Regions) > 0 {
				fmt.Fprintf(a.out, " (regions %s)", joinComma(ctl.Regions))
			}
			if len(ctl.Waves) > 0 {
				fmt.Fprintf(a.out, " (waves %s)", joinComma(ctl.Waves))
			}
			fmt.Fprintln(a.out)
			return nil
		})
	})
	return cmd
}

func (a *app) trafficCmd() *cobra.Command {
	tr := &cobra.Command{Use: "traffic", Short: "Traffic between regions after a failover"}
	var o control.RestoreOptions
	restore := &cobra.Command{
		Use:   "restore REGION (--release ID | --app APP) [--reason R]",
		Short: "Give a region back the share of traffic a failover took from it",
		Long: `A failover sets a failing region's weight in the file's failover record to 0, so Route 53
sends its users to the other regions, and stops the release. Nothing gives the share back by itself:
this command sets the region's weight to the file's again, through a workflow of its own
(traffic-restore-RELEASE-REGION) that records who asked and why, and prints the weights read back.
With --app, the release is the application's latest finished one that failed REGION over.`,
		Args: cobra.ExactArgs(1),
	}
	restore.Flags().StringVar(&o.ReleaseID, "release", "", "the release whose failover took the share")
	restore.Flags().StringVar(&o.Application, "app", "", "the application: its latest release that failed REGION over")
	restore.Flags().StringVar(&o.Reason, "reason", "", "why (required), recorded with the restore")
	restore.RunE = a.runE(func(cmd *cobra.Command, args []string) error {
		if (o.ReleaseID == "") == (o.Application == "") {
			return usageError("traffic restore needs exactly one of --release and --app")
		}
		if o.Reason == "" {
			return usageError("traffic restore needs --reason: it is recorded with the restore")
		}
		return a.call(cmd.Context(), 2*callTimeout, func(ctx context.Context, r releases) error {
			o.Region, o.User, o.Via = args[0], a.g.user, "cli"
			res, err := r.RestoreTraffic(ctx, o)
			if err != nil {
				return err
			}
			if res.Existing {
				fmt.Fprintf(a.out, "%s was already restored after %s by %s at %s\n", o.Region, res.ReleaseID, res.Result.User, res.Result.At.In(a.loc).Format("2006-01-02 15:04:05"))
			} else {
				fmt.Fprintf(a.out, "restored %s's share after the failover of %s: weight %d\n", o.Region, res.ReleaseID, res.Result.Weight)
			}
			fmt.Fprintf(a.out, "weights: %s\nurl: %s\n", workflows.Weights(res.Result.After), res.URL)
			return nil
		})
	})
	tr.AddCommand(restore)
	return tr
}

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print keelson's version",
		Args:  cobra.NoArgs,
		RunE: a.runE(func(cmd *cobra.Command, _ []string) error {
			sdk := "unknown"
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, d := range bi.Deps {
					if d.Path == "go.temporal.io/sdk" {
						sdk = d.Version
					}
				}
			}
			fmt.Fprintf(a.out, "keelson %s (%s, Temporal Go SDK %s)\n", version, runtime.Version(), sdk)
			return nil
		}),
	}
}
