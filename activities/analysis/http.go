package analysis

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/keelson-dev/keelson/release"
)

const (
	defaultHTTPTimeout = 5 * time.Second
	defaultHTTPStatus  = http.StatusOK
	// maxBody bounds how much of a response is read: analysis endpoints
	// answer in bytes, and a misrouted probe must not pull a page into
	// memory.
	maxBody = 1 << 20
)

// readHTTP makes one request. Every way it can go wrong is a failing
// reading, in words for the person reading the verdict; none is an error
// of the activity.
func (a *Activities) readHTTP(ctx context.Context, h *release.HTTPAnalysis) reading {
	timeout := h.Timeout.Duration
	if timeout <= 0 {
		timeout = defaultHTTPTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.URL, nil)
	if err != nil {
		return failReading("build request: %v", err)
	}
	req.Header.Set("User-Agent", "keelson-analysis")
	if h.JSONField != "" {
		req.Header.Set("Accept", "application/json")
	}
	client := a.http
	if h.InsecureSkipVerify {
		client = a.insecure
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return failReading("get %s: %v", h.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	latency := time.Since(start)
	if err != nil {
		return failReading("read body of %s: %v", h.URL, err)
	}
	want := h.ExpectStatus
	if want == 0 {
		want = defaultHTTPStatus
	}
	if resp.StatusCode != want {
		return failReading("status %d, want %d", resp.StatusCode, want)
	}
	if h.MaxLatency.Duration > 0 && latency > h.MaxLatency.Duration {
		return failReading("latency %s > max %s", latency.Round(time.Millisecond), h.MaxLatency.Duration)
	}
	if h.JSONField == "" {
		return reading{}
	}
	v, err := jsonField(body, h.JSONField)
	if err != nil {
		return failReading("%v", err)
	}
	if h.ExpectValue != "" {
		if got := jsonText(v); got != h.ExpectValue {
			return failReading("field %s is %s, want %q", h.JSONField, quoteJSON(v), h.ExpectValue)
		}
		return reading{}
	}
	n, ok := jsonNumber(v)
	if !ok {
		if v == nil {
			return noDataReading(fmt.Sprintf("field %s is null", h.JSONField))
		}
		return failReading("field %s is %s, not a number", h.JSONField, quoteJSON(v))
	}
	return valueReading(n)
}

// jsonField finds a dotted path in a JSON body. A number segment indexes
// a list.
func jsonField(body []byte, path string) (any, error) {
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("body is not JSON: %v", err)
	}
	for _, seg := range strings.Split(path, ".") {
		switch node := v.(type) {
		case map[string]any:
			next, ok := node[seg]
			if !ok {
				return nil, fmt.Errorf("field %s is missing", path)
			}
			v = next
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(node) {
				return nil, fmt.Errorf("field %s is missing", path)
			}
			v = node[i]
		default:
			return nil, fmt.Errorf("field %s is missing", path)
		}
	}
	return v, nil
}

// jsonText is a JSON value as a release file writes what it expects:
// strings as they are, other values as JSON (true, 3, null).
func jsonText(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func quoteJSON(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return jsonText(v)
}

// jsonNumber is a JSON number, or a string holding one (some endpoints
// quote numbers to keep their precision).
func jsonNumber(v any) (float64, bool) {
	var s string
	switch v := v.(type) {
	case json.Number:
		s = v.String()
	case string:
		s = strings.TrimSpace(v)
	default:
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	return f, err == nil
}
