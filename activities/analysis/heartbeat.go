package analysis

import "time"

// heartbeatEvery is how often Run heartbeats while checks wait on slow
// providers or long intervals: well inside the workflows' 10 s heartbeat
// timeout, so that a live attempt is never taken for a lost one.
const heartbeatEvery = 2 * time.Second
