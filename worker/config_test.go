package main

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keelson-dev/keelson/codec"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestConfigDefaults(t *testing.T) {
	c, err := parseConfig(nil, envOf(map[string]string{"HOME": "/home/k"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := config{
		TemporalAddress: "127.0.0.1:7233", Namespace: "default", TaskQueue: "keelson", DialTimeout: time.Minute,
		UIURL: "http://localhost:8233", Artifacts: "/home/k/.local/share/keelson/artifacts",
		WorkDir: "/home/k/.local/share/keelson/work", Kubeconfig: "/home/k/.kube/config",
		HTTPAddr: "127.0.0.1:8095", SlackPath: "/slack/interactions", LogLevel: slog.LevelInfo, LogFormat: "text",
		DoraWindow: 30 * 24 * time.Hour, DoraInterval: time.Minute,
	}
	c.Terraform = "" // depends on this machine's PATH; checked below
	if c != want {
		t.Errorf("defaults\n got %+v\nwant %+v", c, want)
	}
}

func TestConfigFlagsOverrideEnvOverrideDefaults(t *testing.T) {
	env := envOf(map[string]string{
		"HOME":               "/home/k",
		"XDG_DATA_HOME":      "/data",
		"TEMPORAL_ADDRESS":   "env-host:7233",
		"TEMPORAL_NAMESPACE": "env-ns",
		"KEELSON_LOG_LEVEL":  "debug",
		"KUBECONFIG":         "/env/kubeconfig",
	})
	c, err := parseConfig([]string{"--temporal-address", "flag-host:7000", "--log-format", "json"}, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.TemporalAddress != "flag-host:7000" {
		t.Errorf("flag did not override env: %s", c.TemporalAddress)
	}
	if c.Namespace != "env-ns" || c.Kubeconfig != "/env/kubeconfig" || c.LogLevel != slog.LevelDebug {
		t.Errorf("env did not override defaults: %+v", c)
	}
	if c.LogFormat != "json" || c.TaskQueue != "keelson" {
		t.Errorf("%+v", c)
	}
	if c.Artifacts != "/data/keelson/artifacts" || c.WorkDir != "/data/keelson/work" {
		t.Errorf("XDG_DATA_HOME not used: %s %s", c.Artifacts, c.WorkDir)
	}
}

func TestConfigBadValuesNameTheFlag(t *testing.T) {
	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--log-level", "loud"}, nil, `--log-level: "loud": want debug, info, warn or error`},
		{nil, map[string]string{"KEELSON_LOG_LEVEL": "loud"}, `--log-level (from KEELSON_LOG_LEVEL): "loud"`},
		{[]string{"--log-format", "xml"}, nil, `--log-format: "xml": want text or json`},
		{[]string{"--http-addr", "8095"}, nil, `--http-addr: "8095" is not host:port`},
		{[]string{"--temporal-address", "nowhere"}, nil, `--temporal-address: "nowhere" is not host:port`},
		{[]string{"--dial-timeout", "soon"}, nil, `--dial-timeout: "soon" is not a duration`},
		{[]string{"--terraform", "/nonexistent/terraform"}, nil, `--terraform: `},
		{[]string{"--namespace", ""}, nil, `--namespace: is empty`},
		{[]string{"--slack-path", "slack"}, nil, `--slack-path: "slack" must start with /`},
		{[]string{"--no-such-flag"}, nil, `no-such-flag`},
		{[]string{"stray"}, nil, `unexpected argument "stray"`},
		{[]string{"--fleet", "maybe"}, nil, `--fleet: "maybe": want true or false`},
		{nil, map[string]string{"KEELSON_FLEET": "true"}, `--fleet (from KEELSON_FLEET): this worker is one of several, but its artifact store "/home/k/.local/share/keelson/artifacts" is on its own disk`},
		{[]string{"--fleet", "true", "--artifacts", "file:///srv/shared"}, nil, `Set --artifacts to an s3:// URL`},
	}
	for _, tc := range cases {
		env := map[string]string{"HOME": "/home/k"}
		for k, v := range tc.env {
			env[k] = v
		}
		_, err := parseConfig(tc.args, envOf(env), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: error %v, want it to contain %q", tc.args, tc.env, err, tc.want)
		}
	}
	// A value given by flag is blamed on the flag, not on the variable.
	_, err := parseConfig([]string{"--log-level", "loud"}, envOf(map[string]string{"KEELSON_LOG_LEVEL": "debug"}), io.Discard)
	if err == nil || strings.Contains(err.Error(), "KEELSON_LOG_LEVEL") {
		t.Errorf("error %v blames the variable", err)
	}
	// One of several with an S3 store is what the fleet is for.
	if c, err := parseConfig([]string{"--fleet", "true", "--artifacts", "s3://b/p?region=us-east-1"}, envOf(map[string]string{"HOME": "/h"}), io.Discard); err != nil || !c.Fleet {
		t.Errorf("--fleet with S3: %v %v", err, c.Fleet)
	}
	// An empty --http-addr disables the server: not an error.
	if c, err := parseConfig([]string{"--http-addr", ""}, envOf(map[string]string{"HOME": "/h"}), io.Discard); err != nil || c.HTTPAddr != "" {
		t.Errorf("empty --http-addr: %v %q", err, c.HTTPAddr)
	}
}

func TestConfigTerraformBinary(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "terraform")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := parseConfig(nil, envOf(map[string]string{"HOME": "/h", "KEELSON_TERRAFORM": bin}), io.Discard)
	if err != nil || c.Terraform != bin {
		t.Errorf("terraform %q err %v, want %s", c.Terraform, err, bin)
	}
}

func TestTerraformEnvPassesOnlyWhatTerraformNeeds(t *testing.T) {
	env := terraformEnv([]string{
		"TF_CLI_CONFIG_FILE=/tf.rc", "AWS_ENDPOINT_URL=http://127.0.0.1:5000", "TF_VAR_x=1",
		"KEELSON_SLACK_BOT_TOKEN=xoxb-secret", "TEMPORAL_ADDRESS=x", "PATH=/bin",
	})
	if len(env) != 3 || env["TF_CLI_CONFIG_FILE"] != "/tf.rc" || env["AWS_ENDPOINT_URL"] == "" || env["TF_VAR_x"] != "1" {
		t.Errorf("terraform env %v", env)
	}
}

func TestConfigCodec(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "key1")
	if err := os.WriteFile(key, []byte(strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("tok-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	parse := func(args []string, env map[string]string) (config, error) {
		full := map[string]string{"HOME": "/h"}
		for k, v := range env {
			full[k] = v
		}
		return parseConfig(args, envOf(full), io.Discard)
	}

	// Off by default: no keys, no converter, no endpoint.
	if c, err := parse(nil, nil); err != nil || c.Codec != nil {
		t.Errorf("default codec %+v %v", c.Codec, err)
	}

	c, err := parse(nil, map[string]string{"KEELSON_CODEC_KEYS": "k1=file:" + key, "KEELSON_CODEC_TOKEN": "tok"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Codec == nil || c.Codec.Token != "tok" || strings.Join(c.Codec.Keys.IDs(), ",") != "k1" ||
		strings.Join(c.Codec.Origins, ",") != "http://localhost:8233" {
		t.Errorf("codec %+v", c.Codec)
	}

	// Keys without a token: the worker encrypts, the endpoint stays off.
	if c, err := parse([]string{"--codec-keys", "k1=file:" + key}, nil); err != nil || c.Codec == nil || c.Codec.Token != "" {
		t.Errorf("keys without token: %+v %v", c.Codec, err)
	}

	// The _FILE twin, as for Slack's secrets; and origins with a slash.
	c, err = parse(nil, map[string]string{
		"KEELSON_CODEC_KEYS": "k1=file:" + key, "KEELSON_CODEC_TOKEN_FILE": tokenFile,
		"KEELSON_CODEC_ORIGINS": "https://temporal.example.com/, http://127.0.0.1:8233",
	})
	if err != nil || c.Codec.Token != "tok-from-file" || strings.Join(c.Codec.Origins, ",") != "https://temporal.example.com,http://127.0.0.1:8233" {
		t.Errorf("token file and origins: %+v %v", c.Codec, err)
	}
	// The flag wins over both variables.
	c, err = parse([]string{"--codec-token", "tok-flag"}, map[string]string{
		"KEELSON_CODEC_KEYS": "k1=file:" + key, "KEELSON_CODEC_TOKEN": "tok", "KEELSON_CODEC_TOKEN_FILE": tokenFile,
	})
	if err != nil || c.Codec.Token != "tok-flag" {
		t.Errorf("flag token: %+v %v", c.Codec, err)
	}

	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--codec-keys", "k1=file:" + filepath.Join(dir, "nope")}, nil, `--codec-keys: key entry 1 "k1=file:`},
		{nil, map[string]string{"KEELSON_CODEC_KEYS": "k1=env:NOPE"}, `--codec-keys (from KEELSON_CODEC_KEYS): key entry 1 "k1=env:NOPE": variable NOPE is not set`},
		{nil, map[string]string{"KEELSON_CODEC_KEYS": "k1=file:" + key + ",k1=file:" + key}, `key id "k1" appears twice`},
		{nil, map[string]string{"KEELSON_CODEC_TOKEN": "tok"}, `--codec-token (from KEELSON_CODEC_TOKEN): is set, but --codec-keys is empty`},
		{nil, map[string]string{"KEELSON_CODEC_TOKEN_FILE": tokenFile}, `--codec-token (from KEELSON_CODEC_TOKEN_FILE): is set, but --codec-keys is empty`},
		{nil, map[string]string{"KEELSON_CODEC_KEYS": "k1=file:" + key, "KEELSON_CODEC_TOKEN": "tok", "KEELSON_CODEC_TOKEN_FILE": tokenFile}, `both KEELSON_CODEC_TOKEN and KEELSON_CODEC_TOKEN_FILE are set`},
		{nil, map[string]string{"KEELSON_CODEC_KEYS": "k1=file:" + key, "KEELSON_CODEC_TOKEN_FILE": filepath.Join(dir, "nope")}, `read KEELSON_CODEC_TOKEN_FILE`},
		{[]string{"--codec-keys", "k1=file:" + key, "--codec-token", "tok", "--http-addr", ""}, nil, `--codec-token: is set, but --http-addr is empty`},
		{[]string{"--codec-keys", "k1=file:" + key, "--codec-origins", "localhost:8233"}, nil, `--codec-origins: "localhost:8233" is not an origin`},
		{[]string{"--codec-keys", "k1=file:" + key, "--codec-origins", "http://ui.example/path"}, nil, `--codec-origins: "http://ui.example/path" is not an origin`},
	}
	for _, tc := range cases {
		_, err := parse(tc.args, tc.env)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: error %v, want it to contain %q", tc.args, tc.env, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "abab") || strings.Contains(err.Error(), "tok-from-file") {
			t.Errorf("error shows a secret: %v", err)
		}
	}
}

func TestConfigHelpHidesTheCodecToken(t *testing.T) {
	var help strings.Builder
	_, _ = parseConfig([]string{"--help"}, envOf(map[string]string{"HOME": "/h", "KEELSON_CODEC_TOKEN": "tok-in-env"}), &help)
	if !strings.Contains(help.String(), "codec-token") || strings.Contains(help.String(), "tok-in-env") {
		t.Errorf("--help:\n%s", help.String())
	}
}

func TestMountCodec(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	mux := http.NewServeMux()
	if dc := mountCodec(config{}, mux, log); dc != nil {
		t.Error("a data converter without keys")
	}
	keys, err := codec.NewKeyring(codec.Key{ID: "k1", Secret: make([]byte, codec.KeySize)})
	if err != nil {
		t.Fatal(err)
	}
	status := func(mux *http.ServeMux) int {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/codec/decode", strings.NewReader(`{"payloads":[]}`)))
		return rec.Code
	}
	if dc := mountCodec(config{Codec: &codecConfig{Keys: keys}}, mux, log); dc == nil || status(mux) != http.StatusNotFound {
		t.Errorf("keys without token: converter %v, /codec/decode %d (want 404: not mounted)", dc, status(mux))
	}
	mux = http.NewServeMux()
	if dc := mountCodec(config{Codec: &codecConfig{Keys: keys, Token: "tok"}}, mux, log); dc == nil || status(mux) != http.StatusUnauthorized {
		t.Errorf("with token: converter %v, /codec/decode %d (want 401)", dc, status(mux))
	}
}

// The profiler shows the worker's memory: it listens on loopback only.
func TestPprofAddrIsLoopbackOnly(t *testing.T) {
	env := envOf(map[string]string{"HOME": "/h"})
	for _, ok := range []string{"127.0.0.1:6060", "localhost:6060", "[::1]:6060"} {
		c, err := parseConfig([]string{"--pprof-addr", ok}, env, io.Discard)
		if err != nil || c.PprofAddr != ok {
			t.Errorf("--pprof-addr %s: %v", ok, err)
		}
	}
	for _, bad := range []string{"0.0.0.0:6060", ":6060", "10.0.0.5:6060", "example.com:6060", "6060"} {
		if _, err := parseConfig([]string{"--pprof-addr", bad}, env, io.Discard); err == nil || !strings.Contains(err.Error(), "--pprof-addr") {
			t.Errorf("--pprof-addr %s: err %v, want a refusal naming the flag", bad, err)
		}
	}
}
