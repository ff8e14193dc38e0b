package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson-dev/keelson/control"
	"github.com/keelson-dev/keelson/release"
	"github.com/keelson-dev/keelson/workflows"
)

// TestManyReleasesAtOnce starts releases of KEELSON_LOAD_RELEASES (100)
// applications at once on the lab's one worker, one region each (all in
// us-east-1: one cluster's client takes the whole load), a chart like the
// demo's and a bake, and requires every one of them to succeed:
// concurrency must degrade by queueing, never by failing a release (issue
// 12). It prints how long the starts and the releases took; the figures
// for 500 and 1,000 come from `make bench`.
func TestManyReleasesAtOnce(t *testing.T) {
	l := newLab(t)
	n := 100
	if v := os.Getenv("KEELSON_LOAD_RELEASES"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	bake, err := time.ParseDuration(envOr("KEELSON_LOAD_BAKE", "20s"))
	if err != nil {
		t.Fatal(err)
	}
	res := l.load(t, "itload", n, bake, []string{"us-east-1"}, "")
	t.Logf("%d releases on one worker: started in %s, all finished %s after the first start (bake %s); worker peak RSS %.0f MiB",
		n, res.started.Round(time.Millisecond), res.finished.Round(time.Second), bake, res.peakRSS)
}

// loadResult is what a load run measured.
type loadResult struct {
	started  time.Duration // from the first start to the last start returning
	finished time.Duration // from the first start to the last release's end
	// deployed is from the first start to the last bake beginning: every
	// release deployed and waiting.
	deployed time.Duration
	// tail is from the last bake's end to the last release's end.
	tail time.Duration
	// peakRSS is the worker's largest resident set (MiB); waitCPU its CPU
	// use (cores) while every release waited in its bake, over waitFor.
	peakRSS, waitCPU float64
	waitFor          time.Duration
}

// load starts n releases of as many applications at once, one region each
// (spread over the given clusters), the demo's chart (or chart) and a
// bake, samples the lab worker's memory and CPU, and requires every
// release to succeed.
func (l *lab) load(t *testing.T, prefix string, n int, bake time.Duration, clusters []string, chart string) loadResult {
	t.Helper()
	base := l.appName(t, prefix)
	version := runVersion(1)
	specs := make([]*release.Spec, n)
	for i := range specs {
		app := fmt.Sprintf("%s-%04d", base, i)
		r := clusters[i%len(clusters)]
		file := l.releaseFile(t, app, func(doc map[string]any) {
			delete(doc, "terraform")
			doc["health"] = []any{}
			if chart != "" {
				doc["chart"] = map[string]any{"path": chart}
				doc["values"] = map[string]any{}
			}
			doc["regions"] = []any{region(doc, r)}
			doc["waves"] = []any{map[string]any{"name": "only", "regions": []any{r}, "bake": bake.String()}}
		})
		spec, err := release.Load(file)
		if err != nil {
			t.Fatalf("load %s: %v", file, err)
		}
		specs[i] = spec
	}
	t.Cleanup(func() {
		for i := range specs {
			r := specs[i].Regions[0].KubeContext
			_ = l.kube[r].CoreV1().Namespaces().Delete(context.Background(), specs[i].Application, metav1.DeleteOptions{})
		}
	})

	sampler := newProcSampler(t, l.labWorkerPID(t))
	defer sampler.stop()
	start := time.Now()
	ids := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	// As many starts in flight as a CI fleet would send, not n goroutines
	// each with its own gRPC stream burst.
	sem := make(chan struct{}, 50)
	for i := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			res, err := l.ctl.Start(ctx, specs[i], version, control.StartOptions{StartedBy: "load-test"})
			if err != nil {
				errs <- fmt.Errorf("start %s: %w", specs[i].Application, err)
				return
			}
			ids[i] = res.ReleaseID
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	res := loadResult{started: time.Since(start)}

	failed := 0
	var last time.Time
	for _, id := range ids {
		r := l.result(t, id, 30*time.Minute)
		if r.Phase != workflows.PhaseSucceeded {
			failed++
			t.Errorf("%s: %s: %s", id, r.Phase, r.Reason)
		}
		if r.Finished.After(last) {
			last = r.Finished
		}
	}
	sampler.stop()
	if failed > 0 {
		t.Fatalf("%d of %d releases failed", failed, n)
	}
	res.finished = last.Sub(start)

	// When the bakes ran, from the regions' histories: the bake is the
	// region workflow's one timer.
	var lastBakeStart, firstBakeEnd, lastBakeEnd time.Time
	for i, id := range ids {
		r := specs[i].Regions[0].Name
		var from time.Time
		for _, e := range l.rawHistory(t, workflows.RegionID(id, r)) {
			if e.GetTimerStartedEventAttributes() != nil && e.GetTimerStartedEventAttributes().GetStartToFireTimeout().AsDuration() == bake {
				from = e.GetEventTime().AsTime()
			}
			if e.GetTimerFiredEventAttributes() != nil && !from.IsZero() {
				to := e.GetEventTime().AsTime()
				if from.After(lastBakeStart) {
					lastBakeStart = from
				}
				if firstBakeEnd.IsZero() || to.Before(firstBakeEnd) {
					firstBakeEnd = to
				}
				if to.After(lastBakeEnd) {
					lastBakeEnd = to
				}
				break
			}
		}
		if from.IsZero() {
			t.Fatalf("%s: no bake of %s in %s's history", id, bake, r)
		}
	}
	res.deployed = lastBakeStart.Sub(start)
	res.tail = last.Sub(lastBakeEnd)
	res.peakRSS = sampler.peakRSS()
	res.waitCPU, res.waitFor = sampler.cpu(lastBakeStart, firstBakeEnd)
	return res
}

// procSampler samples a process's resident memory and CPU time every
// second, for figures (never assertions).
type procSampler struct {
	pid  int
	mu   sync.Mutex
	rows []procSample
	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

type procSample struct {
	at  time.Time
	rss float64 // MiB
	cpu float64 // seconds of CPU used so far
}

func newProcSampler(t *testing.T, pid int) *procSampler {
	t.Helper()
	s := &procSampler{pid: pid, done: make(chan struct{})}
	if _, err := readProc(pid); err != nil {
		t.Fatalf("sample pid %d: %v", pid, err)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			if row, err := readProc(pid); err == nil {
				s.mu.Lock()
				s.rows = append(s.rows, row)
				s.mu.Unlock()
			}
			select {
			case <-s.done:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *procSampler) stop() {
	s.once.Do(func() { close(s.done) })
	s.wg.Wait()
}

func (s *procSampler) peakRSS() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	peak := 0.0
	for _, r := range s.rows {
		peak = max(peak, r.rss)
	}
	return peak
}

// cpu is the CPU used between from and to, in cores, and the time it was
// measured over (the samples inside the window).
func (s *procSampler) cpu(from, to time.Time) (float64, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var first, last *procSample
	for i := range s.rows {
		r := &s.rows[i]
		if r.at.Before(from) || r.at.After(to) {
			continue
		}
		if first == nil {
			first = r
		}
		last = r
	}
	if first == nil || last == first {
		return 0, 0
	}
	d := last.at.Sub(first.at)
	return (last.cpu - first.cpu) / d.Seconds(), d
}

// readProc reads VmRSS from /proc/PID/status and utime+stime from
// /proc/PID/stat (in clock ticks of 1/100 s, Linux's USER_HZ).
func readProc(pid int) (procSample, error) {
	row := procSample{at: time.Now()}
	status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return row, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			row.rss = kb / 1024
		}
	}
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return row, err
	}
	// Fields after the command name, which may hold spaces: ") S ppid ...".
	rest := string(stat[strings.LastIndexByte(string(stat), ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return row, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	row.cpu = (utime + stime) / 100
	return row, nil
}

// labWorkerPID is the lab worker's pid (infra/lab/lib.sh's WORKER_PID).
func (l *lab) labWorkerPID(t *testing.T) int {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(l.dir, "worker.pid"))
	if err != nil {
		t.Fatalf("the lab's worker pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}
