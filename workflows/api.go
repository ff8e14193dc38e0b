// Package workflows holds Keelson's deterministic workflow code: the Release
// workflow, one RegionRollout child per region, gates and their Updates.
// Nothing here does I/O; activities are referred to through nil pointers.
package workflows

import (
	"fmt"
	"strings"
	"time"

	"github.com/keelson-dev/keelson/activities/analysis"
	"github.com/keelson-dev/keelson/identity"
	"github.com/keelson-dev/keelson/release"
)

// TaskQueue is the default task queue of Keelson's workers.
const TaskQueue = "keelson"

// Update, query and signal names. Callers use these constants; the
// workflow registers handlers under the same names. Every Update also has a
// signal of the same name for tools that can only signal (no answer, and a
// refused signal is logged by the workflow instead).
const (
	UpdateApprove  = "approve"
	UpdateReject   = "reject"
	UpdatePause    = "pause"
	UpdateResume   = "resume"
	UpdateAbort    = "abort"
	UpdatePromote  = "promote"
	UpdateRollback = "rollback"

	QueryStatus = "status"
)

// Search attributes registered by the dev server at start
// (--search-attribute NAME=Keyword) and upserted by the Release workflow.
const (
	SearchAttrApplication = "KeelsonApplication"
	SearchAttrVersion     = "KeelsonVersion"
	SearchAttrPhase       = "KeelsonPhase"
)

// ReleaseID is the workflow ID of the release of application at version.
// It is derived, not random, so that a second start of the same release (a
// CI retry) finds the one already running.
func ReleaseID(application, version string) string {
	return "release-" + sanitize(application) + "-" + sanitize(version)
}

// RegionID is the workflow ID of a region's child workflow.
func RegionID(releaseID, region string) string {
	return releaseID + "/" + sanitize(region)
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
}

// ReleaseInput starts a release of Spec at Version.
type ReleaseInput struct {
	Spec    release.Spec `json:"spec"`
	Version string       `json:"version"`
	// Bundle is the digest of the release's bundle in the artifact store:
	// the chart and Terraform stack packed at start (bundle.ForSpec), which
	// Spec's paths then name. Empty for releases started before bundles,
	// whose paths are on the worker's disk.
	Bundle string `json:"bundle,omitempty"`
	// StartedBy is who or what started the release (a user, a CI job).
	StartedBy string `json:"startedBy,omitempty"`
	// StartProof is the starter's signature over the start (StartIntent),
	// or the schedule creator's over the schedule (ScheduleIntent) for a
	// release a train started. Required when the worker verifies identities.
	StartProof *identity.Proof `json:"startProof,omitempty"`
	// CommitTime is when the change released was committed (`--commit-time`
	// or the CI's variable): the start of DORA's change lead time. Zero
	// when unknown.
	CommitTime time.Time `json:"commitTime,omitempty"`
	// Schedule names the schedule whose train started the release, if any.
	Schedule string `json:"schedule,omitempty"`
	// Undo, when set, makes this release the undo of a finished one: it
	// returns the regions that release changed to the revisions it
	// recorded, in reverse wave order, with the same lane, ownership
	// checks and gates as any release. Spec is the undone release's.
	Undo *UndoInput `json:"undo,omitempty"`
}

// UndoInput names the release being undone and what it changed.
type UndoInput struct {
	ReleaseID string `json:"releaseId"`
	RunID     string `json:"runId"`
	Version   string `json:"version"`
	// ToVersion, when set, is the version each region must return to: a
	// region whose recorded revision holds another version stops the undo.
	ToVersion string `json:"toVersion,omitempty"`
	// Regions are the undone release's region results.
	Regions []RegionResult `json:"regions"`
	// Only limits the undo to these regions; all changed ones when empty.
	Only []string `json:"only,omitempty"`
}

// UndoID is the workflow ID of the undo of the release of application at
// version.
func UndoID(application, version string) string {
	return "rollback-" + sanitize(application) + "-" + sanitize(version)
}

// Phase is where a release or region stands.
type Phase string

const (
	PhasePending     Phase = "pending"
	PhaseQueued      Phase = "queued"
	PhasePlanning    Phase = "planning"
	PhaseAwaitGate   Phase = "awaiting-approval"
	PhaseDeploying   Phase = "deploying"
	PhaseBaking      Phase = "baking"
	PhasePaused      Phase = "paused"
	PhaseRollingBack Phase = "rolling-back"
	PhaseSucceeded   Phase = "succeeded"
	PhaseFailed      Phase = "failed"
	PhaseRolledBack  Phase = "rolled-back"
	PhaseRejected    Phase = "rejected"
	PhaseAborted     Phase = "aborted"
)

// Done reports whether the phase is final.
func (p Phase) Done() bool {
	switch p {
	case PhaseSucceeded, PhaseFailed, PhaseRolledBack, PhaseRejected, PhaseAborted:
		return true
	}
	return false
}

// GateAnswer is the argument of the approve and reject Updates.
type GateAnswer struct {
	// Gate names the gate answered; empty answers the gate open now.
	Gate string `json:"gate,omitempty"`
	// User is who answers: a user name, or a Slack user id with Name.
	User   string `json:"user"`
	UserID string `json:"userId,omitempty"`
	// Groups are the groups the caller has resolved User to belong to
	// (Slack user groups); the validator accepts membership of an approver group.
	Groups []string `json:"groups,omitempty"`
	Reason string   `json:"reason,omitempty"`
	// Via says where the answer came from: cli, slack, ui.
	Via string `json:"via,omitempty"`
	// Team is the Slack team of UserID, as the Slack bridge attests it.
	Team string `json:"team,omitempty"`
	// Proof is the signature over the answer (package identity); required
	// when the worker verifies identities.
	Proof *identity.Proof `json:"proof,omitempty"`
}

// Control is the argument of pause, resume, abort, promote and rollback.
type Control struct {
	User   string `json:"user,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Regions limits promote and rollback to these regions; empty means all.
	Regions []string `json:"regions,omitempty"`
	// Waves limits rollback to the regions of these waves (added to Regions).
	Waves []string `json:"waves,omitempty"`
	// Via says where the control came from: cli, slack, ui, cancel.
	Via string `json:"via,omitempty"`
	// Proof is the signature over the control (package identity);
	// required when the worker verifies identities.
	Proof *identity.Proof `json:"proof,omitempty"`
}

// Status is the answer of the status query.
type Status struct {
	Application string       `json:"application"`
	Version     string       `json:"version"`
	Phase       Phase        `json:"phase"`
	Paused      bool         `json:"paused"`
	Message     string       `json:"message,omitempty"`
	Started     time.Time    `json:"started"`
	Waves       []WaveStatus `json:"waves"`
	Gate        *GateStatus  `json:"gate,omitempty"`
	Approvals   []Approval   `json:"approvals,omitempty"`
	// StartedBy is who started the release: the verified identity when the
	// worker verifies identities, else the name the starter gave.
	StartedBy string `json:"startedBy,omitempty"`
	// Access says whether answers and controls are verified, and against
	// which access policy.
	Access string `json:"access,omitempty"`
	// Queue is set while the release waits for its application's lane.
	Queue *QueueStatus `json:"queue,omitempty"`
	// Failovers are the regions that lost their share of the failover
	// name while the release ran.
	Failovers []Failover `json:"failovers,omitempty"`
	// Hold says why the release waits (a freeze, its deploy windows).
	Hold *HoldStatus `json:"hold,omitempty"`
}

// QueueStatus says what a queued release waits for.
type QueueStatus struct {
	Behind   string `json:"behind,omitempty"`
	Position int    `json:"position,omitempty"`
}

// WaveStatus is one wave's state.
type WaveStatus struct {
	Name    string         `json:"name"`
	Phase   Phase          `json:"phase"`
	Regions []RegionStatus `json:"regions"`
}

// RegionStatus is one region's state in the release.
type RegionStatus struct {
	Region           string        `json:"region"`
	Phase            Phase         `json:"phase"`
	Step             string        `json:"step"`
	PreviousRevision int           `json:"previousRevision,omitempty"`
	Revision         int           `json:"revision,omitempty"`
	Health           string        `json:"health,omitempty"`
	Error            string        `json:"error,omitempty"`
	Started          time.Time     `json:"started,omitempty"`
	Duration         time.Duration `json:"duration,omitempty"`
	// Changed is true once this run made a Helm revision in the region.
	Changed bool `json:"changed,omitempty"`
	// Strategy is the region's progressive strategy, Traffic the weights
	// its traffic provider read back last, Analysis the latest analysis.
	Strategy string         `json:"strategy,omitempty"`
	Traffic  map[string]int `json:"traffic,omitempty"`
	Analysis string         `json:"analysis,omitempty"`
	// Seq orders a region's progress reports: signals sent in one workflow
	// task may arrive in any order, and the release keeps the newest.
	Seq int `json:"seq,omitempty"`
}

// GateStatus is the gate waiting for an answer.
type GateStatus struct {
	Name      string    `json:"name"`
	Wave      string    `json:"wave"`
	Regions   []string  `json:"regions"`
	Approvers []string  `json:"approvers,omitempty"`
	Groups    []string  `json:"groups,omitempty"`
	Deadline  time.Time `json:"deadline"`
	Escalated bool      `json:"escalated,omitempty"`
	// Plans summarise each region's Terraform plan the gate approves.
	Plans []GatePlan `json:"plans,omitempty"`
	// Note says why the gate opened again (the plan changed after approval).
	Note string `json:"note,omitempty"`
	// Opened is when this opening of the gate began: a signed answer
	// names it, so that an answer to an earlier opening does not count.
	Opened time.Time `json:"opened,omitempty"`
	// Needed is how many distinct approvals open the gate, and Approved
	// who approved so far.
	Needed   int      `json:"needed,omitempty"`
	Approved []string `json:"approved,omitempty"`
}

// GatePlan is one region's plan as shown at a gate.
type GatePlan struct {
	Region    string   `json:"region"`
	Summary   string   `json:"summary"`
	Destroyed []string `json:"destroyed,omitempty"`
	Exceeds   []string `json:"exceeds,omitempty"`
}

// Approval records how a gate was answered.
type Approval struct {
	Gate     string    `json:"gate"`
	Approved bool      `json:"approved"`
	User     string    `json:"user"`
	UserID   string    `json:"userId,omitempty"`
	Via      string    `json:"via,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	At       time.Time `json:"at"`
	TimedOut bool      `json:"timedOut,omitempty"`
	// Identity is who the answer's proof names (package identity), when
	// the worker verifies identities; Team is their Slack team, Key the
	// fingerprint of the key that signed (the Slack bridge's for a click).
	Identity string `json:"identity,omitempty"`
	Team     string `json:"team,omitempty"`
	Key      string `json:"key,omitempty"`
	// Needed is how many approvals the gate needed, when more than one.
	Needed int `json:"needed,omitempty"`
}

// ReleaseResult is what a finished release returns: every region's outcome.
type ReleaseResult struct {
	ReleaseID   string         `json:"releaseId"`
	Application string         `json:"application"`
	Version     string         `json:"version"`
	Phase       Phase          `json:"phase"`
	Reason      string         `json:"reason,omitempty"`
	Started     time.Time      `json:"started"`
	Finished    time.Time      `json:"finished"`
	Regions     []RegionResult `json:"regions"`
	Approvals   []Approval     `json:"approvals,omitempty"`
	// Failovers are the regions that lost their share of the failover
	// name; each gets it back only through `keelson traffic restore`.
	Failovers []Failover `json:"failovers,omitempty"`
}

// Duration is how long the release ran.
func (r *ReleaseResult) Duration() time.Duration { return r.Finished.Sub(r.Started) }

// RegionResult is one region's outcome.
type RegionResult struct {
	Region           string `json:"region"`
	Wave             string `json:"wave"`
	Phase            Phase  `json:"phase"`
	PreviousRevision int    `json:"previousRevision"`
	Revision         int    `json:"revision"`
	// RolledBackTo is the revision rollback made, 0 when not rolled back.
	RolledBackTo int           `json:"rolledBackTo,omitempty"`
	Changed      bool          `json:"changed"`
	Error        string        `json:"error,omitempty"`
	Started      time.Time     `json:"started"`
	Duration     time.Duration `json:"duration"`
	Terraform    string        `json:"terraform,omitempty"` // summary line, e.g. "+1 ~0 -0"

	// Strategy is the progressive strategy the region followed, Traffic
	// the last weights read back, Analysis every analysis it ran.
	Strategy string           `json:"strategy,omitempty"`
	Traffic  map[string]int   `json:"traffic,omitempty"`
	Analysis []AnalysisRecord `json:"analysis,omitempty"`
	// AutoRollback records a region that reverted by itself before its
	// promotion: traffic back to stable, then the side removed.
	AutoRollback *AutoRollback `json:"autoRollback,omitempty"`
	// SideLeft is true when the side release (canary or preview) still
	// exists: the release sends traffic to stable and removes it after
	// rolling the stable release back.
	SideLeft bool `json:"sideLeft,omitempty"`
}

// AnalysisRecord is one analysis a region ran: its verdict, and the samples
// that decided it (all of them are in the artifact store at SamplesKey).
type AnalysisRecord struct {
	Step       string            `json:"step"`
	Verdict    string            `json:"verdict"`
	Reason     string            `json:"reason,omitempty"`
	Samples    int               `json:"samples"`
	SamplesKey string            `json:"samplesKey,omitempty"`
	DecidedAt  time.Time         `json:"decidedAt,omitempty"`
	Deciding   []analysis.Sample `json:"deciding,omitempty"`
	// Accepted is set when a person resumed after an inconclusive result.
	Accepted bool `json:"accepted,omitempty"`
}

// AutoRollback is a region's own revert: when the deciding sample was
// taken, when traffic was back on stable, and when the side was removed.
type AutoRollback struct {
	Reason         string    `json:"reason"`
	DecidedAt      time.Time `json:"decidedAt,omitempty"`
	Started        time.Time `json:"started"`
	TrafficAt      time.Time `json:"trafficAt,omitempty"`
	HelmAt         time.Time `json:"helmAt,omitempty"`
	StableRevision int       `json:"stableRevision,omitempty"`
	Error          string    `json:"error,omitempty"`
}

// String is a one-line outcome, for logs and the CLI.
func (r RegionResult) String() string {
	return fmt.Sprintf("%s: %s (revision %d -> %d)", r.Region, r.Phase, r.PreviousRevision, r.Revision)
}
