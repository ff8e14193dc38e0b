package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
)

type fakeCompleter struct {
	got    map[string]error // token -> the failure given
	refuse map[string]bool  // tokens Temporal no longer knows
}

func (f *fakeCompleter) CompleteActivity(_ context.Context, token []byte, _ any, err error) error {
	if f.refuse[string(token)] {
		return errors.New("activity task not found")
	}
	f.got[string(token)] = err
	return nil
}

func writeEntry(t *testing.T, dir, name string, e journalEntry) {
	t.Helper()
	raw, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), raw, 0o600); err != nil {
		t.Fatal(err)
	}
}

// A restarted worker hands back the attempts of dead workers on its work
// folder, its own pid's leftovers included, and never a live worker's.
func TestJournalHandsBackOnlyDeadWorkersAttempts(t *testing.T) {
	work := t.TempDir()
	root := filepath.Join(work, journalDir)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	live := exec.Command("sleep", "60")
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = live.Process.Kill(); _ = live.Wait() })

	deadDir := filepath.Join(root, strconv.Itoa(dead.Process.Pid))
	liveDir := filepath.Join(root, strconv.Itoa(live.Process.Pid))
	selfDir := filepath.Join(root, strconv.Itoa(os.Getpid()))
	writeEntry(t, deadDir, "1.json", journalEntry{Token: []byte("dead-1"), Type: "Apply", PID: dead.Process.Pid})
	writeEntry(t, deadDir, "2.json", journalEntry{Token: []byte("dead-stale"), Type: "Upgrade", PID: dead.Process.Pid})
	if err := os.WriteFile(filepath.Join(deadDir, "3.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	writeEntry(t, liveDir, "1.json", journalEntry{Token: []byte("live-1"), Type: "Apply", PID: live.Process.Pid})
	writeEntry(t, selfDir, "7.json", journalEntry{Token: []byte("self-1"), Type: "WaitReady", PID: os.Getpid()})

	c := &fakeCompleter{got: map[string]error{}, refuse: map[string]bool{"dead-stale": true}}
	j := newJournal(work, slog.New(slog.NewTextHandler(io.Discard, nil)))
	n, err := j.recover(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("handed back %d attempts, want 2 (dead-1, self-1)", n)
	}
	for _, tok := range []string{"dead-1", "self-1"} {
		err, ok := c.got[tok]
		var app *temporal.ApplicationError
		if !ok || !errors.As(err, &app) || app.Type() != errTypeWorkerDied || app.NonRetryable() {
			t.Errorf("%s: failure %v, want a retryable %s", tok, err, errTypeWorkerDied)
		}
	}
	if _, ok := c.got["live-1"]; ok {
		t.Error("a live worker's attempt was failed")
	}
	if _, err := os.Stat(deadDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the dead worker's journal is still there: %v", err)
	}
	if files, _ := os.ReadDir(liveDir); len(files) != 1 {
		t.Errorf("the live worker's journal has %d entries, want its 1 untouched", len(files))
	}
	if files, _ := os.ReadDir(selfDir); len(files) != 0 {
		t.Errorf("the predecessor's entries under this pid are still there: %d", len(files))
	}
}

// While an attempt runs, its token is in the journal; once it ends, it is
// gone.
func TestJournalRecordsRunningAttempts(t *testing.T) {
	work := t.TempDir()
	j := newJournal(work, slog.New(slog.NewTextHandler(io.Discard, nil)))
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{&journalInterceptor{j: j}}})
	var seen []journalEntry
	env.RegisterActivityWithOptions(func(ctx context.Context) error {
		files, err := os.ReadDir(j.dir)
		if err != nil {
			return err
		}
		for _, f := range files {
			raw, err := os.ReadFile(filepath.Join(j.dir, f.Name()))
			if err != nil {
				return err
			}
			var e journalEntry
			if err := json.Unmarshal(raw, &e); err != nil {
				return err
			}
			seen = append(seen, e)
		}
		return nil
	}, activityOptions("Probe"))
	if _, err := env.ExecuteActivity("Probe"); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen[0].Type != "Probe" || seen[0].PID != os.Getpid() {
		t.Fatalf("journal while running: %+v, want this attempt's entry", seen)
	}
	if files, _ := os.ReadDir(j.dir); len(files) != 0 {
		t.Errorf("%d entries left after the attempt ended", len(files))
	}
}

func activityOptions(name string) activity.RegisterOptions {
	return activity.RegisterOptions{Name: name}
}

// A worker killed with SIGKILL is a zombie until it is reaped: dead all the
// same.
func TestJournalTakesAZombieForDead(t *testing.T) {
	z := exec.Command("sleep", "60")
	if err := z.Start(); err != nil {
		t.Fatal(err)
	}
	if !alive(z.Process.Pid) {
		t.Fatal("a running process taken for dead")
	}
	if err := z.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	// Not reaped yet: a zombie until Wait.
	deadline := time.Now().Add(5 * time.Second)
	for alive(z.Process.Pid) {
		if time.Now().After(deadline) {
			t.Fatal("a killed, unreaped process (a zombie) is still taken for alive")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = z.Wait()
	if alive(z.Process.Pid) {
		t.Error("a reaped process taken for alive")
	}
}
