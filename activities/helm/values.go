package helm

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"go.temporal.io/sdk/temporal"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/kube"
	"helm.sh/helm/v3/pkg/release"

	keelson "github.com/keelson-dev/keelson/release"
)

const (
	defaultVersionValue = "version"
	defaultOutputsValue = "terraform"
	// versionValueLabel records, on the release's storage Secret, where the
	// version sits in the values, so History can read it back for
	// revisions made with a non-default VersionValue.
	versionValueLabel = "keelson.dev/version-value"
)

// composeValues merges BaseValues, RegionValues, SideValues (later wins, maps merged
// key by key), sets the values read on this worker for ValuesFrom, then
// sets Version at VersionValue and the Terraform outputs under
// OutputsValue. The result has gone through JSON, as the values of a
// stored release have, so that it compares equal to what Helm reads back.
func composeValues(in UpgradeInput) (map[string]any, error) {
	vals, _, err := composeSecretValues(in)
	return vals, err
}

// composeSecretValues is composeValues, and the redactor of the secret
// values it read (nil when there are none).
func composeSecretValues(in UpgradeInput) (map[string]any, *redactor, error) {
	base, err := jsonCopy(in.BaseValues)
	if err != nil {
		return nil, nil, fmt.Errorf("base values: %w", err)
	}
	region, err := jsonCopy(in.RegionValues)
	if err != nil {
		return nil, nil, fmt.Errorf("region values: %w", err)
	}
	vals := deepMerge(base, region)
	if len(in.SideValues) > 0 {
		side, err := jsonCopy(in.SideValues)
		if err != nil {
			return nil, nil, fmt.Errorf("side values: %w", err)
		}
		vals = deepMerge(vals, side)
	}
	secrets, err := setValuesFrom(vals, in.ValuesFrom)
	if err != nil {
		return nil, nil, err
	}

	if err := setPath(vals, orDefault(in.VersionValue, defaultVersionValue), in.Version); err != nil {
		return nil, nil, fmt.Errorf("version value: %w", err)
	}
	if len(in.Outputs) > 0 {
		outputs, err := jsonCopy(in.Outputs)
		if err != nil {
			return nil, nil, fmt.Errorf("outputs: %w", err)
		}
		key := orDefault(in.OutputsValue, defaultOutputsValue)
		// Merge into what the values already hold there, so a default in
		// BaseValues is only replaced where Terraform gives a value.
		if existing, ok := getPath(vals, key).(map[string]any); ok {
			outputs = deepMerge(existing, outputs)
		}
		if err := setPath(vals, key, outputs); err != nil {
			return nil, nil, fmt.Errorf("outputs value: %w", err)
		}
	}
	return vals, newRedactor(secrets), nil
}

// maxValueFromSize bounds a value read from a file: Helm keeps all of a
// revision's values in one Secret, of at most 1 MiB.
const maxValueFromSize = 1 << 20

// missingValueError is a ValuesFrom entry this worker could not read: a
// variable not set or empty, a file missing, empty or unreadable. Its
// message names the key and the variable or file, never a value.
type missingValueError struct{ msg string }

func (e *missingValueError) Error() string { return e.msg }

// secret is a value read for a ValuesFrom entry marked secret.
type secret struct{ key, value string }

// setValuesFrom reads every entry on this worker and sets it in vals, in
// order. Every entry that cannot be read is reported at once, so that a
// worker missing several is fixed in one go.
func setValuesFrom(vals map[string]any, list []keelson.ValueFrom) ([]secret, error) {
	var secrets []secret
	var missing []string
	for _, v := range list {
		val, err := readValueFrom(v)
		var m *missingValueError
		if errors.As(err, &m) {
			missing = append(missing, m.msg)
			continue
		}
		if err != nil {
			return nil, err
		}
		if err := setPath(vals, v.Key, val); err != nil {
			return nil, fmt.Errorf("valuesFrom %s: %w", v.Key, err)
		}
		if v.Secret {
			secrets = append(secrets, secret{key: v.Key, value: val})
		}
	}
	if len(missing) > 0 {
		return nil, &missingValueError{strings.Join(missing, "; ")}
	}
	return secrets, nil
}

// readValueFrom reads one entry: an environment variable of this worker,
// or a file on it with its trailing newline trimmed.
func readValueFrom(v keelson.ValueFrom) (string, error) {
	switch {
	case v.Key == "":
		return "", errors.New("valuesFrom: an entry has no key")
	case (v.Env == "") == (v.File == ""):
		return "", fmt.Errorf("valuesFrom %s: give either env or file", v.Key)
	case v.Env != "" && !strings.HasPrefix(v.Env, keelson.EnvValuePrefix):
		return "", fmt.Errorf("valuesFrom %s: this worker gives charts only the variables named %s*, not %s", v.Key, keelson.EnvValuePrefix, v.Env)
	case v.Env != "":
		val, ok := os.LookupEnv(v.Env)
		if !ok {
			return "", &missingValueError{fmt.Sprintf("valuesFrom %s: environment variable %s is not set on this worker", v.Key, v.Env)}
		}
		if val == "" {
			return "", &missingValueError{fmt.Sprintf("valuesFrom %s: environment variable %s is empty on this worker", v.Key, v.Env)}
		}
		return val, nil
	}
	if !filepath.IsAbs(v.File) {
		return "", fmt.Errorf("valuesFrom %s: file %s is not an absolute path", v.Key, v.File)
	}
	if err := inValuesDir(v.File); err != nil {
		var m *missingValueError
		if errors.As(err, &m) {
			return "", &missingValueError{fmt.Sprintf("valuesFrom %s: %s", v.Key, m.msg)}
		}
		return "", fmt.Errorf("valuesFrom %s: %w", v.Key, err)
	}
	f, err := os.Open(v.File)
	if errors.Is(err, fs.ErrNotExist) {
		return "", &missingValueError{fmt.Sprintf("valuesFrom %s: file %s does not exist on this worker", v.Key, v.File)}
	}
	if err != nil {
		// A *PathError names the file and the reason, never the content.
		return "", &missingValueError{fmt.Sprintf("valuesFrom %s: %v", v.Key, err)}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxValueFromSize+1))
	switch {
	case err != nil:
		return "", &missingValueError{fmt.Sprintf("valuesFrom %s: read %s: %v", v.Key, v.File, err)}
	case len(data) > maxValueFromSize:
		return "", &missingValueError{fmt.Sprintf("valuesFrom %s: file %s is larger than %d bytes", v.Key, v.File, maxValueFromSize)}
	}
	val := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
	if val == "" {
		return "", &missingValueError{fmt.Sprintf("valuesFrom %s: file %s is empty", v.Key, v.File)}
	}
	return val, nil
}

// redactor keeps the secret values of one upgrade out of what leaves the
// activity: its errors (Helm and the API server may quote what the chart
// rendered), Helm's log lines, and the description Helm records on a
// failed revision (History and Snapshot return it to workflows). A nil
// redactor changes nothing.
type redactor struct {
	forms []secretForm // longest first, so that no part of a longer form is left
}

// secretForm is one way a secret value may be printed, and its key.
type secretForm struct{ text, key string }

// minLineForm is the shortest line of a value of several lines that is
// redacted on its own (an error may quote one line of a certificate).
const minLineForm = 6

func newRedactor(secrets []secret) *redactor {
	if len(secrets) == 0 {
		return nil
	}
	r := &redactor{}
	seen := map[string]bool{}
	add := func(text, key string) {
		if text != "" && !seen[text] {
			seen[text] = true
			r.forms = append(r.forms, secretForm{text, key})
		}
	}
	for _, s := range secrets {
		add(s.value, s.key)
		// Quoted by Go (%q) or JSON, and base64 as in a Secret's data.
		q := strconv.Quote(s.value)
		add(q[1:len(q)-1], s.key)
		if j, err := json.Marshal(s.value); err == nil {
			add(string(j[1:len(j)-1]), s.key)
		}
		add(base64.StdEncoding.EncodeToString([]byte(s.value)), s.key)
		if strings.Contains(s.value, "\n") {
			for _, line := range strings.Split(s.value, "\n") {
				if line = strings.TrimSpace(line); len(line) >= minLineForm {
					add(line, s.key)
				}
			}
		}
	}
	sort.SliceStable(r.forms, func(i, j int) bool { return len(r.forms[i].text) > len(r.forms[j].text) })
	return r
}

// redact replaces every secret value in text with "[secret KEY]".
func (r *redactor) redact(text string) string {
	if r == nil {
		return text
	}
	for _, f := range r.forms {
		text = strings.ReplaceAll(text, f.text, "[secret "+f.key+"]")
	}
	return text
}

// leaks tells whether err, or any error it wraps, prints a secret value:
// Temporal records the whole chain of wrapped errors, not only the
// outermost message.
func (r *redactor) leaks(err error) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if text := e.Error(); r.redact(text) != text {
			return true
		}
	}
	return false
}

// error returns err without secret values. An error that prints one is
// rebuilt from its redacted text, without the errors it wrapped; an
// application error keeps its type and whether it may be retried.
func (r *redactor) error(err error) error {
	if r == nil || err == nil || !r.leaks(err) {
		return err
	}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && error(appErr) == err {
		msg := appErr.Message()
		if cause := appErr.Unwrap(); cause != nil {
			msg += ": " + cause.Error()
		}
		msg = r.redact(msg)
		if appErr.NonRetryable() {
			return temporal.NewNonRetryableApplicationError(msg, appErr.Type(), nil)
		}
		return temporal.NewApplicationError(msg, appErr.Type())
	}
	return &redactedError{msg: r.redact(err.Error()), original: err}
}

// redactedError is an error whose text had a secret value. It unwraps to
// nothing, so that Temporal does not record the original chain, and
// still answers errors.Is (cancellation, deadlines) as the original did.
type redactedError struct {
	msg      string
	original error
}

func (e *redactedError) Error() string        { return e.msg }
func (e *redactedError) Is(target error) bool { return errors.Is(e.original, target) }

// logf wraps a Helm log function so that its lines are redacted.
func (r *redactor) logf(log func(string, ...any)) func(string, ...any) {
	if r == nil || log == nil {
		return log
	}
	return func(format string, v ...any) {
		log("%s", r.redact(fmt.Sprintf(format, v...)))
	}
}

// config is cfg for one install or upgrade whose Helm log lines (its own
// and its Kubernetes client's, which quote API errors) are redacted. The
// cached cfg is shared by every release of its namespace, so this call
// gets shallow copies.
func (r *redactor) config(cfg *action.Configuration) *action.Configuration {
	if r == nil {
		return cfg
	}
	c := *cfg
	c.Log = r.logf(cfg.Log)
	if kc, ok := cfg.KubeClient.(*kube.Client); ok {
		k := *kc
		k.Log = r.logf(kc.Log)
		c.KubeClient = &k
	}
	return &c
}

// scrub removes secret values from the description of revision rev of
// the release name, where Helm records why an install or upgrade failed.
func (r *redactor) scrub(cfg *action.Configuration, name string, rev int, log *slog.Logger) {
	if r == nil {
		return
	}
	rel, err := cfg.Releases.Get(name, rev)
	if err != nil || rel == nil || rel.Info == nil {
		return
	}
	clean := r.redact(rel.Info.Description)
	if clean == rel.Info.Description {
		return
	}
	rel.Info.Description = clean
	if err := cfg.Releases.Update(rel); err != nil {
		log.Warn("could not remove a secret value from the description of a failed helm revision", "revision", rev, "error", r.redact(err.Error()))
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// jsonCopy deep-copies m through JSON (numbers become float64, as in a
// release read back from storage).
func jsonCopy(m map[string]any) (map[string]any, error) {
	out := map[string]any{}
	if len(m) == 0 {
		return out, nil
	}
	data, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// deepMerge merges src into dst: maps merge recursively, anything else in
// src replaces what dst has. dst is modified and returned.
func deepMerge(dst, src map[string]any) map[string]any {
	for k, sv := range src {
		if sm, ok := sv.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				dst[k] = deepMerge(dm, sm)
				continue
			}
		}
		dst[k] = sv
	}
	return dst
}

// splitKey splits a dotted key ("image.tag") and rejects empty segments.
func splitKey(key string) ([]string, error) {
	parts := strings.Split(key, ".")
	for _, p := range parts {
		if p == "" {
			return nil, fmt.Errorf("bad dotted key %q", key)
		}
	}
	return parts, nil
}

// setPath sets v at the dotted key, creating maps on the way and replacing
// any non-map in the way.
func setPath(m map[string]any, key string, v any) error {
	parts, err := splitKey(key)
	if err != nil {
		return err
	}
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[parts[len(parts)-1]] = v
	return nil
}

// getPath returns the value at the dotted key, or nil.
func getPath(m map[string]any, key string) any {
	parts, err := splitKey(key)
	if err != nil {
		return nil
	}
	var cur any = m
	for _, p := range parts {
		cm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = cm[p]
	}
	return cur
}

// content identifies what a revision deploys: the chart's name and version,
// a digest of the chart's own templates and default values (so that a chart
// edited without a version bump is not taken as already deployed), and a
// digest of the user-supplied values in canonical JSON (a digest: secret
// values from ValuesFrom are among them, and a changed secret is still a
// change).
type content struct {
	chartName    string
	chartVersion string
	chartDigest  string
	valuesDigest string
}

func contentOf(ch *chart.Chart, vals map[string]any) (content, error) {
	if ch == nil || ch.Metadata == nil {
		return content{}, fmt.Errorf("release has no chart")
	}
	if vals == nil {
		vals = map[string]any{}
	}
	// encoding/json sorts map keys: equal values give equal bytes, and
	// float64 3 and int 3 both print as 3.
	v, err := json.Marshal(vals)
	if err != nil {
		return content{}, fmt.Errorf("encode values: %w", err)
	}
	d, err := chartDigest(ch)
	if err != nil {
		return content{}, err
	}
	sum := sha256.Sum256(v)
	return content{
		chartName:    ch.Metadata.Name,
		chartVersion: ch.Metadata.Version,
		chartDigest:  d,
		valuesDigest: hex.EncodeToString(sum[:]),
	}, nil
}

func releaseContent(rel *release.Release) (content, error) {
	return contentOf(rel.Chart, rel.Config)
}

func chartDigest(ch *chart.Chart) (string, error) {
	h := sha256.New()
	templates := append([]*chart.File(nil), ch.Templates...)
	sort.Slice(templates, func(i, j int) bool { return templates[i].Name < templates[j].Name })
	for _, f := range templates {
		fmt.Fprintf(h, "%s\x00%d\x00", f.Name, len(f.Data))
		h.Write(f.Data)
	}
	defaults, err := json.Marshal(ch.Values)
	if err != nil {
		return "", fmt.Errorf("encode chart values: %w", err)
	}
	h.Write(defaults)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// versionOf reads the application version from a revision's values.
func versionOf(rel *release.Release) string {
	key := defaultVersionValue
	if k := rel.Labels[versionValueLabel]; k != "" {
		key = k
	}
	switch v := getPath(rel.Config, key).(type) {
	case nil:
		return ""
	case string:
		return v
	default:
		var b bytes.Buffer
		_ = json.NewEncoder(&b).Encode(v)
		return strings.TrimSpace(b.String())
	}
}

// inValuesDir checks that file lies in the worker's folder of value files
// (release.EnvValuesDir), links resolved: a release file must not read the
// worker's service account token or its keys.
func inValuesDir(file string) error {
	dir := os.Getenv(keelson.EnvValuesDir)
	if dir == "" {
		return fmt.Errorf("this worker reads no value files: %s is not set (the folder where values are mounted)", keelson.EnvValuesDir)
	}
	rdir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("%s %s: %w", keelson.EnvValuesDir, dir, err)
	}
	rfile, err := filepath.EvalSymlinks(file)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return &missingValueError{fmt.Sprintf("file %s does not exist on this worker", file)}
		}
		return err
	}
	if rel, err := filepath.Rel(rdir, rfile); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return fmt.Errorf("file %s is outside the worker's folder of value files %s (%s)", file, dir, keelson.EnvValuesDir)
	}
	return nil
}
