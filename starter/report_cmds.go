package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keelson-dev/keelson/control"
	"github.com/keelson-dev/keelson/dora"
)

// reportTimeout bounds the gathering of a report: one visibility listing
// and a result and an input per release of the period.
const reportTimeout = 2 * time.Minute

func (a *app) reportCmd() *cobra.Command {
	report := &cobra.Command{Use: "report", Short: "Figures computed from the release history"}
	var app, since, format string
	var limit int
	cmd := &cobra.Command{
		Use:   "dora [--app A] [--since 30d] [--format table|json|csv]",
		Short: "DORA's five software delivery figures, with their performance levels",
		Long: "Deployment frequency, change lead time, change fail rate, failed deployment recovery\n" +
			"time and deployment rework rate over the releases that finished in the period, read\n" +
			"from Temporal's visibility and the releases' results. Definitions: docs/dora.md.",
		Args: cobra.NoArgs,
	}
	cmd.Flags().StringVar(&app, "app", "", "only this application (default: all of them together)")
	cmd.Flags().StringVar(&since, "since", "30d", "the period: releases that finished this long ago or later (30d, 2w, 12h)")
	cmd.Flags().StringVar(&format, "format", "table", "output format: table, json or csv")
	cmd.Flags().IntVar(&limit, "limit", 2000, "read at most this many releases, newest first")
	cmd.RunE = a.runE(func(cmd *cobra.Command, _ []string) error {
		window, err := dora.ParseWindow(since)
		if err != nil {
			return usageError("--since: %v", err)
		}
		if format != "table" && format != "json" && format != "csv" {
			return usageError("--format %q: want table, json or csv", format)
		}
		r, closeFn, err := a.dial(cmd.Context())
		if err != nil {
			return err
		}
		defer closeFn()
		until := a.now()
		p := dora.Period{Since: until.Add(-window), Until: until}
		ctx, cancel := context.WithTimeout(cmd.Context(), reportTimeout)
		defer cancel()
		data, err := r.DoraRecords(ctx, control.DoraQuery{Application: app, Since: p.Since, Limit: limit})
		if err != nil {
			return fmt.Errorf("gather releases for the DORA report: %w", err)
		}
		rep := dora.Compute(data.Releases, p, app)
		rep.Skipped, rep.Truncated, rep.Unreadable = data.Skipped, data.Truncated, data.Unreadable
		switch format {
		case "json":
			enc := json.NewEncoder(a.out)
			enc.SetIndent("", "  ")
			return enc.Encode(rep)
		case "csv":
			return writeDoraCSV(a.out, rep)
		}
		renderDora(a.out, rep, a.loc)
		return nil
	})
	report.AddCommand(cmd)
	return report
}

// doraRow is one figure as the table and the CSV show it.
type doraRow struct {
	metric, label string
	// value is the machine value (per day, seconds, ratio); ok false when
	// there is no data.
	value float64
	ok    bool
	unit  string
	human string
	basis string
	n     int
	level dora.Level
}

func doraRows(rep dora.Report) []doraRow {
	f := rep.DeploymentFrequency
	rows := []doraRow{{
		metric: "deployment_frequency", label: "deployment frequency",
		value: f.PerDay, ok: rep.Days > 0, unit: "per_day",
		human: fmt.Sprintf("%s a day (%s a week)", num(f.PerDay), num(f.PerWeek)),
		basis: plural(f.Deployments, "deployment"), n: f.Deployments, level: f.Level,
	}}
	lead := rep.ChangeLeadTime
	rows = append(rows, durationRow("change_lead_time", "change lead time", lead,
		plural(lead.Samples, "successful deployment")+" with a commit time"))
	cfr := rep.ChangeFailRate
	rows = append(rows, rateRow("change_fail_rate", "change fail rate", cfr, plural(cfr.Of, "deployment")))
	rec := rep.FailedDeploymentRecoveryTime
	basis := fmt.Sprintf("%d recovered", rec.Samples)
	if rec.Unrecovered > 0 {
		basis += fmt.Sprintf(", %d not yet", rec.Unrecovered)
	}
	rows = append(rows, durationRow("failed_deployment_recovery_time", "failed deployment recovery time", rec.DurationFigure, basis))
	rw := rep.DeploymentReworkRate
	rows = append(rows, rateRow("deployment_rework_rate", "deployment rework rate", rw, plural(rw.Of, "deployment")))
	return rows
}

func durationRow(metric, label string, f dora.DurationFigure, basis string) doraRow {
	r := doraRow{metric: metric, label: label, unit: "seconds", human: "-", basis: basis, n: f.Samples, level: f.Level}
	if m, ok := f.Median(); ok {
		r.value, r.ok, r.human = *f.MedianSeconds, true, humanDuration(m)+" (median)"
	}
	return r
}

func rateRow(metric, label string, f dora.Rate, basis string) doraRow {
	r := doraRow{metric: metric, label: label, unit: "ratio", human: "-", basis: basis, n: f.Of, level: f.Level}
	if f.Value != nil {
		r.value, r.ok = *f.Value, true
		r.human = fmt.Sprintf("%s%% (%d of %d)", num(100**f.Value), f.Count, f.Of)
	}
	return r
}

func renderDora(w io.Writer, rep dora.Report, loc *time.Location) {
	who := rep.Application
	if who == "" {
		who = "all applications"
	}
	days := num(rep.Days) + " days"
	if days == "1 days" {
		days = "1 day"
	}
	fmt.Fprintf(w, "DORA figures: %s, %s to %s (%s)\n", who,
		rep.Period.Since.In(loc).Format("2006-01-02 15:04 MST"), rep.Period.Until.In(loc).Format("2006-01-02 15:04 MST"), days)
	line := fmt.Sprintf("releases: %d finished, %s", rep.Releases, plural(rep.Deployments, "deployment"))
	if rep.Undos > 0 {
		line += fmt.Sprintf(" (%s)", plural(rep.Undos, "undo"))
	}
	if rep.Skipped > 0 {
		line += fmt.Sprintf("; %d ended without a result (terminated or timed out) and count nowhere", rep.Skipped)
	}
	fmt.Fprintln(w, line)
	if rep.Truncated {
		fmt.Fprintln(w, "truncated: the period holds more releases than --limit; these figures cover the newest")
	}
	if n := len(rep.Unreadable); n > 0 {
		fmt.Fprintf(w, "left out: %s encrypted with keys you lack (--codec-keys), e.g. %s\n", plural(n, "release"), rep.Unreadable[0])
	}
	fmt.Fprintf(w, "levels: %s\n\n", rep.Tiers)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "METRIC\tVALUE\tFROM\tLEVEL")
	for _, r := range doraRows(rep) {
		level := string(r.level)
		if level == "" {
			level = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.label, r.human, r.basis, level)
	}
	_ = tw.Flush()
	if rep.DeploymentReworkRate.Of > 0 {
		fmt.Fprintln(w, "\n(deployment rework rate has no published levels yet: DORA added it in 2025)")
	}
}

// writeDoraCSV writes one row per figure; an empty value means no data.
func writeDoraCSV(w io.Writer, rep dora.Report) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"application", "since", "until", "metric", "value", "unit", "samples", "level"})
	for _, r := range doraRows(rep) {
		v := ""
		if r.ok {
			v = strconv.FormatFloat(r.value, 'g', -1, 64)
		}
		_ = cw.Write([]string{rep.Application, rep.Period.Since.UTC().Format(time.RFC3339), rep.Period.Until.UTC().Format(time.RFC3339),
			r.metric, v, r.unit, strconv.Itoa(r.n), string(r.level)})
	}
	cw.Flush()
	return cw.Error()
}

// num prints a figure with at most two decimals and no trailing zeros.
func num(f float64) string {
	s := strings.TrimRight(strconv.FormatFloat(f, 'f', 2, 64), "0")
	return strings.TrimSuffix(s, ".")
}

// plural prints "1 deployment" or "3 deployments".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// humanDuration prints 45s, 41m, 3h12m or 2d4h: a median is a typical
// value, and seconds past the first hour only add noise.
func humanDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		m := d.Round(time.Second)
		if s := int(m.Seconds()) % 60; s != 0 {
			return fmt.Sprintf("%dm%ds", int(m.Minutes()), s)
		}
		return fmt.Sprintf("%dm", int(m.Minutes()))
	case d < 48*time.Hour:
		m := d.Round(time.Minute)
		return fmt.Sprintf("%dh%02dm", int(m.Hours()), int(m.Minutes())%60)
	}
	h := d.Round(time.Hour)
	return fmt.Sprintf("%dd%dh", int(h.Hours())/24, int(h.Hours())%24)
}
