package slackhook_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	keelslack "github.com/keelson-dev/keelson/activities/slack"
	"github.com/keelson-dev/keelson/activities/slack/slackfake"
	"github.com/keelson-dev/keelson/worker/slackhook"
)

// BenchmarkSignedApprovalToAnswer measures the handler's share of an
// approval: from a signed callback arriving over HTTP to the approve Update
// being sent (signature check, parse, status, group membership from the
// cache), against slacktest and a release side that answers at once. The
// Update's own round trip through Temporal is measured end to end in
// integration/. It reports the median and 95th percentile as metrics.
func BenchmarkSignedApprovalToAnswer(b *testing.B) {
	ws := slackfake.New()
	defer ws.Close()
	ws.AddGroup("S0RELMGRS1", "release-managers", "U0GROUPIE1")
	rel := newFakeReleases()
	answered := make(chan time.Time, 1)
	rel.onAnswer = func() { answered <- time.Now() }
	h, err := slackhook.New(slackhook.Options{API: ws.Client("xoxb-test"), SigningSecret: secret, Releases: rel,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		id := fmt.Sprintf("release-shop-%d", i)
		rel.addGate(id, gateName, []string{"U0APPROVER"}, []string{"@release-managers"})
		body := form(click("U0GROUPIE1", "dave", keelslack.ActionApprove, fmt.Sprintf("1700000300.%06d", i),
			keelslack.GateAction{ReleaseID: id, Gate: gateName}))
		header := sign(secret, time.Now().Unix(), body)
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(body))
		req.Header = header
		b.StartTimer()
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		at := <-answered
		lat = append(lat, at.Sub(start))
		b.StopTimer()
		h.Wait()
		b.StartTimer()
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*95/100].Microseconds()), "p95-µs")
}
