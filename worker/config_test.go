package main

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
