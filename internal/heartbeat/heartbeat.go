// Package heartbeat records an activity's latest progress as heartbeat
// details at once, then every interval from its own goroutine, until
// stopped. Activities whose work blocks (a probe, a slow provider) would
// otherwise heartbeat only between rounds, and a slow round could outlast
// the heartbeat timeout, so that Temporal retried the activity while this
// attempt still ran. Temporal also delivers cancellation through
// heartbeats; the SDK throttles what it sends, so recording often costs
// nothing. Outside an activity (tests, tools) it records nothing.
package heartbeat

import (
	"context"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
)

// Ticker heartbeats progress of type T.
type Ticker[T any] struct {
	ctx     context.Context
	enabled bool
	mu      sync.Mutex
	last    T
	done    chan struct{}
	wg      sync.WaitGroup
}

// Start records first, then the latest progress every interval.
func Start[T any](ctx context.Context, every time.Duration, first T) *Ticker[T] {
	h := &Ticker[T]{ctx: ctx, enabled: activity.IsActivity(ctx), done: make(chan struct{})}
	if !h.enabled {
		return h
	}
	h.Record(first)
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

// Record makes p the latest progress and records it at once, under the
// lock the ticker records under, so an older progress never follows a
// newer one.
func (h *Ticker[T]) Record(p T) {
	if !h.enabled {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.last = p
	activity.RecordHeartbeat(h.ctx, p)
}

// Stop ends the heartbeats and waits for the goroutine, so that none is
// recorded after the activity returned.
func (h *Ticker[T]) Stop() {
	close(h.done)
	h.wg.Wait()
}
