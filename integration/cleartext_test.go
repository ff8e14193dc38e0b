package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	historypb "go.temporal.io/api/history/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/keelson-dev/keelson/codec"
	"github.com/keelson-dev/keelson/control"
	"github.com/keelson-dev/keelson/workflows"
)

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// payloadsIn walks a history event and returns every payload in it but
// those of search attributes, which Temporal must read and so are never
// encoded (docs/codec.md): application, version, phase, change versions.
func payloadsIn(m proto.Message) []*commonpb.Payload {
	var out []*commonpb.Payload
	var walk func(protoreflect.Message)
	walk = func(msg protoreflect.Message) {
		switch v := msg.Interface().(type) {
		case *commonpb.Payload:
			out = append(out, v)
			return
		case *commonpb.SearchAttributes:
			return
		}
		msg.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.IsList() && fd.Message() != nil:
				for i := 0; i < v.List().Len(); i++ {
					walk(v.List().Get(i).Message())
				}
			case fd.IsMap() && fd.MapValue().Message() != nil:
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool { walk(mv.Message()); return true })
			case fd.Message() != nil && !fd.IsList() && !fd.IsMap():
				walk(v.Message())
			}
			return true
		})
	}
	walk(m.ProtoReflect())
	return out
}

// TestHistoryHoldsNoClearText releases with encrypted payloads and secret
// values from the worker's environment and files, then searches every
// payload of the release's history and its regions' for the values of the
// release file and the secrets: the secrets are nowhere, even decoded; the
// file's values only decoded, through the codec endpoint with its token.
//
// The test's worker holds the lab's key, as workers of one namespace do:
// the lab's worker runs the stop-the-line switch the release subscribes to.
func TestHistoryHoldsNoClearText(t *testing.T) {
	dir := t.TempDir()
	lc := theLabCodec
	token := randomHex(t, 16)
	valuesDir := filepath.Join(dir, "values")
	os.MkdirAll(valuesDir, 0o700)
	secretEnv, secretFile := "env-secret-"+randomHex(t, 6), "file-secret-"+randomHex(t, 6)
	if err := os.WriteFile(filepath.Join(valuesDir, "api-key"), []byte(secretFile+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	plain := map[string]string{
		"a chart value":      "plain-value-" + randomHex(t, 6),
		"a region value":     "region-value-" + randomHex(t, 6),
		"a Terraform var":    "tf-tier-" + randomHex(t, 6),
		"a rejection reason": "",
	}
	keys := lc.keys
	e := newSlackEnvWith(t, workerExtra{
		args: []string{"--codec-keys", keys},
		env: []string{"KEELSON_CODEC_TOKEN=" + token, "KEELSON_VALUE_DB_PASSWORD=" + secretEnv, "KEELSON_VALUES_DIR=" + valuesDir,
			"KEELSON_CODEC_ORIGINS=http://localhost:8233"},
	})
	delete(plain, "a rejection reason")
	l := e.lab
	const channel = "CCLEARTEXT"
	app := slackApp("cleartext")
	file := slackReleaseFile(t, l, app, channel, []slackWave{
		{Name: "canary", Region: "us-east-1", KubeContext: "us-east-1"},
		{Name: "rest", Region: "eu-west-1", KubeContext: "eu-west-1"},
	})
	editYAML(t, file, func(doc map[string]any) {
		doc["values"] = map[string]any{"replicas": 1, "marker": plain["a chart value"]}
		doc["valuesFrom"] = []any{
			map[string]any{"key": "db.password", "env": "KEELSON_VALUE_DB_PASSWORD", "secret": true},
			map[string]any{"key": "api.key", "file": filepath.Join(valuesDir, "api-key"), "secret": true},
		}
		doc["regions"].([]any)[0].(map[string]any)["values"] = map[string]any{"regionMarker": plain["a region value"]}
		doc["terraform"] = map[string]any{"path": filepath.Join(l.root, "infra/demo/terraform"), "vars": map[string]any{"tier": plain["a Terraform var"]}}
	})

	dc := lc.dc
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tc, err := control.Dial(ctx, control.DialOptions{Address: l.address, Namespace: "default", DataConverter: dc, FailureConverter: codec.NewFailureConverter(dc)})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	ctl := &control.Client{T: tc, Namespace: "default", TaskQueue: slackTaskQueue, DataConverter: dc}

	version := slackVersion()
	cmd := exec.Command(filepath.Join(l.bin, "keelson"), "--task-queue", slackTaskQueue, "--artifacts", e.worker.arg("--artifacts"),
		"--codec-keys", keys, "release", "start", "-f", file, "--version", version)
	cmd.Env = append(os.Environ(), "TEMPORAL_ADDRESS="+l.address)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("start: %v\n%s", err, out)
	}
	id := workflows.ReleaseID(app, version)
	t.Cleanup(func() { slackTerminate(l.tc, id) })
	started := time.Now()
	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer rcancel()
	res, err := ctl.Result(rctx, id)
	if err != nil || res.Phase != workflows.PhaseSucceeded {
		t.Fatalf("release %s: %v %+v", id, err, res)
	}
	t.Logf("release with encrypted payloads, 2 regions with Terraform: %s after start returned", time.Since(started).Round(time.Millisecond))

	var all []*commonpb.Payload
	var text bytes.Buffer
	for _, wid := range []string{id, workflows.RegionID(id, "us-east-1"), workflows.RegionID(id, "eu-west-1")} {
		events := l.rawHistory(t, wid)
		if len(events) == 0 {
			t.Fatalf("no history for %s", wid)
		}
		for _, ev := range events {
			all = append(all, payloadsIn(ev)...)
		}
		raw, _ := protojson.Marshal(&historypb.History{Events: events})
		text.Write(raw)
		// And as people read it: temporal workflow show.
		show := exec.Command(filepath.Join(envOr("KEELSON_LAB_BIN", filepath.Join(l.root, ".cache/lab/bin")), "temporal"), "workflow", "show", "--address", l.address, "--workflow-id", wid, "--output", "json")
		shown, err := show.CombinedOutput()
		if err != nil {
			t.Fatalf("temporal workflow show %s: %v\n%s", wid, err, shown)
		}
		text.Write(shown)
	}
	encrypted := 0
	for _, p := range all {
		if string(p.GetMetadata()["encoding"]) == "binary/encrypted" {
			encrypted++
		} else {
			t.Logf("not encrypted: %s %q", p.GetMetadata()["encoding"], p.GetData())
		}
		for what, v := range plain {
			if bytes.Contains(p.GetData(), []byte(v)) {
				t.Errorf("%s (%s) is in clear in a payload of the history", what, v)
			}
		}
		for _, s := range []string{secretEnv, secretFile} {
			if bytes.Contains(p.GetData(), []byte(s)) {
				t.Errorf("secret %s is in a payload of the history", s)
			}
		}
	}
	for what, v := range plain {
		if strings.Contains(text.String(), v) {
			t.Errorf("%s (%s) is in clear in the history as temporal workflow show prints it", what, v)
		}
	}
	for _, s := range []string{secretEnv, secretFile} {
		if strings.Contains(text.String(), s) {
			t.Errorf("secret %s is in the history as temporal workflow show prints it", s)
		}
	}
	if encrypted == 0 || encrypted != len(all) {
		t.Errorf("%d of %d payloads are encrypted; want all", encrypted, len(all))
	}

	// The codec endpoint, as the Web UI calls it: refused without the
	// token, decoded with it. Decoded, the file's values show (so the
	// search above could find them) and the secrets still do not.
	body, _ := protojson.Marshal(&commonpb.Payloads{Payloads: all})
	decode := func(auth string) (int, []byte) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+e.worker.addr+"/codec/decode", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Namespace", "default")
		req.Header.Set("Origin", "http://localhost:8233")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("codec endpoint: %v", err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.Bytes()
	}
	if code, _ := decode(""); code != http.StatusUnauthorized {
		t.Errorf("decode without the token: %d, want 401", code)
	}
	if code, _ := decode("Bearer " + randomHex(t, 16)); code != http.StatusUnauthorized {
		t.Errorf("decode with another token: %d, want 401", code)
	}
	code, decoded := decode("Bearer " + token)
	if code != http.StatusOK {
		t.Fatalf("decode with the token: %d %s", code, decoded)
	}
	var ps commonpb.Payloads
	if err := protojson.Unmarshal(decoded, &ps); err != nil || len(ps.Payloads) != len(all) {
		t.Fatalf("decoded answer: %v, %d payloads of %d", err, len(ps.Payloads), len(all))
	}
	var clear bytes.Buffer
	for _, p := range ps.Payloads {
		clear.Write(p.GetData())
	}
	for what, v := range plain {
		if !strings.Contains(clear.String(), v) {
			t.Errorf("%s (%s) is not in the decoded payloads either: the search above proves nothing for it", what, v)
		}
	}
	for _, s := range []string{secretEnv, secretFile} {
		if strings.Contains(clear.String(), s) {
			t.Errorf("secret %s is in a decoded payload: it entered the workflow", s)
		}
	}
	// Nor in the worker's log or the Slack channel.
	logText, _ := os.ReadFile(e.worker.logPath)
	var slackText strings.Builder
	for _, m := range e.ws.Messages(channel) {
		slackText.WriteString(slackBlockText(m.Blocks) + m.Text)
	}
	for _, s := range []string{secretEnv, secretFile} {
		if bytes.Contains(logText, []byte(s)) {
			t.Errorf("secret %s is in the worker's log", s)
		}
		if strings.Contains(slackText.String(), s) {
			t.Errorf("secret %s is in Slack", s)
		}
	}
	if slackText.Len() == 0 {
		t.Errorf("no Slack messages in %s: the search of Slack proves nothing", channel)
	}
}
