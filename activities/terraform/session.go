package terraform

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/terraform-exec/tfexec"
	tfjson "github.com/hashicorp/terraform-json"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/keelson-dev/keelson/bundle"
)

const (
	// heartbeatEvery is well inside the workflows' 10 s heartbeat timeout,
	// so that a dead worker's activity is retried within seconds while a
	// live one is never mistaken for dead.
	heartbeatEvery = 3 * time.Second
	// lockTimeout is how long a run waits for the state lock held by
	// another live Terraform (a dead one's lock goes with its process).
	lockTimeout = "3m"
	// interruptGrace is how long Terraform may take to stop after the
	// interrupt sent on cancellation (it writes its state first) before it
	// is killed.
	interruptGrace = 30 * time.Second
	// scratchDir, inside the working copy, holds plan files being uploaded
	// or applied.
	scratchDir = ".keelson"
)

// session is one activity's use of one region's working copy: it holds the
// working copy's lock, a configured Terraform and the heartbeat.
type session struct {
	a    *Activities
	st   Stack
	name string // APP/REGION, for messages
	dir  string
	tf   *tfexec.Terraform
	log  *slog.Logger

	// bin and env make another Terraform for a command run beside tf's
	// (show beside apply); tfKey is where tf goes back to at close.
	bin   string
	env   map[string]string
	tfKey string

	stdout, stderr *lineLog

	mu    sync.Mutex
	phase string

	// attempt tells this activity attempt's leases from an earlier one's
	// (lease.go).
	attempt string

	unlock        func()
	stopHeartbeat func()
}

// open checks the stack, takes the region's working copy, refreshes its
// configuration from the stack's source, and starts heartbeating.
func (a *Activities) open(ctx context.Context, st Stack, op string) (_ *session, err error) {
	if err := checkStack(st); err != nil {
		return nil, err
	}
	src := ""
	if st.Bundle == "" {
		// A release started before bundles: the folder on this disk.
		if src, err = filepath.Abs(st.Dir); err != nil {
			return nil, badInput("%s %s/%s: stack dir %s: %v", op, st.Application, st.Region, st.Dir, err)
		}
		if fi, err := os.Stat(src); err != nil || !fi.IsDir() {
			return nil, badInput("%s %s/%s: stack dir %s is not a readable folder", op, st.Application, st.Region, src)
		}
	} else if a.Bundles == nil {
		return nil, errors.New("terraform activities: this worker has no bundle cache")
	}
	if a.WorkDir == "" {
		return nil, errors.New("terraform activities: WorkDir is not set")
	}
	if a.Artifacts == nil {
		return nil, errors.New("terraform activities: no artifact store")
	}
	workDir, err := filepath.Abs(a.WorkDir)
	if err != nil {
		return nil, fmt.Errorf("terraform work dir: %w", err)
	}
	s := &session{
		a:    a,
		st:   st,
		name: st.Application + "/" + st.Region,
		dir:  filepath.Join(workDir, st.Application, st.Region),

		attempt: newAttemptToken(),
	}
	logger := a.Logger
	if logger == nil {
		logger = slog.Default()
	}
	s.log = logger.With("app", st.Application, "region", st.Region, "version", st.Version, "op", op)
	s.stdout = &lineLog{log: s.log, level: slog.LevelInfo}
	s.stderr = &lineLog{log: s.log, level: slog.LevelWarn}

	s.setPhase("waiting for " + s.name)
	s.stopHeartbeat = s.heartbeat(ctx)
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if st.Bundle != "" {
		// Fetched and checked against its digest under the heartbeat: a
		// large bundle from S3 may take a while.
		s.setPhase("fetching bundle " + st.Bundle)
		if src, err = a.Bundles.Resolve(ctx, st.Bundle, st.Dir); err != nil {
			msg := fmt.Sprintf("%s %s: %v", op, s.name, err) // err names the bundle
			if bundle.Invalid(err) {
				return nil, temporal.NewNonRetryableApplicationError(msg, ErrBadBundle, err)
			}
			return nil, errors.New(msg)
		}
		if fi, err := os.Stat(src); err != nil || !fi.IsDir() {
			return nil, badInput("%s %s: bundle %s has no stack folder %s", op, s.name, st.Bundle, st.Dir)
		}
		s.setPhase("waiting for " + s.name)
	}

	// Two activities of one worker must not rewrite or run the same working
	// copy at once; across workers, Terraform's state lock serialises runs.
	if s.unlock, err = lockDir(ctx, s.dir); err != nil {
		return nil, fmt.Errorf("%s %s: %w", op, s.name, err)
	}
	if err := os.MkdirAll(filepath.Join(s.dir, scratchDir), 0o755); err != nil {
		return nil, fmt.Errorf("%s %s: %w", op, s.name, err)
	}
	if pids := reapOrphans(s.dir); len(pids) > 0 {
		s.log.Warn("killed processes left in the working copy by a Terraform that died", "pids", pids)
	}
	if err := syncStack(src, s.dir); err != nil {
		return nil, fmt.Errorf("%s %s: copy stack %s: %w", op, s.name, src, err)
	}

	s.bin = a.Binary
	if s.bin == "" {
		if s.bin, err = exec.LookPath("terraform"); err != nil {
			return nil, fmt.Errorf("%s %s: %w", op, s.name, err)
		}
	}
	if s.env, err = a.env(workDir); err != nil {
		return nil, err
	}
	if s.tf, err = s.newTerraform(); err != nil {
		return nil, fmt.Errorf("%s %s: %w", op, s.name, err)
	}
	return s, nil
}

// newTerraform is a Terraform for the working copy, with the session's
// binary and environment: one kept from an earlier session (terraforms),
// or a new one. It goes back with s.a.terraforms.put(s.tfKey, tf).
func (s *session) newTerraform() (*tfexec.Terraform, error) {
	if s.tfKey == "" {
		key, err := terraformKey(s.dir, s.bin)
		if err != nil {
			return nil, err
		}
		s.tfKey = key
	}
	tf := s.a.terraforms.take(s.tfKey)
	if tf == nil {
		var err error
		if tf, err = tfexec.NewTerraform(s.dir, s.bin); err != nil {
			return nil, err
		}
	}
	if err := tf.SetEnv(s.env); err != nil {
		return nil, fmt.Errorf("terraform activities: Env: %w", err)
	}
	if err := tf.SetWaitDelay(interruptGrace); err != nil {
		return nil, err
	}
	return tf, nil
}

func (s *session) close() {
	// Back before the working copy is unlocked, for the session after.
	s.a.terraforms.put(s.tfKey, s.tf)
	if s.unlock != nil {
		// Terraform has exited by now; a provisioner it started may not
		// have (an interrupted one leaves its children running).
		if pids := reapOrphans(s.dir); len(pids) > 0 {
			s.log.Info("killed processes left in the working copy by Terraform", "pids", pids)
		}
		s.unlock()
	}
	s.stopHeartbeat()
}

// env is the whole environment Terraform sees. The worker's own environment
// stays out of it (it may hold credentials meant for Keelson only), except
// PATH, which local-exec provisioners and credential helpers need.
// terraform-exec adds TF_IN_AUTOMATION=1 itself and refuses it in SetEnv.
func (a *Activities) env(workDir string) (map[string]string, error) {
	env := map[string]string{
		"PATH":               os.Getenv("PATH"),
		"CHECKPOINT_DISABLE": "1", // no version check calls home from the workers
	}
	if _, ok := a.Env["TF_CLI_CONFIG_FILE"]; !ok {
		// An empty CLI configuration of our own: without one Terraform
		// warns about a missing ~/.terraformrc and would read whatever the
		// worker's user has there.
		cfg := filepath.Join(workDir, "terraform.rc")
		f, err := os.OpenFile(cfg, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, fmt.Errorf("terraform CLI config: %w", err)
		}
		f.Close()
		env["TF_CLI_CONFIG_FILE"] = cfg
	}
	maps.Copy(env, a.Env)
	return env, nil
}

func (s *session) setPhase(p string) {
	s.mu.Lock()
	s.phase = p
	s.mu.Unlock()
}

func (s *session) currentPhase() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.phase
}

// heartbeat records the current phase ("terraform apply", ...) as heartbeat
// details every few seconds until stopped. Temporal delivers cancellation
// through heartbeats, so this is also what lets a cancel reach Terraform.
func (s *session) heartbeat(ctx context.Context) func() {
	if !activity.IsActivity(ctx) {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(heartbeatEvery)
		defer t.Stop()
		for {
			activity.RecordHeartbeat(ctx, s.currentPhase())
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// run runs one Terraform command. stdout is where the command's standard
// output goes: the log for commands people read, a buffer or nothing for
// JSON (plan JSON and outputs can hold secrets, which stay out of logs).
func (s *session) run(ctx context.Context, command string, stdout io.Writer, fn func() error) error {
	s.setPhase("terraform " + command)
	if activity.IsActivity(ctx) {
		activity.RecordHeartbeat(ctx, s.currentPhase())
	}
	s.tf.SetStdout(stdout)
	s.tf.SetStderr(s.stderr)
	start := time.Now()
	// terraform-exec starts Terraform with Pdeathsig=SIGKILL, so that it
	// dies with the worker instead of applying on, unseen, next to the
	// retry. The kernel sends that signal when the thread that started the
	// child exits, not the process: keep this goroutine on its thread so
	// the Go runtime cannot retire that thread while Terraform runs.
	runtime.LockOSThread()
	err := fn()
	runtime.UnlockOSThread()
	s.stdout.flush()
	s.stderr.flush()
	s.log.Info("terraform command finished", "command", command, "duration", time.Since(start).Round(time.Millisecond), "ok", err == nil)
	return err
}

func (s *session) scratch(name string) string { return filepath.Join(s.dir, scratchDir, name) }

// init runs terraform init, unless it already succeeded in this working
// copy with the same inputs (initDigest), and then takes back a lock this
// activity's earlier attempt left.
func (s *session) init(ctx context.Context) error {
	opts := []tfexec.InitOption{tfexec.Upgrade(false)}
	if b := s.a.Backend; b != nil {
		more, err := b.configure(s)
		if err != nil {
			return fmt.Errorf("init %s: %w", s.name, err)
		}
		opts = append(opts, more...)
	}
	digest, err := s.initDigest()
	if err != nil {
		// Init then runs every time; it still works.
		s.log.Warn("could not read init's inputs; running init", "err", err)
	}
	if digest != "" && s.initCurrent(digest) {
		s.log.Debug("terraform init skipped: nothing it reads changed since it succeeded")
	} else {
		// Gone before init starts: an init that fails half-way is not
		// taken for done.
		if err := os.Remove(s.initStamp()); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("init %s: %w", s.name, err)
		}
		err := s.run(ctx, "init", s.stdout, func() error {
			// Without Backend, state is the working copy's terraform.tfstate
			// (the demo stacks declare no backend). Built-in providers only, so
			// init never needs a registry; a stack that does gets a clear error
			// from init.
			return s.tf.Init(ctx, opts...)
		})
		if err != nil {
			return s.fail(ctx, "init", err)
		}
		if digest != "" {
			s.stampInit(digest)
		}
	}
	// A lock this activity's earlier attempt left when its worker died
	// is taken back before the plan or apply would wait on it.
	return s.reclaim(ctx)
}

// validate tells, after a plan failed, whether the configuration is wrong,
// with Terraform's own diagnostics (every error with its file and line), so
// that such a failure is reported as such and not retried. It runs only
// then: plan validates the configuration itself, and a process less is
// 60 ms less on every plan.
func (s *session) validate(ctx context.Context) error {
	var out *tfjson.ValidateOutput
	err := s.run(ctx, "validate", io.Discard, func() (err error) {
		out, err = s.tf.Validate(ctx)
		return err
	})
	if err != nil {
		return s.fail(ctx, "validate", err)
	}
	if out.Valid {
		return nil
	}
	var problems []string
	for _, d := range out.Diagnostics {
		if d.Severity != tfjson.DiagnosticSeverityError {
			continue
		}
		p := d.Summary
		if d.Range != nil {
			p = fmt.Sprintf("%s (%s:%d)", d.Summary, d.Range.Filename, d.Range.Start.Line)
		}
		if d.Detail != "" {
			p += ": " + d.Detail
		}
		problems = append(problems, p)
	}
	return configError(fmt.Sprintf("validate %s: %s", s.name, strings.Join(problems, "; ")), nil)
}

// vars are the stack's variables with Keelson's own always set from the
// stack, in a stable order.
func (s *session) vars() []tfexec.PlanOption {
	v := maps.Clone(s.st.Vars)
	if v == nil {
		v = map[string]string{}
	}
	v[VarApplication] = s.st.Application
	v[VarRegion] = s.st.Region
	v[VarVersion] = s.st.Version
	var opts []tfexec.PlanOption
	for _, k := range slices.Sorted(maps.Keys(v)) {
		opts = append(opts, tfexec.Var(k+"="+v[k]))
	}
	return opts
}

// plan saves a plan to file and reports whether it changes anything.
func (s *session) plan(ctx context.Context, file string) (bool, error) {
	opts := append(s.vars(), tfexec.Out(file), tfexec.LockTimeout(lockTimeout))
	var changes bool
	err := s.lease(ctx, "plan", func(ctx context.Context) error {
		return s.run(ctx, "plan", s.stdout, func() (err error) {
			changes, err = s.tf.Plan(ctx, opts...)
			return err
		})
	})
	if err != nil {
		return false, s.fail(ctx, "plan", err)
	}
	return changes, nil
}

// show reads a saved plan as JSON: parsed, and as Terraform wrote it for
// the artifact store.
func (s *session) show(ctx context.Context, file string) (*tfjson.Plan, []byte, error) {
	if err := knowVersion(ctx, s.tf); err != nil {
		return nil, nil, s.fail(ctx, "show plan", err)
	}
	var raw bytes.Buffer
	var plan *tfjson.Plan
	err := s.run(ctx, "show", &raw, func() (err error) {
		plan, err = s.tf.ShowPlanFile(ctx, file)
		return err
	})
	if err != nil {
		return nil, nil, s.fail(ctx, "show plan", err)
	}
	return plan, raw.Bytes(), nil
}

// showAside starts terraform show of a saved plan beside whatever the
// session runs next (its own Terraform, its own output), and returns what
// waits for it: the plan, parsed and as Terraform wrote it. Apply reads the
// approved plan this way while it applies the same file: show only reads
// the plan file, and the summary is needed only once the apply is done.
func (s *session) showAside(ctx context.Context, file string) func() (*tfjson.Plan, []byte, error) {
	tf, err := s.newTerraform()
	if err != nil {
		return func() (*tfjson.Plan, []byte, error) { return nil, nil, fmt.Errorf("show plan of %s: %w", s.name, err) }
	}
	stderr := &lineLog{log: s.log, level: slog.LevelWarn}
	var raw bytes.Buffer
	tf.SetStderr(stderr)
	var plan *tfjson.Plan
	done := make(chan struct{})
	go func() {
		defer close(done)
		start := time.Now()
		runtime.LockOSThread() // Pdeathsig, as in run
		if err = knowVersion(ctx, tf); err == nil {
			tf.SetStdout(&raw)
			plan, err = tf.ShowPlanFile(ctx, file)
		}
		runtime.UnlockOSThread()
		stderr.flush()
		tf.SetStdout(io.Discard)
		s.a.terraforms.put(s.tfKey, tf)
		s.log.Info("terraform command finished", "command", "show", "duration", time.Since(start).Round(time.Millisecond), "ok", err == nil)
	}()
	return func() (*tfjson.Plan, []byte, error) {
		<-done
		if err != nil {
			return nil, nil, s.fail(ctx, "show plan", err)
		}
		return plan, raw.Bytes(), nil
	}
}

// knowVersion has tf ask Terraform's version now unless it knows it
// (terraforms keeps what it learnt), with the answer discarded.
// terraform-exec asks before the first show, and writes the answer to the
// Terraform's stdout too, which for show is the plan's JSON: asked then, the
// JSON kept in the artifact store would start with the version's.
func knowVersion(ctx context.Context, tf *tfexec.Terraform) error {
	tf.SetStdout(io.Discard)
	if _, _, err := tf.Version(ctx, false); err != nil {
		return fmt.Errorf("terraform version: %w", err)
	}
	return nil
}

func (s *session) apply(ctx context.Context, file string) error {
	err := s.lease(ctx, "apply", func(ctx context.Context) error {
		return s.run(ctx, "apply", s.stdout, func() error {
			return s.tf.Apply(ctx, tfexec.DirOrPlan(file), tfexec.LockTimeout(lockTimeout))
		})
	})
	if err != nil {
		if isStale(err) && ctx.Err() == nil {
			// Retryable, and recognised by the caller, which plans again.
			return fmt.Errorf("terraform apply %s: saved plan is stale: %w", s.name, err)
		}
		if isOtherLineage(err) && ctx.Err() == nil {
			// Checked before the apply already; this is the state being
			// replaced in between, seen by Terraform under its lock.
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
				"terraform apply %s: the saved plan was made from a state of another lineage: "+
					"the state was replaced or is another stack's; not applied (%s)", s.name, diagnostics(err.Error())),
				ErrStateLineage, err)
		}
		return s.fail(ctx, "apply", err)
	}
	return nil
}

// outputs returns the stack's outputs decoded from JSON. Sensitive outputs
// are left out: they would land in workflow history, and whatever needs a
// secret should read it from where Terraform put it. They are read from the
// state where Keelson knows where it is (stateDirect), as terraform output
// reads them, and from terraform output otherwise.
func (s *session) outputs(ctx context.Context) (map[string]any, error) {
	type output struct {
		Value     json.RawMessage
		Sensitive bool
	}
	meta := map[string]output{}
	doc, ok, err := s.stateDirect(ctx)
	if err != nil {
		return nil, err
	}
	if ok {
		for name, o := range doc.Outputs {
			meta[name] = output{Value: o.Value, Sensitive: o.Sensitive}
		}
	} else {
		var got map[string]tfexec.OutputMeta
		err := s.run(ctx, "output", io.Discard, func() (err error) {
			got, err = s.tf.Output(ctx)
			return err
		})
		if err != nil {
			return nil, s.fail(ctx, "output", err)
		}
		for name, o := range got {
			meta[name] = output{Value: o.Value, Sensitive: o.Sensitive}
		}
	}
	out := make(map[string]any, len(meta))
	for name, m := range meta {
		if m.Sensitive {
			s.log.Info("sensitive output left out of the result", "output", name)
			continue
		}
		var v any
		if err := json.Unmarshal(m.Value, &v); err != nil {
			return nil, fmt.Errorf("output %s of %s: %w", name, s.name, err)
		}
		out[name] = v
	}
	return out, nil
}

// lineLog writes Terraform's output to the log one line at a time, as it
// comes, instead of collecting it whole.
type lineLog struct {
	log   *slog.Logger
	level slog.Level
	mu    sync.Mutex
	buf   []byte
}

func (w *lineLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

func (w *lineLog) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.emit(w.buf)
	w.buf = nil
}

func (w *lineLog) emit(line []byte) {
	if s := strings.TrimRight(string(line), "\r "); s != "" {
		w.log.Log(context.Background(), w.level, "terraform: "+s)
	}
}
