package helm

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/encoding/protojson"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	keelson "github.com/keelson-dev/keelson/release"
)

const secretChartPath = "testdata/secret"

// The value of the test's secret: '/' makes it a ConfigMap key the API
// server refuses, quoting it.
const dbPassword = "hunter2/Tr0ub4dor&3"

// secretFile writes content to a file of the test and returns its path.
func secretFile(t *testing.T, content string) string {
	t.Helper()
	dir := os.Getenv(keelson.EnvValuesDir)
	if !strings.HasPrefix(dir, os.TempDir()) {
		dir = t.TempDir()
		t.Setenv(keelson.EnvValuesDir, dir)
	}
	f, err := os.CreateTemp(dir, "value-")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	p := f.Name()
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

// A release file reads only what the worker puts out for charts.
func TestValuesFromStaysInItsLane(t *testing.T) {
	t.Setenv("KEELSON_SLACK_BOT_TOKEN", "xoxb-worker-own")
	_, err := composeValues(UpgradeInput{Version: "1", ValuesFrom: []keelson.ValueFrom{{Key: "a", Env: "KEELSON_SLACK_BOT_TOKEN"}}})
	require.ErrorContains(t, err, "only the variables named KEELSON_VALUE_*")
	require.NotContains(t, err.Error(), "xoxb-worker-own")

	inside := secretFile(t, "ok")
	outside := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(outside, []byte("sa-token"), 0o600))
	_, err = composeValues(UpgradeInput{Version: "1", ValuesFrom: []keelson.ValueFrom{{Key: "a", File: outside}}})
	require.ErrorContains(t, err, "outside the worker's folder of value files")
	// A link inside the folder to a file outside it is outside.
	link := filepath.Join(filepath.Dir(inside), "link")
	require.NoError(t, os.Symlink(outside, link))
	_, err = composeValues(UpgradeInput{Version: "1", ValuesFrom: []keelson.ValueFrom{{Key: "a", File: link}}})
	require.ErrorContains(t, err, "outside the worker's folder of value files")
	vals, err := composeValues(UpgradeInput{Version: "1", ValuesFrom: []keelson.ValueFrom{{Key: "a", File: inside}}})
	require.NoError(t, err)
	require.Equal(t, "ok", vals["a"])

	t.Setenv(keelson.EnvValuesDir, "")
	_, err = composeValues(UpgradeInput{Version: "1", ValuesFrom: []keelson.ValueFrom{{Key: "a", File: inside}}})
	require.ErrorContains(t, err, "reads no value files")
}

func TestComposeValuesFrom(t *testing.T) {
	t.Setenv("KEELSON_VALUE_TEST_DB_PASSWORD", dbPassword)
	t.Setenv("KEELSON_VALUE_TEST_TOKEN", "app-token")
	license := secretFile(t, "line one\nline two\n")
	regionFile := secretFile(t, "region-password\r\n")

	app := []keelson.ValueFrom{
		{Key: "db.password", Env: "KEELSON_VALUE_TEST_DB_PASSWORD", Secret: true},
		{Key: "token", Env: "KEELSON_VALUE_TEST_TOKEN"},
		{Key: "license", File: license},
	}
	in := UpgradeInput{
		Version:      "1.2.3",
		BaseValues:   map[string]any{"db": map[string]any{"host": "db.internal"}, "token": "plain"},
		RegionValues: map[string]any{"replicas": 2},
		ValuesFrom:   app,
	}
	vals, err := composeValues(in)
	require.NoError(t, err)
	require.Equal(t, map[string]any{
		"db":       map[string]any{"host": "db.internal", "password": dbPassword},
		"token":    "app-token", // after the plain values
		"license":  "line one\nline two",
		"replicas": float64(2),
		"version":  "1.2.3",
	}, vals)

	// A region's entry replaces the application's of the same key.
	in.ValuesFrom = keelson.MergeValuesFrom(app, []keelson.ValueFrom{{Key: "db.password", File: regionFile, Secret: true}})
	vals, r, err := composeSecretValues(in)
	require.NoError(t, err)
	require.Equal(t, "region-password", getPath(vals, "db.password"), "the trailing newline (CRLF too) is trimmed")
	require.Equal(t, "error: [secret db.password]", r.redact("error: region-password"))
	require.Equal(t, "app-token", r.redact("app-token"), "a value that is not secret is not redacted")

	// The version is set after valuesFrom.
	in.ValuesFrom = []keelson.ValueFrom{{Key: "version", Env: "KEELSON_VALUE_TEST_TOKEN"}}
	vals, err = composeValues(in)
	require.NoError(t, err)
	require.Equal(t, "1.2.3", vals["version"])

	// No secret, no redactor.
	in.ValuesFrom = app[1:]
	_, r, err = composeSecretValues(in)
	require.NoError(t, err)
	require.Nil(t, r)
}

func TestComposeValuesFromMissing(t *testing.T) {
	t.Setenv("KEELSON_VALUE_TEST_DB_PASSWORD", dbPassword)
	t.Setenv("KEELSON_VALUE_TEST_EMPTY", "")
	os.Unsetenv("KEELSON_VALUE_TEST_UNSET") //nolint:errcheck // absent is the point
	empty := secretFile(t, "\n")
	present := []keelson.ValueFrom{{Key: "db.password", Env: "KEELSON_VALUE_TEST_DB_PASSWORD", Secret: true}}
	for _, tc := range []struct {
		name string
		v    keelson.ValueFrom
		want string
	}{
		{"env not set", keelson.ValueFrom{Key: "api.key", Env: "KEELSON_VALUE_TEST_UNSET", Secret: true},
			"valuesFrom api.key: environment variable KEELSON_VALUE_TEST_UNSET is not set on this worker"},
		{"env empty", keelson.ValueFrom{Key: "api.key", Env: "KEELSON_VALUE_TEST_EMPTY"},
			"valuesFrom api.key: environment variable KEELSON_VALUE_TEST_EMPTY is empty on this worker"},
		{"no file", keelson.ValueFrom{Key: "api.key", File: "/nonexistent/keelson/api-key", Secret: true},
			"valuesFrom api.key: file /nonexistent/keelson/api-key does not exist on this worker"},
		{"empty file", keelson.ValueFrom{Key: "api.key", File: empty},
			"valuesFrom api.key: file " + empty + " is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := composeValues(UpgradeInput{Version: "1", ValuesFrom: append(present, tc.v)})
			var missing *missingValueError
			require.ErrorAs(t, err, &missing)
			require.Equal(t, tc.want, err.Error())
			require.NotContains(t, err.Error(), dbPassword)
		})
	}

	// Every missing value is reported at once.
	_, err := composeValues(UpgradeInput{Version: "1", ValuesFrom: []keelson.ValueFrom{
		{Key: "a", Env: "KEELSON_VALUE_TEST_UNSET"}, {Key: "b", File: "/nonexistent/keelson/b"},
	}})
	require.EqualError(t, err, "valuesFrom a: environment variable KEELSON_VALUE_TEST_UNSET is not set on this worker; "+
		"valuesFrom b: file /nonexistent/keelson/b does not exist on this worker")
}

// quietError prints less than it wraps, as some errors do: the chain
// still reaches Temporal.
type quietError struct{ cause error }

func (e quietError) Error() string { return "something failed" }
func (e quietError) Unwrap() error { return e.cause }

func TestRedactor(t *testing.T) {
	pem := "-----BEGIN KEY-----\nMIIBOgIBAAJBAKj34GkxFhD9\n-----END KEY-----"
	r := newRedactor([]secret{{key: "db.password", value: dbPassword}, {key: "tls.key", value: pem}})

	for _, text := range []string{
		"template: " + dbPassword,
		fmt.Sprintf("invalid value %q", dbPassword),
		"data: " + base64.StdEncoding.EncodeToString([]byte(dbPassword)),
		"yaml: line 3: did not expect MIIBOgIBAAJBAKj34GkxFhD9",
	} {
		got := r.redact(text)
		require.NotContains(t, got, dbPassword)
		require.NotContains(t, got, "Tr0ub4dor")
		require.NotContains(t, got, "MIIBOgIBAAJBAKj34GkxFhD9")
		require.Contains(t, got, "[secret ")
	}
	j, err := json.Marshal(map[string]string{"password": dbPassword})
	require.NoError(t, err)
	require.Equal(t, `{"password":"[secret db.password]"}`, r.redact(string(j)), "JSON escapes & as \\u0026")

	// An application error keeps its type and retryability, and loses the
	// cause that held the value.
	cause := fmt.Errorf("render: %s", dbPassword)
	appErr := temporal.NewNonRetryableApplicationError("upgrade app in r1", ErrInvalidValues, cause)
	var got *temporal.ApplicationError
	require.ErrorAs(t, r.error(appErr), &got)
	require.Equal(t, ErrInvalidValues, got.Type())
	require.True(t, got.NonRetryable())
	require.Equal(t, "upgrade app in r1: render: [secret db.password]", got.Message())
	require.Nil(t, got.Unwrap())

	// A plain error that only wraps the value is rebuilt too, and still
	// answers errors.Is.
	plain := fmt.Errorf("apply: %w", quietError{fmt.Errorf("%s: %w", dbPassword, context.Canceled)})
	redacted := r.error(plain)
	require.Equal(t, "apply: something failed", redacted.Error())
	require.Nil(t, errors.Unwrap(redacted), "the wrapped errors hold the value")
	require.ErrorIs(t, redacted, context.Canceled)
	requireNoSecret(t, "a plain error as recorded", failureJSON(t, redacted))

	// What does not hold a value is returned as it is.
	same := errors.New("no secret here")
	require.Same(t, same, r.error(same))
	var none *redactor
	require.Same(t, cause, none.error(cause))
}

// syncBuffer collects log output written from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// requireNoSecret fails when the value appears in text.
func requireNoSecret(t *testing.T, what, text string) {
	t.Helper()
	for _, form := range []string{dbPassword, "Tr0ub4dor", base64.StdEncoding.EncodeToString([]byte(dbPassword))} {
		require.NotContains(t, text, form, "%s holds the secret value:\n%s", what, text)
	}
}

// failureJSON is the error as Temporal records it in the workflow's
// history, with every cause.
func failureJSON(t *testing.T, err error) string {
	t.Helper()
	f := temporal.GetDefaultFailureConverter().ErrorToFailure(err)
	b, merr := protojson.Marshal(f)
	require.NoError(t, merr)
	return string(b)
}

// TestSecretValueStaysOnTheWorker runs the Upgrade activity with a secret
// from the worker's environment through a chart that fails to render
// quoting it, a chart the API server refuses quoting it, and a chart that
// installs: the value is in the cluster's Secret, and in none of the
// activity's errors, results, revision descriptions or log lines.
func TestSecretValueStaysOnTheWorker(t *testing.T) {
	h := newHarness(t, "values-from")
	logs := &syncBuffer{}
	h.acts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Setenv("KEELSON_VALUE_TEST_DB_PASSWORD", dbPassword)
	upgrade := func(version string, values map[string]any) UpgradeInput {
		return UpgradeInput{
			Target: h.target, ChartPath: secretChartPath, Version: version, RegionValues: values,
			ValuesFrom: []keelson.ValueFrom{{Key: "db.password", Env: "KEELSON_VALUE_TEST_DB_PASSWORD", Secret: true}},
		}
	}

	// The template fails, quoting the value.
	_, err := h.upgrade(upgrade("1.0.0", map[string]any{"failRender": true}))
	appErr := requireAppError(t, err, ErrInvalidValues)
	require.Contains(t, appErr.Error(), "password [secret db.password] is not accepted")
	requireNoSecret(t, "the render error", appErr.Error())
	requireNoSecret(t, "the render error as recorded", failureJSON(t, err))

	// The API server refuses an object, quoting the value: Helm records
	// the failed revision with the error as its description.
	_, err = h.upgrade(upgrade("1.0.0", map[string]any{"refuse": true}))
	appErr = requireAppError(t, err, ErrInvalidValues)
	t.Logf("error: %v", appErr)
	require.Contains(t, appErr.Error(), "[secret db.password]")
	requireNoSecret(t, "the API error", appErr.Error())
	requireNoSecret(t, "the API error as recorded", failureJSON(t, err))
	revs := h.history()
	require.Len(t, revs, 1)
	require.Equal(t, "failed", revs[0].Status)
	require.Contains(t, revs[0].Description, "[secret db.password]")
	revsJSON, err := json.Marshal(revs)
	require.NoError(t, err)
	requireNoSecret(t, "the history", string(revsJSON))

	// Installed: the chart got the value, the result does not hold it.
	res := h.mustUpgrade(upgrade("1.0.0", nil))
	require.Equal(t, 2, res.Revision)
	resJSON, err := json.Marshal(res)
	require.NoError(t, err)
	requireNoSecret(t, "the result", string(resJSON))
	sec, err := h.clientset().CoreV1().Secrets(h.target.Namespace).Get(context.Background(), h.target.Release+"-db", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, dbPassword, secretData(sec, "password"))

	// The same value again is no change.
	require.True(t, h.mustUpgrade(upgrade("1.0.0", nil)).Unchanged)

	// An upgrade the API server refuses: Helm logs the error too.
	_, err = h.upgrade(upgrade("1.0.1", map[string]any{"refuse": true}))
	appErr = requireAppError(t, err, ErrInvalidValues)
	requireNoSecret(t, "the API error", appErr.Error())
	revs = h.history()
	require.Len(t, revs, 3)
	require.Equal(t, "failed", revs[2].Status)
	require.Contains(t, revs[2].Description, "[secret db.password]")
	revsJSON, err = json.Marshal(revs)
	require.NoError(t, err)
	requireNoSecret(t, "the history", string(revsJSON))
	require.Contains(t, logs.String(), "[secret db.password]", "Helm's own log lines are redacted, not dropped")

	// A changed secret is a change.
	t.Setenv("KEELSON_VALUE_TEST_DB_PASSWORD", dbPassword+"-rotated")
	rotated := h.mustUpgrade(upgrade("1.0.0", nil))
	require.False(t, rotated.Unchanged)
	require.Equal(t, 4, rotated.Revision)
	t.Setenv("KEELSON_VALUE_TEST_DB_PASSWORD", dbPassword)

	// A worker without the variable: non-retryable, naming the key and
	// the variable.
	os.Unsetenv("KEELSON_VALUE_TEST_DB_PASSWORD") //nolint:errcheck // t.Setenv restores it
	_, err = h.upgrade(upgrade("1.0.0", nil))
	appErr = requireAppError(t, err, ErrMissingValue)
	require.Contains(t, appErr.Error(), "valuesFrom db.password: environment variable KEELSON_VALUE_TEST_DB_PASSWORD is not set on this worker")

	requireNoSecret(t, "the activities' log", logs.String())
}

func secretData(s *corev1.Secret, key string) string {
	if v, ok := s.Data[key]; ok {
		return string(v)
	}
	return s.StringData[key]
}

// TestUpgradeInputJSONHasNoValues: the workflow's input names where the
// value is, never the value.
func TestUpgradeInputJSONHasNoValues(t *testing.T) {
	t.Setenv("KEELSON_VALUE_TEST_DB_PASSWORD", dbPassword)
	in := UpgradeInput{Version: "1", ValuesFrom: []keelson.ValueFrom{{Key: "db.password", Env: "KEELSON_VALUE_TEST_DB_PASSWORD", Secret: true}}}
	b, err := json.Marshal(in)
	require.NoError(t, err)
	require.True(t, strings.Contains(string(b), `"valuesFrom":[{"key":"db.password","env":"KEELSON_VALUE_TEST_DB_PASSWORD","secret":true}]`), "%s", b)
	requireNoSecret(t, "the input", string(b))
}
