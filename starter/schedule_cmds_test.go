package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/keelson-dev/keelson/activities/train"
	"github.com/keelson-dev/keelson/control"
	"github.com/keelson-dev/keelson/release"
	"github.com/keelson-dev/keelson/workflows"
)

// schedFake is the release fake with schedules.
type schedFake struct {
	*fake
	created  control.ScheduleOptions
	details  *control.ScheduleDetails
	list     []control.ScheduleSummary
	note     string
	overlap  enumspb.ScheduleOverlapPolicy
	from, to time.Time
}

func (f *schedFake) CreateSchedule(_ context.Context, o control.ScheduleOptions) (*control.ScheduleCreated, error) {
	f.record("schedule create " + o.Name)
	f.created = o
	return &control.ScheduleCreated{Name: o.Name, URL: "http://ui/schedules/" + o.Name,
		Next: []time.Time{time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)}}, f.err
}

func (f *schedFake) ListSchedules(_ context.Context, app string) ([]control.ScheduleSummary, error) {
	f.record("schedule list " + app)
	return f.list, f.err
}

func (f *schedFake) DescribeSchedule(_ context.Context, name string) (*control.ScheduleDetails, error) {
	f.record("schedule describe " + name)
	return f.details, f.err
}

func (f *schedFake) PauseSchedule(_ context.Context, name, note string) error {
	f.record("schedule pause " + name)
	f.note = note
	return f.err
}

func (f *schedFake) UnpauseSchedule(_ context.Context, name, note string) error {
	f.record("schedule unpause " + name)
	f.note = note
	return f.err
}

func (f *schedFake) TriggerSchedule(_ context.Context, name string, o enumspb.ScheduleOverlapPolicy) error {
	f.record("schedule trigger " + name)
	f.overlap = o
	return f.err
}

func (f *schedFake) BackfillSchedule(_ context.Context, name string, from, to time.Time, o enumspb.ScheduleOverlapPolicy) error {
	f.record("schedule backfill " + name)
	f.from, f.to, f.overlap = from, to, o
	return f.err
}

func (f *schedFake) DeleteSchedule(_ context.Context, name string) error {
	f.record("schedule delete " + name)
	return f.err
}

// runSched runs the CLI against f, with release files loaded as the
// release fake does (files named "bad" have problems); the file must exist
// for its digest.
func runSched(t *testing.T, f *schedFake, args ...string) runResult {
	t.Helper()
	var out, errOut bytes.Buffer
	a := newApp(&out, &errOut, func(k string) string { return map[string]string{"USER": "carol"}[k] })
	a.loc = time.UTC
	dialed := false
	a.connect = func(_ context.Context, g globals) (releases, func(), error) {
		dialed = true
		return f, func() {}, nil
	}
	a.loadSpec = func(path string) (*release.Spec, error) {
		if strings.Contains(path, "bad") {
			return nil, &release.Errors{List: []release.Error{{File: path, Line: 3, Column: 5, Field: "regions[0].name", Message: "is empty"}}}
		}
		return trainSpec(), nil
	}
	a.pack = fakePack
	code := a.execute(args)
	return runResult{code: code, stdout: out.String(), stderr: errOut.String(), dialed: dialed}
}

func trainSpec() *release.Spec {
	return &release.Spec{
		Application: "demo",
		Regions:     []release.Region{{Name: "us-east-1"}, {Name: "eu-west-1"}, {Name: "ap-southeast-1"}},
		Waves:       []release.Wave{{Name: "americas", Regions: []string{"us-east-1"}}},
	}
}

func releaseYAML(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "release.yaml")
	if err := os.WriteFile(p, []byte("application: demo\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestScheduleCreate(t *testing.T) {
	f := &schedFake{fake: &fake{}}
	file := releaseYAML(t)
	r := runSched(t, f, "schedule", "create", "weekly-train", "-f", file, "--cron", "0 8 * * MON",
		"--timezone", "Europe/Dublin", "--version-from", "git describe --tags --abbrev=0", "--jitter", "5m")
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	o := f.created
	if o.Name != "weekly-train" || o.Spec.Application != "demo" || o.TimeZone != "Europe/Dublin" || o.Jitter != 5*time.Minute ||
		o.CreatedBy != "carol" || o.File != file || o.Overlap != enumspb.SCHEDULE_OVERLAP_POLICY_SKIP {
		t.Errorf("options %+v", o)
	}
	if sum := sha256.Sum256([]byte("application: demo\n")); o.Digest != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Errorf("digest %q", o.Digest)
	}
	if o.VersionFrom != (train.VersionSource{Command: "git describe --tags --abbrev=0", Timeout: train.DefaultCommandTimeout}) {
		t.Errorf("version from %+v", o.VersionFrom)
	}
	if len(o.Cron) != 1 || o.When != `cron "0 8 * * MON"` {
		t.Errorf("cron %v when %q", o.Cron, o.When)
	}
	for _, want := range []string{
		"schedule: weekly-train (active)",
		"version from: command `git describe --tags --abbrev=0` (run by the worker with sh -c, 1m0s limit)",
		`when: cron "0 8 * * MON" in Europe/Dublin, overlap skip`,
		"next run: Mon 2026-11-23 08:00 UTC (Mon 08:00 GMT in Europe/Dublin)",
		"url: http://ui/schedules/weekly-train",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestScheduleCreateVersionSources(t *testing.T) {
	dir := t.TempDir()
	versionFile := filepath.Join(dir, "VERSION")
	if err := os.WriteFile(versionFile, []byte("1.0.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want train.VersionSource
	}{
		{[]string{"--version-from", versionFile}, train.VersionSource{File: versionFile}},
		{[]string{"--version-from", "file:" + versionFile}, train.VersionSource{File: versionFile}},
		{[]string{"--version-from", "/srv/not-yet-there/VERSION"}, train.VersionSource{File: "/srv/not-yet-there/VERSION"}},
		{[]string{"--version-from", "cmd:/usr/local/bin/latest-tag", "--version-timeout", "10s"}, train.VersionSource{Command: "/usr/local/bin/latest-tag", Timeout: 10 * time.Second}},
		{[]string{"--version-from", "cat /srv/VERSION | head -1"}, train.VersionSource{Command: "cat /srv/VERSION | head -1", Timeout: time.Minute}},
		{[]string{"--version", "1.4.2"}, train.VersionSource{Version: "1.4.2"}},
	} {
		f := &schedFake{fake: &fake{}}
		args := append([]string{"schedule", "create", "s", "-f", releaseYAML(t), "--calendar", "dayOfWeek=MON hour=8"}, c.args...)
		r := runSched(t, f, args...)
		if r.code != exitOK {
			t.Errorf("%v: exit %d: %s", c.args, r.code, r.stderr)
			continue
		}
		if f.created.VersionFrom != c.want {
			t.Errorf("%v: source %+v, want %+v", c.args, f.created.VersionFrom, c.want)
		}
		if len(f.created.Calendars) != 1 || f.created.Calendars[0].Hour[0].Start != 8 {
			t.Errorf("calendar %+v", f.created.Calendars)
		}
	}
}

func TestScheduleCreateSaysEveryProblemAndDialsNothing(t *testing.T) {
	f := &schedFake{fake: &fake{}}
	r := runSched(t, f, "schedule", "create", "bad name", "-f", "bad.yaml", "--cron", "0 8 * *",
		"--calendar", "weekday=MON", "--timezone", "Europe/Dubln", "--overlap", "queue")
	if r.code != exitUsage {
		t.Errorf("exit %d, want %d", r.code, exitUsage)
	}
	if r.dialed {
		t.Error("dialed despite problems")
	}
	for _, want := range []string{
		`keelson: schedule name "bad name"`,
		"keelson: bad.yaml:3:5: regions[0].name: is empty",
		`keelson: --cron: "0 8 * *" has 4 fields`,
		`keelson: --calendar: calendar "weekday=MON": unknown field "weekday"`,
		`keelson: --timezone "Europe/Dubln": not an IANA time zone`,
		"keelson: give --version-from CMD|FILE (or --version V)",
		`keelson: --overlap: overlap policy "queue"`,
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
}

func TestScheduleDescribe(t *testing.T) {
	spec := trainSpec()
	spec.TimeZone = "Europe/Dublin"
	spec.Regions[0].TimeZone = "America/New_York"
	spec.Regions[0].Windows = []release.Window{{Days: []string{"Mon-Fri"}, From: "09:00", To: "17:00"}}
	file := releaseYAML(t)
	digest, _ := fileDigest(file)
	f := &schedFake{fake: &fake{}, details: &control.ScheduleDetails{
		Name: "weekly-train", Application: "demo", File: file, Digest: digest, VersionFrom: "file /srv/VERSION",
		When: `cron "0 8 * * MON"`, TimeZone: "Europe/Dublin", Overlap: "skip", CreatedBy: "carol",
		Created: time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC), Actions: 3, SkippedOverlap: 1,
		Next: []time.Time{time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC), time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)},
		Runs: []control.TrainRun{
			{Started: time.Date(2026, 11, 22, 7, 0, 1, 0, time.UTC), TrainID: "train-weekly-train-2026-11-22T07:00:01Z", Status: "Running",
				Version: "1.3.0", ReleaseID: "release-demo-1.3.0", Phase: "deploying"},
			{Started: time.Date(2026, 11, 16, 8, 0, 2, 0, time.UTC), TrainID: "train-weekly-train-2026-11-16T08:00:00Z", Status: "Completed",
				Version: "1.2.0", Outcome: workflows.TrainUpToDate, Message: "nothing to release: demo 1.2.0 is already the last successful release"},
			{Started: time.Date(2026, 11, 9, 8, 0, 2, 0, time.UTC), TrainID: "train-weekly-train-2026-11-09T08:00:00Z", Status: "Completed",
				Version: "1.2.0", ReleaseID: "release-demo-1.2.0", Outcome: workflows.TrainReleased, Phase: "succeeded"},
		},
		Spec: spec, URL: "http://ui/schedules/weekly-train",
	}}
	r := runSched(t, f, "schedule", "describe", "weekly-train", "--region-zone", "ap-southeast-1=Asia/Singapore")
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{
		"digest: " + digest + " (the file here is the same)",
		"trains: 3 started, 1 skipped (the last one still ran), 0 missed",
		"us-east-1 (America/New_York)",
		"eu-west-1 (Europe/Dublin)",
		"ap-southeast-1 (Asia/Singapore)",
		// 08:00 UTC on Monday: 03:00 in New York, before its window.
		"Mon 2026-11-23 08:00  Mon 08:00 GMT",
		"Mon 03:00 EST (closed, opens Mon 09:00)",
		"Mon 16:00 +08",
		"(closed): the region's deploy window is closed when the train starts",
		"running: release deploying",
		"up-to-date: nothing to release: demo 1.2.0 is already the last successful release",
		"released: succeeded",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("describe lacks %q:\n%s", want, r.stdout)
		}
	}

	r = runSched(t, f, "schedule", "describe", "weekly-train", "-o", "json")
	var back control.ScheduleDetails
	if err := json.Unmarshal([]byte(r.stdout), &back); err != nil || back.SkippedOverlap != 1 || len(back.Runs) != 3 {
		t.Errorf("json: %v %+v\n%s", err, back, r.stdout)
	}
}

func TestScheduleControls(t *testing.T) {
	f := &schedFake{fake: &fake{}}
	if r := runSched(t, f, "schedule", "pause", "weekly-train", "--reason", "year-end freeze"); r.code != exitOK || f.note != "paused by carol: year-end freeze" {
		t.Errorf("pause: exit %d note %q %s", r.code, f.note, r.stderr)
	}
	if r := runSched(t, f, "schedule", "unpause", "weekly-train"); r.code != exitOK || f.note != "unpaused by carol" {
		t.Errorf("unpause: exit %d note %q", r.code, f.note)
	}
	if r := runSched(t, f, "schedule", "trigger", "weekly-train"); r.code != exitOK || f.overlap != enumspb.SCHEDULE_OVERLAP_POLICY_UNSPECIFIED {
		t.Errorf("trigger: exit %d overlap %v", r.code, f.overlap)
	}
	if r := runSched(t, f, "schedule", "trigger", "weekly-train", "--overlap", "allow-all"); r.code != exitOK || f.overlap != enumspb.SCHEDULE_OVERLAP_POLICY_ALLOW_ALL {
		t.Errorf("trigger --overlap: exit %d overlap %v", r.code, f.overlap)
	}
	r := runSched(t, f, "schedule", "backfill", "weekly-train", "--start", "2026-11-01T00:00:00Z", "--end", "2026-11-15T00:00:00Z")
	if r.code != exitOK || !f.from.Equal(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)) || !f.to.Equal(time.Date(2026, 11, 15, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("backfill: exit %d %v %v %s", r.code, f.from, f.to, r.stderr)
	}
	if r := runSched(t, f, "schedule", "backfill", "weekly-train", "--start", "2026-11-15T00:00:00Z", "--end", "yesterday"); r.code != exitUsage {
		t.Errorf("bad backfill: exit %d", r.code)
	}
	if r := runSched(t, f, "schedule", "delete", "weekly-train"); r.code != exitOK || !strings.Contains(r.stdout, "goes on") {
		t.Errorf("delete: exit %d %s", r.code, r.stdout)
	}
	f.err = &control.Error{Kind: control.ErrNotFound, Message: "schedule nope not found (keelson schedule list)"}
	if r := runSched(t, f, "schedule", "delete", "nope"); r.code != exitFailure || r.stderr != "keelson: schedule nope not found (keelson schedule list)\n" {
		t.Errorf("delete of a missing schedule: exit %d %q", r.code, r.stderr)
	}
}

func TestScheduleList(t *testing.T) {
	f := &schedFake{fake: &fake{}, list: []control.ScheduleSummary{
		{Name: "weekly-train", Application: "demo", When: `cron "0 8 * * MON"`, TimeZone: "Europe/Dublin",
			Next: time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC), Paused: true},
	}}
	r := runSched(t, f, "schedule", "list", "--app", "demo")
	if r.code != exitOK || !strings.Contains(r.stdout, "weekly-train") || !strings.Contains(r.stdout, "paused") || f.calls[0] != "schedule list demo" {
		t.Errorf("exit %d calls %v:\n%s", r.code, f.calls, r.stdout)
	}
}
