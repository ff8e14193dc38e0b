package slackhook

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"
)

// groupCache resolves which of a gate's approver groups a user belongs to,
// with usergroups.list (handles to ids) and usergroups.users.list (members).
// Answers are cached briefly: a gate's clicks come in bursts, and Slack
// rate-limits these methods (tier 2).
type groupCache struct {
	api *slack.Client
	ttl time.Duration

	mu      sync.Mutex
	handles map[string]string // handle -> id
	hExp    time.Time
	members map[string]cachedMembers // group id -> members
}

type cachedMembers struct {
	users []string
	exp   time.Time
}

func newGroupCache(api *slack.Client, ttl time.Duration) *groupCache {
	return &groupCache{api: api, ttl: ttl, members: map[string]cachedMembers{}}
}

// memberOf returns the entries of groups (as the release file writes them:
// an id, a handle or an @handle) that userID belongs to, so the workflow's
// validator can compare them with the gate's approver groups as written.
// A group that cannot be resolved is logged and skipped: the user may still
// be an approver by name, and the validator has the last word.
func (g *groupCache) memberOf(ctx context.Context, log interface {
	Warn(string, ...any)
}, userID string, groups []string) []string {
	var out []string
	for _, entry := range groups {
		id, err := g.groupID(ctx, entry)
		if err != nil {
			log.Warn("slack: cannot resolve approver group", "group", entry, "err", err)
			continue
		}
		users, err := g.users(ctx, id)
		if err != nil {
			log.Warn("slack: cannot list approver group members", "group", entry, "id", id, "err", err)
			continue
		}
		if slices.Contains(users, userID) {
			out = append(out, entry)
		}
	}
	return out
}

func (g *groupCache) groupID(ctx context.Context, entry string) (string, error) {
	handle := strings.TrimPrefix(entry, "@")
	if isGroupID(handle) {
		return handle, nil
	}
	g.mu.Lock()
	if g.handles != nil && time.Now().Before(g.hExp) {
		id, ok := g.handles[handle]
		g.mu.Unlock()
		if !ok {
			return "", fmt.Errorf("no user group with handle %q", handle)
		}
		return id, nil
	}
	g.mu.Unlock()

	list, err := g.api.GetUserGroupsContext(ctx)
	if err != nil {
		return "", fmt.Errorf("list user groups: %w", err)
	}
	handles := make(map[string]string, len(list))
	for _, ug := range list {
		handles[ug.Handle] = ug.ID
	}
	g.mu.Lock()
	g.handles, g.hExp = handles, time.Now().Add(g.ttl)
	g.mu.Unlock()
	id, ok := handles[handle]
	if !ok {
		return "", fmt.Errorf("no user group with handle %q", handle)
	}
	return id, nil
}

func (g *groupCache) users(ctx context.Context, id string) ([]string, error) {
	g.mu.Lock()
	if c, ok := g.members[id]; ok && time.Now().Before(c.exp) {
		g.mu.Unlock()
		return c.users, nil
	}
	g.mu.Unlock()
	users, err := g.api.GetUserGroupMembersContext(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("list members of user group %s: %w", id, err)
	}
	g.mu.Lock()
	g.members[id] = cachedMembers{users: users, exp: time.Now().Add(g.ttl)}
	g.mu.Unlock()
	return users, nil
}

// isGroupID recognises Slack user group ids: S and upper-case letters and
// digits.
func isGroupID(s string) bool {
	if len(s) < 7 || s[0] != 'S' {
		return false
	}
	for _, c := range s[1:] {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
