package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
)

// A worker killed in the middle of an activity (SIGKILL, the OOM killer, a
// node lost) cannot tell Temporal; the attempt is retried only once its
// heartbeat timeout (10 s) passes. When the worker comes back on the same
// work folder (a restarted process or container), it knows better: every
// attempt its predecessor was running died with it. So each process keeps a
// journal of the attempts it runs, one file per attempt holding the
// attempt's task token, under WORK_DIR/running/PID/, removed when the
// attempt ends. At start, a worker fails the attempts left in the journals
// of processes that are gone, by token, so that Temporal retries them at
// once (the activities' backoff, 1 s) rather than a heartbeat timeout later.
//
// A token names one attempt: when the attempt has already timed out or been
// retried elsewhere, Temporal refuses it and nothing happens. The journal
// of a live process (another worker on the same folder) is never touched;
// a folder named after this process's own pid is a predecessor's (a
// restarted container's worker often gets the same pid) since this one has
// run nothing yet.

// journalDir is the journals' folder in the work folder.
const journalDir = "running"

// errTypeWorkerDied is the type of the failure given to a dead worker's
// attempts: retryable, as a heartbeat timeout is.
const errTypeWorkerDied = "KeelsonWorkerDied"

// journalEntry is one running attempt.
type journalEntry struct {
	Token      []byte    `json:"token"`
	WorkflowID string    `json:"workflowId"`
	RunID      string    `json:"runId"`
	ActivityID string    `json:"activityId"`
	Type       string    `json:"type"`
	Attempt    int32     `json:"attempt"`
	Started    time.Time `json:"started"`
	PID        int       `json:"pid"`
}

// journal is this process's journal.
type journal struct {
	dir string
	log *slog.Logger
	seq atomic.Uint64
}

// newJournal returns this process's journal in workDir; recover must run
// before it records anything.
func newJournal(workDir string, log *slog.Logger) *journal {
	return &journal{dir: filepath.Join(workDir, journalDir, strconv.Itoa(os.Getpid())), log: log}
}

// completer is what recover needs of the Temporal client.
type completer interface {
	CompleteActivity(ctx context.Context, taskToken []byte, result any, err error) error
}

var _ completer = client.Client(nil)

// recover fails the attempts in the journals of processes that are gone
// and removes those journals. It returns how many attempts Temporal took
// back. Errors about single entries are logged: a journal that cannot be
// read costs only the heartbeat timeout it was meant to save.
func (j *journal) recover(ctx context.Context, c completer) (int, error) {
	root := filepath.Dir(j.dir)
	dirs, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("worker journal %s: %w", root, err)
	}
	taken := 0
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || !d.IsDir() {
			continue
		}
		if pid != os.Getpid() && alive(pid) {
			continue // another worker on this folder, running
		}
		dir := filepath.Join(root, d.Name())
		files, _ := os.ReadDir(dir)
		for _, f := range files {
			path := filepath.Join(dir, f.Name())
			raw, err := os.ReadFile(path)
			var e journalEntry
			if err == nil {
				err = json.Unmarshal(raw, &e)
			}
			if err != nil {
				j.log.Warn("worker journal: unreadable entry, left to its heartbeat timeout", "file", path, "err", err)
				_ = os.Remove(path)
				continue
			}
			cause := temporal.NewApplicationError(fmt.Sprintf(
				"the worker running this attempt (pid %d) died; a worker restarted on its work folder handed the attempt back for an immediate retry", e.PID),
				errTypeWorkerDied)
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err = c.CompleteActivity(cctx, e.Token, nil, cause)
			cancel()
			if err != nil {
				// Already timed out, retried or finished: nothing to hand back.
				j.log.Info("worker journal: attempt of a dead worker not handed back", "workflow", e.WorkflowID,
					"activity", e.ActivityID, "type", e.Type, "attempt", e.Attempt, "reason", err)
			} else {
				taken++
				j.log.Warn("worker journal: handed back an attempt its dead worker left, for an immediate retry", "workflow", e.WorkflowID,
					"activity", e.ActivityID, "type", e.Type, "attempt", e.Attempt, "dead_pid", e.PID, "started", e.Started)
			}
			_ = os.Remove(path)
		}
		if pid != os.Getpid() {
			_ = os.Remove(dir)
		}
	}
	return taken, nil
}

// alive reports whether a process with pid runs. A process killed with
// SIGKILL stays a zombie until its parent reaps it (for a worker started
// with setsid, an init that may take its time), and kill(pid, 0) succeeds
// on a zombie: on Linux its state in /proc says it is dead.
func alive(pid int) bool {
	if stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat")); err == nil {
		// "PID (comm) S ...": the state follows the command's closing
		// parenthesis (the command may hold spaces and parentheses).
		if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
			return stat[i+2] != 'Z' && stat[i+2] != 'X'
		}
		return true
	} else if errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat("/proc/self"); err == nil {
			return false // /proc is there, and this pid is not in it
		}
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// record writes the running attempt's entry and returns what removes it.
// A failure to write is logged and leaves the attempt unjournaled.
func (j *journal) record(ctx context.Context) func() {
	info := activity.GetInfo(ctx)
	e := journalEntry{
		Token: info.TaskToken, WorkflowID: info.WorkflowExecution.ID, RunID: info.WorkflowExecution.RunID,
		ActivityID: info.ActivityID, Type: info.ActivityType.Name, Attempt: info.Attempt, Started: time.Now().UTC(), PID: os.Getpid(),
	}
	raw, err := json.Marshal(e)
	if err == nil {
		err = os.MkdirAll(j.dir, 0o700)
	}
	path := filepath.Join(j.dir, strconv.FormatUint(j.seq.Add(1), 10)+".json")
	if err == nil {
		// Mode 600: a task token lets whoever holds it complete the attempt.
		err = os.WriteFile(path, raw, 0o600)
	}
	if err != nil {
		j.log.Warn("worker journal: cannot record a running attempt; if this worker dies it is retried after its heartbeat timeout",
			"type", e.Type, "err", err)
		return func() {}
	}
	return func() { _ = os.Remove(path) }
}

// journalInterceptor records every activity attempt in the journal while
// it runs.
type journalInterceptor struct {
	interceptor.WorkerInterceptorBase
	j *journal
}

func (i *journalInterceptor) InterceptActivity(_ context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	return &journalActivity{ActivityInboundInterceptorBase: interceptor.ActivityInboundInterceptorBase{Next: next}, j: i.j}
}

type journalActivity struct {
	interceptor.ActivityInboundInterceptorBase
	j *journal
}

func (a *journalActivity) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	done := a.j.record(ctx)
	defer done()
	return a.Next.ExecuteActivity(ctx, in)
}
