package workflows

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Stop the line: one long-running workflow (ID FreezeID) holds the
// organisation's freezes, for every application (`keelson freeze --all`)
// or one (`--app A`). Releases subscribe when they start and are told the
// freeze that applies to them whenever it changes (SignalReleaseHold), so
// nothing polls: a held release stops at its next step boundary, a new
// one waits before its first wave, and both go on when the freeze is
// lifted. The workflow never completes; it continues as new when its
// history grows.
const (
	FreezeID       = "keelson-freeze"
	FreezeWorkflow = "Freeze"

	UpdateFreeze   = "freeze"
	UpdateUnfreeze = "unfreeze"
	QueryFreeze    = "freezes"

	SignalFreezeSubscribe   = "freeze-subscribe"
	SignalFreezeUnsubscribe = "freeze-unsubscribe"
	// SignalReleaseHold tells a release the freeze that applies to it.
	SignalReleaseHold = "release-hold"
)

// FreezeRequest is the argument of the freeze and unfreeze Updates: All,
// or one Application.
type FreezeRequest struct {
	All         bool   `json:"all,omitempty"`
	Application string `json:"application,omitempty"`
	User        string `json:"user"`
	Reason      string `json:"reason,omitempty"`
	Via         string `json:"via,omitempty"`
}

// FreezeEntry is one freeze in force.
type FreezeEntry struct {
	User   string    `json:"user"`
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
}

// FreezeSubscriber is a running release that is told about freezes.
type FreezeSubscriber struct {
	ReleaseID   string `json:"releaseId"`
	RunID       string `json:"runId"`
	Application string `json:"application"`
}

// FreezeState is the freeze workflow's state, its query's answer and its
// continue-as-new input.
type FreezeState struct {
	All         *FreezeEntry           `json:"all,omitempty"`
	Apps        map[string]FreezeEntry `json:"apps,omitempty"`
	Subscribers []FreezeSubscriber     `json:"subscribers,omitempty"`
}

// Hold is what applies to one release: held or not, and why.
type Hold struct {
	Held bool `json:"held"`
	// Scope is "all" or the application's name.
	Scope  string    `json:"scope,omitempty"`
	User   string    `json:"user,omitempty"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since,omitempty"`
}

// holdFor is the freeze that applies to an application: the all-freeze
// first (it came from further up), then the application's own.
func (s *FreezeState) holdFor(app string) Hold {
	if s.All != nil {
		return Hold{Held: true, Scope: "all", User: s.All.User, Reason: s.All.Reason, Since: s.All.Since}
	}
	if e, ok := s.Apps[app]; ok {
		return Hold{Held: true, Scope: app, User: e.User, Reason: e.Reason, Since: e.Since}
	}
	return Hold{}
}

// Freeze runs the stop-the-line switch.
func Freeze(ctx workflow.Context, in *FreezeState) error {
	f := &freezeImpl{}
	if in != nil {
		f.state = *in
	}
	if f.state.Apps == nil {
		f.state.Apps = map[string]FreezeEntry{}
	}
	return f.run(ctx)
}

type freezeImpl struct {
	state FreezeState
}

func (f *freezeImpl) run(ctx workflow.Context) error {
	log := workflow.GetLogger(ctx)
	if err := workflow.SetQueryHandler(ctx, QueryFreeze, func() (FreezeState, error) { return f.state, nil }); err != nil {
		return fmt.Errorf("set freeze query: %w", err)
	}
	validate := func(unfreeze bool) func(workflow.Context, FreezeRequest) error {
		return func(_ workflow.Context, q FreezeRequest) error {
			switch {
			case q.User == "":
				return refuse("a freeze needs a user")
			case q.All == (q.Application != ""):
				return refuse("name all applications or one, not both or neither")
			case !unfreeze && q.Reason == "":
				return refuse("a freeze needs a reason: the people it holds read it")
			case unfreeze && q.All && f.state.All == nil:
				return refuse("no freeze of all applications is in force")
			case unfreeze && !q.All:
				if _, ok := f.state.Apps[q.Application]; !ok {
					return refuse("no freeze of %s is in force", q.Application)
				}
			}
			return nil
		}
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateFreeze, func(ctx workflow.Context, q FreezeRequest) (FreezeState, error) {
		e := FreezeEntry{User: q.User, Reason: q.Reason, Since: workflow.Now(ctx)}
		if q.All {
			f.state.All = &e
		} else {
			f.state.Apps[q.Application] = e
		}
		log.Info("Freeze", "all", q.All, "application", q.Application, "user", q.User, "reason", q.Reason)
		f.tell(ctx, q)
		return f.state, nil
	}, workflow.UpdateHandlerOptions{Validator: validate(false)}); err != nil {
		return fmt.Errorf("set freeze update: %w", err)
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateUnfreeze, func(ctx workflow.Context, q FreezeRequest) (FreezeState, error) {
		if q.All {
			f.state.All = nil
		} else {
			delete(f.state.Apps, q.Application)
		}
		log.Info("Unfreeze", "all", q.All, "application", q.Application, "user", q.User)
		f.tell(ctx, q)
		return f.state, nil
	}, workflow.UpdateHandlerOptions{Validator: validate(true)}); err != nil {
		return fmt.Errorf("set unfreeze update: %w", err)
	}
	subscribe := workflow.GetSignalChannel(ctx, SignalFreezeSubscribe)
	unsubscribe := workflow.GetSignalChannel(ctx, SignalFreezeUnsubscribe)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var s FreezeSubscriber
			subscribe.Receive(ctx, &s)
			f.subscribe(ctx, s)
		}
	})
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var s FreezeSubscriber
			unsubscribe.Receive(ctx, &s)
			f.unsubscribe(s)
			f.details(ctx)
		}
	})
	f.details(ctx)
	// Signals and Updates are handled as they come; this only waits for
	// the history to grow enough to start afresh.
	if err := workflow.Await(ctx, func() bool {
		return workflow.GetInfo(ctx).GetContinueAsNewSuggested() && workflow.AllHandlersFinished(ctx)
	}); err != nil {
		return err
	}
	for {
		var s FreezeSubscriber
		if subscribe.ReceiveAsync(&s) {
			f.subscribe(ctx, s)
		} else if unsubscribe.ReceiveAsync(&s) {
			f.unsubscribe(s)
		} else {
			break
		}
	}
	log.Info("Freeze switch continues as new", "subscribers", len(f.state.Subscribers))
	return workflow.NewContinueAsNewError(ctx, Freeze, &f.state)
}

func (f *freezeImpl) subscribe(ctx workflow.Context, s FreezeSubscriber) {
	i := slices.IndexFunc(f.state.Subscribers, func(o FreezeSubscriber) bool { return o.ReleaseID == s.ReleaseID && o.RunID == s.RunID })
	if i < 0 {
		f.state.Subscribers = append(f.state.Subscribers, s)
	}
	// Always answer: a release that subscribed waits for the state.
	f.signal(ctx, s)
}

func (f *freezeImpl) unsubscribe(s FreezeSubscriber) {
	f.state.Subscribers = slices.DeleteFunc(f.state.Subscribers, func(o FreezeSubscriber) bool {
		return o.ReleaseID == s.ReleaseID && o.RunID == s.RunID
	})
}

// tell sends the new state to the releases the change concerns. A release
// that has gone (terminated without unsubscribing) is dropped.
func (f *freezeImpl) tell(ctx workflow.Context, q FreezeRequest) {
	var gone []FreezeSubscriber
	for _, s := range f.state.Subscribers {
		if !q.All && s.Application != q.Application {
			continue
		}
		if err := f.signal(ctx, s).Get(ctx, nil); err != nil {
			var nf *temporal.UnknownExternalWorkflowExecutionError
			workflow.GetLogger(ctx).Warn("Freeze not delivered", "release", s.ReleaseID, "error", err)
			if errors.As(err, &nf) {
				gone = append(gone, s)
			}
		}
	}
	for _, s := range gone {
		f.unsubscribe(s)
	}
	f.details(ctx)
}

func (f *freezeImpl) signal(ctx workflow.Context, s FreezeSubscriber) workflow.Future {
	return workflow.SignalExternalWorkflow(ctx, s.ReleaseID, s.RunID, SignalReleaseHold, f.state.holdFor(s.Application))
}

func (f *freezeImpl) details(ctx workflow.Context) {
	var b strings.Builder
	b.WriteString("**stop-the-line switch**: ")
	if f.state.All == nil && len(f.state.Apps) == 0 {
		b.WriteString("no freeze")
	}
	if e := f.state.All; e != nil {
		b.WriteString(fmt.Sprintf("every application frozen by %s since %s: %s", e.User, e.Since.UTC().Format(time.RFC3339), e.Reason))
	}
	apps := make([]string, 0, len(f.state.Apps))
	// Sorted right after.
	//workflowcheck:ignore
	for app := range f.state.Apps {
		apps = append(apps, app)
	}
	sort.Strings(apps)
	for _, app := range apps {
		e := f.state.Apps[app]
		b.WriteString(fmt.Sprintf("\n- %s frozen by %s since %s: %s", app, e.User, e.Since.UTC().Format(time.RFC3339), e.Reason))
	}
	b.WriteString(fmt.Sprintf("\n\n%d running releases subscribed", len(f.state.Subscribers)))
	workflow.SetCurrentDetails(ctx, b.String())
}
