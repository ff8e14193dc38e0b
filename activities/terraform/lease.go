package terraform

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"go.temporal.io/sdk/activity"
)

// A Terraform killed with its worker leaves the S3 lock file of the state
// behind: nothing releases it, and the retry of the activity on another
// worker would wait for it and fail, again and again. Terraform cannot be
// told which lock to expect, and force-unlocking whatever lock is there
// would break the lock of a live run (a person's, or a worker cut off from
// Temporal but still applying). So every locking command (plan, apply)
// runs under a lease: a small object beside the state, written before
// Terraform starts and renewed while it runs, that names the activity
// (workflow run and activity ID), this attempt, and the lock Terraform took
// (its ID, read back from the lock file). A retry force-unlocks a lock only
// when all of these hold:
//
//   - the lease was written by the same activity, by another attempt;
//   - the lease has not been renewed for LeaseTTL (its holder is dead, or
//     has stopped its Terraform: a holder that cannot renew for half the
//     TTL interrupts its own command, so it never applies on unseen);
//   - the lock file holds the lock the lease recorded, or, when the holder
//     died before it could record it, a lock created after the lease by the
//     same user and host.
//
// Anything else is left alone: Terraform waits for it with its lock
// timeout and, failing, names the lock in its error.

// leaseRecord is the lease object, JSON beside the state.
type leaseRecord struct {
	Workflow string `json:"workflow"`
	Run      string `json:"run"`
	Activity string `json:"activity"`
	// Attempt is a random token of the attempt (not its number: a test
	// environment numbers every attempt 1).
	Attempt string    `json:"attempt"`
	Command string    `json:"command"`
	Who     string    `json:"who"` // user@host, as Terraform writes it in its locks
	Started time.Time `json:"started"`
	Renewed time.Time `json:"renewed"`
	// LockID is the lock Terraform took, once seen in the lock file.
	LockID string `json:"lockID,omitempty"`
}

// lockFile is what Terraform's S3 backend writes in KEY.tflock.
type lockFile struct {
	ID        string    `json:"ID"`
	Operation string    `json:"Operation"`
	Who       string    `json:"Who"`
	Version   string    `json:"Version"`
	Created   time.Time `json:"Created"`
}

const (
	// DefaultLeaseTTL is how long a lease must have gone unrenewed before a
	// retry takes its lock back: well past the renewal interval, so that a
	// slow S3 call is not a death.
	DefaultLeaseTTL = 20 * time.Second
	// leaseEvery renews the lease; until the lock is recorded, leaseLookEvery.
	leaseEvery     = 3 * time.Second
	leaseLookEvery = 500 * time.Millisecond
)

func (b *S3Backend) leaseKey(st Stack) string {
	return path.Join(path.Dir(b.Key(st)), "keelson-lease.json")
}

func (b *S3Backend) lockKey(st Stack) string { return b.Key(st) + ".tflock" }

func (b *S3Backend) ttl() time.Duration {
	if b.LeaseTTL > 0 {
		return b.LeaseTTL
	}
	return DefaultLeaseTTL
}

// terraformWho is the Who Terraform writes in a lock it takes on this host.
func terraformWho() string {
	name := ""
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return name + "@" + host
}

// leaseIdentity names the running activity; outside an activity (tools,
// tests calling methods directly) it is empty and leases are not used.
func leaseIdentity(ctx context.Context) (workflow, run, act string, ok bool) {
	if !activity.IsActivity(ctx) {
		return "", "", "", false
	}
	info := activity.GetInfo(ctx)
	return info.WorkflowExecution.ID, info.WorkflowExecution.RunID, info.ActivityID, true
}

func newAttemptToken() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (b *S3Backend) getJSON(ctx context.Context, key string, v any) (bool, error) {
	out, err := b.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(b.Bucket), Key: aws.String(key)})
	if err != nil {
		var nsk *types.NoSuchKey
		if errors.As(err, &nsk) {
			return false, nil
		}
		return false, err
	}
	defer out.Body.Close()
	raw, err := io.ReadAll(out.Body)
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, fmt.Errorf("s3://%s/%s: %w", b.Bucket, key, err)
	}
	return true, nil
}

func (b *S3Backend) putLease(ctx context.Context, st Stack, l *leaseRecord) error {
	raw, err := json.Marshal(l)
	if err != nil {
		return err
	}
	_, err = b.Client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(b.Bucket), Key: aws.String(b.leaseKey(st)),
		Body: bytes.NewReader(raw), ContentLength: aws.Int64(int64(len(raw))),
	})
	return err
}

// lease runs fn, a locking Terraform command, under a lease (see above). It
// passes fn a context that is cancelled (interrupting Terraform) when the
// lease cannot be renewed for half its TTL: past the TTL another worker
// may take the lock back. Without a client or outside an activity, fn runs
// as it is.
func (s *session) lease(ctx context.Context, command string, fn func(context.Context) error) error {
	b := s.a.Backend
	wf, run, act, ok := leaseIdentity(ctx)
	if b == nil || b.Client == nil || !ok {
		return fn(ctx)
	}
	now := time.Now().UTC()
	l := &leaseRecord{Workflow: wf, Run: run, Activity: act, Attempt: s.attempt, Command: command,
		Who: terraformWho(), Started: now, Renewed: now}
	if err := b.putLease(ctx, s.st, l); err != nil {
		return fmt.Errorf("%s %s: write the lease of the state lock: %w", command, s.name, err)
	}
	cmdCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan struct{})
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		lastOK := time.Now()
		for {
			every := leaseEvery
			if l.LockID == "" {
				every = leaseLookEvery
			}
			select {
			case <-done:
				return
			case <-time.After(every):
			}
			if l.LockID == "" {
				var lf lockFile
				if found, err := b.getJSON(ctx, b.lockKey(s.st), &lf); err == nil && found &&
					!lf.Created.Before(l.Started.Add(-time.Second)) && lf.Who == l.Who {
					l.LockID = lf.ID
				}
			}
			l.Renewed = time.Now().UTC()
			if err := b.putLease(ctx, s.st, l); err != nil {
				s.log.Warn("cannot renew the lease of the state lock", "err", err)
				if time.Since(lastOK) > b.ttl()/2 {
					cancel(fmt.Errorf("the lease of the state lock went unrenewed for %s: %w", time.Since(lastOK).Round(time.Second), err))
					return
				}
				continue
			}
			lastOK = time.Now()
		}
	}()
	err := fn(cmdCtx)
	close(done)
	<-renewed
	if cause := context.Cause(cmdCtx); err != nil && cause != nil && ctx.Err() == nil {
		err = fmt.Errorf("%s %s: %w (%w)", command, s.name, cause, err)
	}
	// The lease ends with the command: Terraform has released its lock.
	if _, derr := b.Client.DeleteObject(context.WithoutCancel(ctx), &s3.DeleteObjectInput{
		Bucket: aws.String(b.Bucket), Key: aws.String(b.leaseKey(s.st)),
	}); derr != nil {
		s.log.Warn("cannot delete the lease of the state lock", "err", derr)
	}
	return err
}

// verdict is what a retry does about a lock in the lock file.
type verdict int

const (
	leaveLock verdict = iota // not this activity's dead attempt's: Terraform waits for it
	waitLease                // this activity's other attempt, whose lease may still be renewed
	takeLock                 // this activity's dead attempt's: force-unlock it
)

// reclaimDecision says what to do about a lock left in the lock file, and
// why (for the log).
func reclaimDecision(l *leaseRecord, lf *lockFile, wf, run, act, attempt string, now time.Time, ttl time.Duration) (verdict, string) {
	switch {
	case l == nil:
		return leaveLock, "no lease: the lock is not Keelson's (a person's Terraform, or another tool's)"
	case l.Workflow != wf || l.Run != run || l.Activity != act:
		return leaveLock, fmt.Sprintf("the lease is another activity's (%s/%s activity %s)", l.Workflow, l.Run, l.Activity)
	case l.Attempt == attempt:
		return leaveLock, "the lease is this attempt's own"
	case now.Sub(l.Renewed) < ttl:
		return waitLease, fmt.Sprintf("the lease was renewed %s ago: its holder may be alive", now.Sub(l.Renewed).Round(time.Second))
	case l.LockID != "":
		if lf.ID != l.LockID {
			return leaveLock, fmt.Sprintf("the lock %s is not the one the lease recorded (%s)", lf.ID, l.LockID)
		}
		return takeLock, "the lock the dead attempt recorded"
	case lf.Created.Before(l.Started.Add(-time.Second)):
		return leaveLock, "the lock is older than the lease"
	case lf.Who != l.Who:
		return leaveLock, fmt.Sprintf("the lock was taken by %s, the lease by %s", lf.Who, l.Who)
	default:
		return takeLock, "a lock taken after the dead attempt's lease, by its user and host, before it could record it"
	}
}

// reclaim force-unlocks the state when its lock is this activity's own,
// left by an attempt whose worker died (see above). It waits, under the
// heartbeat, for a lease that is not yet expired: a retry usually starts a
// heartbeat timeout after the death, before the lease's TTL.
func (s *session) reclaim(ctx context.Context) error {
	b := s.a.Backend
	wf, run, act, ok := leaseIdentity(ctx)
	if b == nil || b.Client == nil || !ok {
		return nil
	}
	for {
		var lf lockFile
		found, err := b.getJSON(ctx, b.lockKey(s.st), &lf)
		if err != nil {
			return fmt.Errorf("%s: read the state's lock file: %w", s.name, err)
		}
		if !found {
			return nil
		}
		var l leaseRecord
		hasLease, err := b.getJSON(ctx, b.leaseKey(s.st), &l)
		if err != nil {
			return fmt.Errorf("%s: read the lease of the state lock: %w", s.name, err)
		}
		lp := &l
		if !hasLease {
			lp = nil
		}
		now := time.Now().UTC()
		v, why := reclaimDecision(lp, &lf, wf, run, act, s.attempt, now, b.ttl())
		switch v {
		case takeLock:
			s.log.Warn("force-unlocking the state: its lock was left by this activity's attempt that died",
				"lock", lf.ID, "who", lf.Who, "created", lf.Created, "operation", lf.Operation, "why", why)
			err := s.run(ctx, "force-unlock", s.stdout, func() error {
				return s.tf.ForceUnlock(ctx, lf.ID)
			})
			if err != nil {
				return s.fail(ctx, "force-unlock", err)
			}
			return nil
		case leaveLock:
			s.log.Info("the state is locked; Terraform waits for it", "lock", lf.ID, "who", lf.Who, "why", why)
			return nil
		}
		wait := b.ttl() - now.Sub(l.Renewed) + time.Second
		s.setPhase(fmt.Sprintf("waiting %s for the lease of a dead attempt's state lock to expire", wait.Round(time.Second)))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}
