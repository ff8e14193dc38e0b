package analysis

import (
	"context"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
)

// heartbeatEvery is how often Run heartbeats while checks wait on slow
// providers or long intervals: well inside the workflows' 10 s heartbeat
// timeout, so that a live attempt is never taken for a lost one.
const heartbeatEvery = 2 * time.Second

// heartbeat records the latest progress at once, then every interval from
// its own goroutine, until stopped. Outside an activity (tests, tools) it
// records nothing. Temporal also delivers cancellation through heartbeats.
type heartbeat struct {
	ctx     context.Context
	enabled bool
	mu      sync.Mutex
	last    Progress
	done    chan struct{}
	wg      sync.WaitGroup
}

func startHeartbeat(ctx context.Context, every time.Duration, first Progress) *heartbeat {
	h := &heartbeat{ctx: ctx, enabled: activity.IsActivity(ctx), done: make(chan struct{})}
	if !h.enabled {
		return h
	}
	h.record(first)
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-h.done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			h.mu.Lock()
			activity.RecordHeartbeat(ctx, h.last)
			h.mu.Unlock()
		}
	}()
	return h
}

// record makes p the latest progress and records it at once, under the
// lock the ticker records under, so an older progress never follows a
// newer one.
func (h *heartbeat) record(p Progress) {
	if !h.enabled {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.last = p
	activity.RecordHeartbeat(h.ctx, p)
}

// stop ends the heartbeats and waits for the goroutine, so that none is
// recorded after Run returned.
func (h *heartbeat) stop() {
	close(h.done)
	h.wg.Wait()
}
