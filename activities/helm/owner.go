package helm

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage"
	"helm.sh/helm/v3/pkg/storage/driver"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Owner identifies the Keelson run that makes a revision. Every revision
// Keelson makes (install, upgrade, rollback) carries it as the Helm release
// labels LabelRelease and LabelRun, so that a later call can tell its own
// revisions from revisions made by hand, by another tool or by another
// release, and leave those alone.
type Owner struct {
	ReleaseID string `json:"releaseId"`
	RunID     string `json:"runId"`
}

const (
	// LabelRelease and LabelRun hold Owner.ReleaseID and Owner.RunID, as
	// label values (see labelValue).
	LabelRelease = "keelson.dev/release"
	LabelRun     = "keelson.dev/run"
	LabelOp      = "keelson.dev/operation" // "upgrade" | "rollback"
	// ErrForeignRevision: the latest revision was not made by this run (a
	// `helm upgrade` by hand, another tool, another release). Non-retryable;
	// the message names the revision, its owner (the Keelson release id from
	// its labels, or "not made by Keelson"), its status, chart version, app
	// version, when it was deployed and its description. The error's details
	// hold the Revision.
	ErrForeignRevision = "HelmForeignRevision"
	// ErrUpgradeFailed: Helm made the revision and then failed (a hook, an
	// object the API server refused): the region changed and is rolled
	// back; retrying would only make more failed revisions.
	ErrUpgradeFailed = "HelmUpgradeFailed"
)

const (
	opUpgrade  = "upgrade"
	opRollback = "rollback"
	// labelRevision holds the number of the revision the labels were put
	// on. Helm copies a release's custom labels to the next revision: a
	// `helm upgrade` by hand over a Keelson revision carries that revision's
	// LabelRun, and so does a `helm rollback` to one. The labels count only
	// where labelRevision is the revision's own number, which no copy is.
	labelRevision = "keelson.dev/revision"
)

// ownerLabelKeys are the labels Keelson puts on the revisions it makes.
var ownerLabelKeys = []string{LabelRelease, LabelRun, LabelOp, labelRevision}

// Made reports whether rev carries o's labels: the revision was made by
// that Keelson run. Pure, so workflow code may call it.
func (o Owner) Made(rev Revision) bool {
	return rev.ReleaseID != "" && rev.ReleaseID == labelValue(o.ReleaseID) && rev.RunID == labelValue(o.RunID)
}

// labelValue returns id when it is a valid label value (release ids such
// as release-demo-1.2.0 and UUIDs are), and otherwise a deterministic valid
// one: id with each character a label value cannot hold replaced by '-',
// cut to 46 characters and trimmed of non-alphanumeric ends, then '-' and
// the first 16 hex digits of id's SHA-256. The same id always gives the
// same value, so ownership compares labelValue(id) with the label.
func labelValue(id string) string {
	if len(validation.IsValidLabelValue(id)) == 0 {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	digest := hex.EncodeToString(sum[:])[:16]
	prefix := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '-'
	}, id)
	if len(prefix) > validation.LabelValueMaxLength-1-len(digest) {
		prefix = prefix[:validation.LabelValueMaxLength-1-len(digest)]
	}
	prefix = strings.Trim(prefix, "-_.")
	if prefix == "" {
		return digest
	}
	return prefix + "-" + digest
}

// ownerLabels are the labels of revision rev made by o with op.
func ownerLabels(o Owner, op string, rev int) map[string]string {
	return map[string]string{
		LabelRelease:  labelValue(o.ReleaseID),
		LabelRun:      labelValue(o.RunID),
		LabelOp:       op,
		labelRevision: strconv.Itoa(rev),
	}
}

// maker is who made a revision, read from its labels.
type maker struct {
	releaseID, runID, op string
}

// makerOf returns who made rel; ok is false when Keelson did not make it,
// including when rel carries Keelson labels Helm copied from an earlier
// revision (see labelRevision).
func makerOf(rel *release.Release) (m maker, ok bool) {
	if rel == nil || rel.Labels[LabelRun] == "" || rel.Labels[labelRevision] != strconv.Itoa(rel.Version) {
		return maker{}, false
	}
	return maker{releaseID: rel.Labels[LabelRelease], runID: rel.Labels[LabelRun], op: rel.Labels[LabelOp]}, true
}

// madeByRun tells whether run runID made rel.
func madeByRun(rel *release.Release, runID string) bool {
	m, ok := makerOf(rel)
	return ok && runID != "" && m.runID == labelValue(runID)
}

// foreignRevision is the ErrForeignRevision error of an operation (what,
// e.g. "upgrade app in eu-1") that found rel latest where it expected
// expected; rel is nil when the release has no revision left.
func foreignRevision(what string, rel *release.Release, expected string) error {
	if rel == nil {
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%s: the release has no revision any more (its history was removed), expected %s; changing nothing",
				what, expected),
			ErrForeignRevision, nil, Revision{})
	}
	return temporal.NewNonRetryableApplicationError(
		fmt.Sprintf("%s: the latest revision was not made by this run (expected %s); changing nothing: %s",
			what, expected, describeRevision(rel)),
		ErrForeignRevision, nil, toRevision(rel))
}

// describeRevision says who made rel and what it is, for people.
func describeRevision(rel *release.Release) string {
	r := toRevision(rel)
	var b strings.Builder
	fmt.Fprintf(&b, "revision %d", r.Revision)
	if m, ok := makerOf(rel); ok {
		fmt.Fprintf(&b, " made by Keelson release %s (run %s, %s)", m.releaseID, m.runID, m.op)
	} else if rel.Labels[LabelRun] != "" {
		fmt.Fprintf(&b, " not made by Keelson (it carries the labels of Keelson release %s, revision %s, which Helm copies to the next revision)",
			rel.Labels[LabelRelease], rel.Labels[labelRevision])
	} else {
		b.WriteString(" not made by Keelson")
	}
	fmt.Fprintf(&b, ", status %s", orDefault(r.Status, "unknown"))
	if rel.Chart != nil && rel.Chart.Metadata != nil {
		fmt.Fprintf(&b, ", chart %s-%s", rel.Chart.Metadata.Name, r.ChartVersion)
	}
	if r.Version != "" {
		fmt.Fprintf(&b, ", version %s", r.Version)
	} else if r.AppVersion != "" {
		fmt.Fprintf(&b, ", chart appVersion %s", r.AppVersion)
	}
	if !r.Updated.IsZero() {
		fmt.Fprintf(&b, ", deployed %s", r.Updated.UTC().Format(time.RFC3339))
	}
	if r.Description != "" {
		fmt.Fprintf(&b, ", description %q", r.Description)
	}
	return b.String()
}

// labelingDriver puts labels on every revision Helm creates through it,
// and labelRevision set to the revision's number. action.Rollback copies
// the labels of the revision it returns to; through this driver the new
// revision carries its maker's labels from the moment it is stored, so a
// rollback cut short (pending, or failed in a hook) is still recognised as
// this run's own by the next attempt.
type labelingDriver struct {
	driver.Driver
	labels map[string]string
}

func (d *labelingDriver) Create(key string, rls *release.Release) error {
	// A new map: rls.Labels may be the map of the revision rolled back to.
	labels := maps.Clone(rls.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, d.labels)
	labels[labelRevision] = strconv.Itoa(rls.Version)
	rls.Labels = labels
	return d.Driver.Create(key, rls)
}

// labeling returns a copy of cfg for one action whose new revisions get
// labels. The copy has its own Storage, so that the action's writes to it
// (action.Rollback sets MaxHistory) stay with this call.
func labeling(cfg *action.Configuration, labels map[string]string) *action.Configuration {
	c := *cfg
	c.Releases = &storage.Storage{
		Driver:     &labelingDriver{Driver: cfg.Releases.Driver, labels: labels},
		MaxHistory: cfg.Releases.MaxHistory,
		Log:        cfg.Releases.Log,
	}
	return &c
}
