package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/keelson-dev/keelson/activities/train"
	"github.com/keelson-dev/keelson/control"
	"github.com/keelson-dev/keelson/release"
)

// schedules is what the schedule commands need of the backend;
// *control.Client has it. It is apart from releases so that a backend
// without schedules (a test's) still serves the release commands.
type schedules interface {
	CreateSchedule(ctx context.Context, o control.ScheduleOptions) (*control.ScheduleCreated, error)
	ListSchedules(ctx context.Context, application string) ([]control.ScheduleSummary, error)
	DescribeSchedule(ctx context.Context, name string) (*control.ScheduleDetails, error)
	PauseSchedule(ctx context.Context, name, note string) error
	UnpauseSchedule(ctx context.Context, name, note string) error
	TriggerSchedule(ctx context.Context, name string, overlap enumspb.ScheduleOverlapPolicy) error
	BackfillSchedule(ctx context.Context, name string, start, end time.Time, overlap enumspb.ScheduleOverlapPolicy) error
	DeleteSchedule(ctx context.Context, name string) error
}

func (a *app) dialSchedules(ctx context.Context) (schedules, func(), error) {
	r, closeFn, err := a.dial(ctx)
	if err != nil {
		return nil, nil, err
	}
	s, ok := r.(schedules)
	if !ok {
		closeFn()
		return nil, nil, errors.New("this connection cannot manage schedules")
	}
	return s, closeFn, nil
}

func (a *app) scheduleCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Release trains on Temporal Schedules: create, list, describe, pause, unpause, trigger, backfill, delete",
		Long: "A schedule starts a train on a calendar: the train resolves the version to release (a command or a\n" +
			"file on the worker), does nothing if it is already the application's last successful release, and\n" +
			"otherwise starts the release and waits for it, so that no other train starts meanwhile (overlap skip).\n" +
			"See docs/schedules.md.",
	}
	cmd.AddCommand(a.scheduleCreateCmd(), a.scheduleListCmd(), a.scheduleDescribeCmd(),
		a.schedulePauseCmd(true), a.schedulePauseCmd(false), a.scheduleTriggerCmd(), a.scheduleBackfillCmd(), a.scheduleDeleteCmd())
	return cmd
}

func scheduleName(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usageError("%s needs one schedule NAME, got %d arguments", cmd.CommandPath(), len(args))
	}
	return nil
}

func (a *app) scheduleCreateCmd() *cobra.Command {
	var (
		file, versionFrom, version, timezone, overlap, note string
		crons, calendars                                    []string
		paused                                              bool
		jitter, catchup, versionTimeout                     time.Duration
	)
	cmd := &cobra.Command{
		Use: "create NAME -f FILE (--cron EXPR | --calendar SPEC) (--version-from CMD|FILE | --version V)\n" +
			"       [--timezone TZ] [--paused] [--jitter D] [--catchup-window D] [--overlap skip]",
		Short: "Create a schedule that starts a release train",
		Args:  scheduleName,
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "release file (YAML); its spec goes into the schedule, so later edits of the file change nothing until the schedule is made again")
	f.StringArrayVar(&crons, "cron", nil, `cron expression, read in --timezone: "0 8 * * MON" (repeat for more; combines with --calendar)`)
	f.StringArrayVar(&calendars, "calendar", nil, `calendar: "dayOfWeek=MON-THU hour=9 minute=30" (fields second, minute, hour, dayOfMonth, month, dayOfWeek, year, comment; repeat for more)`)
	f.StringVar(&versionFrom, "version-from", "", "where each train finds the version, on the worker: a command (its first line of output) or an absolute file path (its first line); force one with cmd:... or file:...")
	f.StringVar(&version, "version", "", "a fixed version instead: a one-off scheduled release")
	f.DurationVar(&versionTimeout, "version-timeout", train.DefaultCommandTimeout, "time limit of the --version-from command")
	f.StringVar(&timezone, "timezone", "", "IANA zone the clock times are read in (Europe/Dublin); UTC when empty. No DST adjustment: see docs/schedules.md")
	f.BoolVar(&paused, "paused", false, "create it paused (trigger still works)")
	f.DurationVar(&jitter, "jitter", 0, "start each train up to this much later, at random")
	f.DurationVar(&catchup, "catchup-window", 0, "after an outage of Temporal, still start trains missed by at most this much (server default: one year)")
	f.StringVar(&overlap, "overlap", "skip", "when a train is due while the last one still runs: skip, buffer-one, buffer-all, cancel-other, terminate-other or allow-all")
	f.StringVar(&note, "note", "", "a note shown with the schedule")
	_ = cmd.MarkFlagRequired("file")
	cmd.RunE = a.runE(func(cmd *cobra.Command, args []string) error {
		name := args[0]
		// Everything is checked before dialing, and every problem said.
		var problems []string
		problem := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
		if err := control.ValidateScheduleName(name); err != nil {
			problem("%v", err)
		}
		spec, err := a.loadSpec(file)
		if err != nil {
			var errs *release.Errors
			if errors.As(err, &errs) {
				for _, p := range errs.List {
					problem("%s", p.Error())
				}
			} else {
				problem("%v", err)
			}
		}
		digest, err := fileDigest(file)
		if err != nil && spec != nil {
			problem("%v", err)
		}
		if len(crons) == 0 && len(calendars) == 0 {
			problem("give --cron or --calendar: when should trains run?")
		}
		for _, c := range crons {
			if err := checkCron(c); err != nil {
				problem("--cron: %v", err)
			}
		}
		var cals []client.ScheduleCalendarSpec
		for _, c := range calendars {
			cal, err := control.ParseCalendar(c)
			if err != nil {
				problem("--calendar: %v", err)
				continue
			}
			cals = append(cals, cal)
		}
		if timezone != "" {
			if _, err := time.LoadLocation(timezone); err != nil {
				problem("--timezone %q: not an IANA time zone (like Europe/Dublin or America/New_York)", timezone)
			}
		}
		src, err := versionSource(versionFrom, version, versionTimeout)
		if err != nil {
			problem("%v", err)
		}
		ov, err := control.ParseOverlap(overlap)
		if err != nil {
			problem("--overlap: %v", err)
		}
		if jitter < 0 || catchup < 0 {
			problem("--jitter and --catchup-window cannot be negative")
		}
		if len(problems) > 0 {
			return &exitError{code: exitUsage, lines: problems}
		}

		// Packed once, now: every train releases what the file named
		// today, whatever happens to it on disk later.
		pctx, pcancel := context.WithTimeout(cmd.Context(), callTimeout)
		p, err := a.pack(pctx, spec, a.g.artifacts, false)
		pcancel()
		if err != nil {
			return err
		}
		s, closeFn, err := a.dialSchedules(cmd.Context())
		if err != nil {
			return err
		}
		defer closeFn()
		ctx, cancel := context.WithTimeout(cmd.Context(), callTimeout)
		defer cancel()
		res, err := s.CreateSchedule(ctx, control.ScheduleOptions{
			Name: name, Spec: p.Spec, Bundle: p.Digest, File: absPath(file), Digest: digest, VersionFrom: src,
			Cron: crons, Calendars: cals, When: whenText(crons, calendars), TimeZone: timezone,
			Jitter: jitter, CatchupWindow: catchup, Overlap: ov, Paused: paused, Note: note, CreatedBy: a.g.user,
		})
		if err != nil {
			return err
		}
		state := "active"
		if paused {
			state = "paused: keelson schedule unpause " + name + " starts it; trigger works meanwhile"
		}
		fmt.Fprintf(a.out, "schedule: %s (%s)\n", res.Name, state)
		fmt.Fprintf(a.out, "releases: %s from %s (%s)\n", spec.Application, absPath(file), digest)
		fmt.Fprintf(a.out, "version from: %s%s\n", src, sourceNote(src))
		fmt.Fprintf(a.out, "when: %s%s, overlap %s\n", whenText(crons, calendars), zoneText(timezone), control.OverlapName(ov))
		if len(res.Next) > 0 {
			fmt.Fprintf(a.out, "next run: %s\n", zonedTimes(res.Next[0], timezone))
		}
		fmt.Fprintf(a.out, "url: %s\n", res.URL)
		return nil
	})
	return cmd
}

// fileDigest is the SHA-256 of the release file's bytes, as the memo
// records it: what a schedule releases can be checked against the file in
// version control.
func fileDigest(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("digest of %s: %w", path, err)
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

func absPath(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

// versionSource reads --version-from (or --version). A value is a file
// when it says so (file:PATH), or is one word that names a path (starts
// with /, ./ or ../, or exists here); anything else is a command (cmd: forces
// it). Files are made absolute here because the worker reads them from its
// own working directory; they must exist on the worker's machine.
func versionSource(from, version string, timeout time.Duration) (train.VersionSource, error) {
	switch {
	case from != "" && version != "":
		return train.VersionSource{}, errors.New("give --version-from or --version, not both")
	case version != "":
		src := train.VersionSource{Version: version}
		if err := src.Validate(); err != nil {
			return src, fmt.Errorf("--version: %w", err)
		}
		return src, nil
	case strings.TrimSpace(from) == "":
		return train.VersionSource{}, errors.New("give --version-from CMD|FILE (or --version V): where does each train find its version?")
	}
	var src train.VersionSource
	switch {
	case strings.HasPrefix(from, "file:"):
		src.File = absPath(strings.TrimPrefix(from, "file:"))
	case strings.HasPrefix(from, "cmd:"):
		src.Command = strings.TrimSpace(strings.TrimPrefix(from, "cmd:"))
	case looksLikePath(from):
		src.File = absPath(from)
	default:
		src.Command = from
	}
	if src.Command != "" {
		src.Timeout = timeout
	}
	if err := src.Validate(); err != nil {
		return src, fmt.Errorf("--version-from: %w", err)
	}
	return src, nil
}

func looksLikePath(s string) bool {
	if strings.ContainsAny(s, " \t|;&$`<>()") {
		return false
	}
	if strings.HasPrefix(s, "/") || strings.HasPrefix(s, "./") || strings.HasPrefix(s, "../") {
		return true
	}
	st, err := os.Stat(s)
	return err == nil && st.Mode().IsRegular()
}

func sourceNote(s train.VersionSource) string {
	switch {
	case s.Command != "":
		return fmt.Sprintf(" (run by the worker with sh -c, %s limit)", s.CommandTimeout())
	case s.File != "":
		return " (read by the worker: the path must exist on its machine)"
	}
	return ""
}

// checkCron catches the mistakes a person makes before the server does:
// the wrong number of fields, and a zone inside the expression.
func checkCron(expr string) error {
	e := strings.TrimSpace(expr)
	if strings.HasPrefix(e, "CRON_TZ=") || strings.HasPrefix(e, "TZ=") {
		return fmt.Errorf("%q: give the zone with --timezone, not in the expression", expr)
	}
	if strings.HasPrefix(e, "@") {
		return nil // @weekly, @every 24h: the server reads them
	}
	if i := strings.Index(e, "#"); i >= 0 {
		e = e[:i]
	}
	if n := len(strings.Fields(e)); n < 5 || n > 7 {
		return fmt.Errorf("%q has %d fields: want 5 (minute hour day-of-month month day-of-week), 6 (and year) or 7 (second first)", expr, n)
	}
	return nil
}

func whenText(crons, calendars []string) string {
	var parts []string
	for _, c := range crons {
		parts = append(parts, fmt.Sprintf("cron %q", c))
	}
	for _, c := range calendars {
		parts = append(parts, fmt.Sprintf("calendar %q", c))
	}
	return strings.Join(parts, " + ")
}

func zoneText(tz string) string {
	if tz == "" {
		return " in UTC"
	}
	return " in " + tz
}

func (a *app) scheduleListCmd() *cobra.Command {
	var application, output string
	cmd := &cobra.Command{
		Use:   "list [--app A] [-o json]",
		Short: "List Keelson's schedules",
		Args:  cobra.NoArgs,
	}
	cmd.Flags().StringVar(&application, "app", "", "only this application's")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.RunE = a.runE(func(cmd *cobra.Command, _ []string) error {
		if output != "table" && output != "json" {
			return usageError("--output %q: want table or json", output)
		}
		s, closeFn, err := a.dialSchedules(cmd.Context())
		if err != nil {
			return err
		}
		defer closeFn()
		ctx, cancel := context.WithTimeout(cmd.Context(), statusTimeout)
		defer cancel()
		list, err := s.ListSchedules(ctx, application)
		if err != nil {
			return err
		}
		if output == "json" {
			return writeJSON(a.out, list)
		}
		renderScheduleList(a.out, list)
		return nil
	})
	return cmd
}

func (a *app) scheduleDescribeCmd() *cobra.Command {
	var output string
	var zones []string
	var next int
	cmd := &cobra.Command{
		Use:   "describe NAME [--region-zone REGION=TZ]... [--next N] [-o json]",
		Short: "Show a schedule: what it releases, its next runs in UTC and each region's zone, and its last trains",
		Args:  scheduleName,
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().StringArrayVar(&zones, "region-zone", nil, "show REGION's times in TZ (for files whose regions do not name a timeZone)")
	cmd.Flags().IntVar(&next, "next", 5, "how many next runs to show (at most 10)")
	cmd.RunE = a.runE(func(cmd *cobra.Command, args []string) error {
		if output != "text" && output != "json" {
			return usageError("--output %q: want text or json", output)
		}
		overrides, err := parseRegionZones(zones)
		if err != nil {
			return usageError("--region-zone: %v", err)
		}
		s, closeFn, err := a.dialSchedules(cmd.Context())
		if err != nil {
			return err
		}
		defer closeFn()
		// Describing reads every recent train and its release: more calls
		// than a status, so a longer limit.
		ctx, cancel := context.WithTimeout(cmd.Context(), callTimeout)
		defer cancel()
		d, err := s.DescribeSchedule(ctx, args[0])
		if err != nil {
			return err
		}
		if output == "json" {
			return writeJSON(a.out, d)
		}
		renderSchedule(a.out, d, scheduleView{next: min(max(next, 1), 10), zones: regionZones(d.Spec, overrides), local: localDigest(d.File)})
		return nil
	})
	return cmd
}

// localDigest is the digest of the schedule's file as it is on this
// machine now, to say whether it changed since the schedule was made;
// empty when the file is not here.
func localDigest(path string) string {
	if path == "" {
		return ""
	}
	d, err := fileDigest(path)
	if err != nil {
		return ""
	}
	return d
}

func parseRegionZones(flags []string) (map[string]string, error) {
	out := map[string]string{}
	for _, f := range flags {
		region, tz, ok := strings.Cut(f, "=")
		if !ok || region == "" || tz == "" {
			return nil, fmt.Errorf("%q: want REGION=TZ (us-east-1=America/New_York)", f)
		}
		if _, err := time.LoadLocation(tz); err != nil {
			return nil, fmt.Errorf("%q: %q is not an IANA time zone", f, tz)
		}
		out[region] = tz
	}
	return out, nil
}

func (a *app) schedulePauseCmd(pause bool) *cobra.Command {
	verb, short := "unpause", "Let a schedule start trains again (times missed while paused are not made up)"
	if pause {
		verb, short = "pause", "Stop a schedule from starting trains; running trains and releases go on"
	}
	var reason string
	cmd := &cobra.Command{
		Use:   verb + " NAME [--reason R]",
		Short: short,
		Args:  scheduleName,
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, shown with the schedule")
	cmd.RunE = a.runE(func(cmd *cobra.Command, args []string) error {
		s, closeFn, err := a.dialSchedules(cmd.Context())
		if err != nil {
			return err
		}
		defer closeFn()
		ctx, cancel := context.WithTimeout(cmd.Context(), callTimeout)
		defer cancel()
		note := verb + "d by " + a.g.user
		if reason != "" {
			note += ": " + reason
		}
		if pause {
			err = s.PauseSchedule(ctx, args[0], note)
		} else {
			err = s.UnpauseSchedule(ctx, args[0], note)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(a.out, "schedule %s %sd (%s)\n", args[0], verb, note)
		return nil
	})
	return cmd
}

func (a *app) scheduleTriggerCmd() *cobra.Command {
	var overlap string
	cmd := &cobra.Command{
		Use:   "trigger NAME [--overlap P]",
		Short: "Start a train now (even when paused), under the schedule's overlap policy",
		Args:  scheduleName,
	}
	cmd.Flags().StringVar(&overlap, "overlap", "", "this once, another overlap policy (allow-all starts a train even while one runs)")
	cmd.RunE = a.runE(func(cmd *cobra.Command, args []string) error {
		ov, err := optionalOverlap(overlap)
		if err != nil {
			return err
		}
		s, closeFn, err := a.dialSchedules(cmd.Context())
		if err != nil {
			return err
		}
		defer closeFn()
		ctx, cancel := context.WithTimeout(cmd.Context(), callTimeout)
		defer cancel()
		if err := s.TriggerSchedule(ctx, args[0], ov); err != nil {
			return err
		}
		fmt.Fprintf(a.out, "schedule %s triggered: a train starts now unless one is running and the overlap policy skips it\n", args[0])
		fmt.Fprintf(a.out, "see: keelson schedule describe %s\n", args[0])
		return nil
	})
	return cmd
}

func optionalOverlap(s string) (enumspb.ScheduleOverlapPolicy, error) {
	if s == "" {
		return enumspb.SCHEDULE_OVERLAP_POLICY_UNSPECIFIED, nil
	}
	ov, err := control.ParseOverlap(s)
	if err != nil {
		return ov, usageError("--overlap: %v", err)
	}
	return ov, nil
}

func (a *app) scheduleBackfillCmd() *cobra.Command {
	var start, end, overlap string
	cmd := &cobra.Command{
		Use:   "backfill NAME --start T --end T [--overlap P]",
		Short: "Take now the trains the schedule would have started between two times (RFC 3339)",
		Args:  scheduleName,
	}
	cmd.Flags().StringVar(&start, "start", "", "from, RFC 3339 (2026-11-16T00:00:00Z)")
	cmd.Flags().StringVar(&end, "end", "", "to, RFC 3339")
	cmd.Flags().StringVar(&overlap, "overlap", "", "this once, another overlap policy (with skip, one train starts and the rest are skipped)")
	_ = cmd.MarkFlagRequired("start")
	_ = cmd.MarkFlagRequired("end")
	cmd.RunE = a.runE(func(cmd *cobra.Command, args []string) error {
		from, err1 := time.Parse(time.RFC3339, start)
		to, err2 := time.Parse(time.RFC3339, end)
		var problems []string
		if err1 != nil {
			problems = append(problems, fmt.Sprintf("--start %q: not an RFC 3339 time (2026-11-16T00:00:00Z)", start))
		}
		if err2 != nil {
			problems = append(problems, fmt.Sprintf("--end %q: not an RFC 3339 time (2026-11-23T00:00:00Z)", end))
		}
		if len(problems) == 0 && !to.After(from) {
			problems = append(problems, "--end must be after --start")
		}
		ov, err := optionalOverlap(overlap)
		if err != nil {
			problems = append(problems, err.Error())
		}
		if len(problems) > 0 {
			return &exitError{code: exitUsage, lines: problems}
		}
		s, closeFn, err := a.dialSchedules(cmd.Context())
		if err != nil {
			return err
		}
		defer closeFn()
		ctx, cancel := context.WithTimeout(cmd.Context(), callTimeout)
		defer cancel()
		if err := s.BackfillSchedule(ctx, args[0], from, to, ov); err != nil {
			return err
		}
		fmt.Fprintf(a.out, "schedule %s backfilled from %s to %s\n", args[0], from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))
		return nil
	})
	return cmd
}

func (a *app) scheduleDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a schedule; its running train and release go on",
		Args:  scheduleName,
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			s, closeFn, err := a.dialSchedules(cmd.Context())
			if err != nil {
				return err
			}
			defer closeFn()
			ctx, cancel := context.WithTimeout(cmd.Context(), callTimeout)
			defer cancel()
			if err := s.DeleteSchedule(ctx, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "schedule %s deleted (a train or release already running goes on; keelson abort stops a release)\n", args[0])
			return nil
		}),
	}
}

func writeJSON(w interface{ Write([]byte) (int, error) }, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
