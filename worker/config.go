package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/keelson-dev/keelson/codec"
	"github.com/keelson-dev/keelson/dora"
	"github.com/keelson-dev/keelson/identity"
	"github.com/keelson-dev/keelson/workflows"
)

// config is the worker's configuration. Every field has a flag; most have
// an environment variable; the defaults run against a local dev server.
type config struct {
	TemporalAddress string
	Namespace       string
	TaskQueue       string
	// DialTimeout is how long to keep trying to reach Temporal at start.
	DialTimeout time.Duration
	// UIURL is the Web UI, for links in Slack messages.
	UIURL string

	Artifacts string
	// Fleet is set when the worker is one of several: whatever one worker
	// keeps (plans, Terraform state, bundles) must then be where the others
	// find it, so a store on the worker's own disk is refused.
	Fleet      bool
	WorkDir    string
	Kubeconfig string
	// Terraform is the terraform binary; empty when not found (releases
	// without a stack still run).
	Terraform string

	// HTTPAddr serves /healthz, /readyz and Slack callbacks; empty disables.
	HTTPAddr string
	// PprofAddr serves Go's profiler (net/http/pprof) on a loopback
	// address of its own; empty, the default, serves nothing.
	PprofAddr string
	SlackPath string

	LogLevel  slog.Level
	LogFormat string

	// DoraWindow is the period of the DORA figures on /metrics, recomputed
	// every DoraInterval (0 turns them off).
	DoraWindow   time.Duration
	DoraInterval time.Duration

	// Codec is set when payloads are encrypted (--codec-keys); nil leaves
	// them as the SDK writes them.
	Codec *codecConfig

	// Access is the access policy file (package identity): who may start,
	// approve and operate releases, by key and Slack account. Empty
	// leaves answers unverified.
	Access string
	// BridgeKey signs the answers of Slack users that the Slack bridge
	// verified; its public key is among the policy's bridges.
	BridgeKey *identity.Signer
}

// codecConfig is payload encryption and its endpoint for the Web UI and
// the temporal CLI.
type codecConfig struct {
	Keys *codec.Keyring
	// Token guards the /codec/ endpoint; empty leaves it unmounted.
	Token string
	// Origins may call the endpoint from a browser (the Web UI's).
	Origins []string
}

// The codec token's variables: the token, or (as for Slack's secrets) a
// file holding it, a mounted secret.
const (
	envCodecToken     = "KEELSON_CODEC_TOKEN"
	envCodecTokenFile = "KEELSON_CODEC_TOKEN_FILE"
)

// option is one setting: its flag, its environment variable and its default.
type option struct {
	flag, env, def, usage string
	dst                   *string
}

// parseConfig reads flags over environment over defaults. An error names
// the flag (and the variable when the bad value came from it).
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	home := getenv("HOME")
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	dataHome := getenv("XDG_DATA_HOME")
	if dataHome == "" {
		dataHome = filepath.Join(home, ".local", "share")
	}
	var dialTimeout, logLevel, terraform, doraWindow, doraInterval, fleet string
	var codecKeys, codecToken, codecOrigins, bridgeKey string
	opts := []option{
		{"temporal-address", "TEMPORAL_ADDRESS", "127.0.0.1:7233", "Temporal frontend host:port", &c.TemporalAddress},
		{"namespace", "TEMPORAL_NAMESPACE", "default", "Temporal namespace", &c.Namespace},
		{"task-queue", "KEELSON_TASK_QUEUE", workflows.TaskQueue, "task queue to poll", &c.TaskQueue},
		{"dial-timeout", "KEELSON_DIAL_TIMEOUT", "1m", "how long to keep trying to reach Temporal at start", &dialTimeout},
		{"ui-url", "KEELSON_UI_URL", "http://localhost:8233", "Temporal Web UI base URL, for links in notifications", &c.UIURL},
		{"artifacts", "KEELSON_ARTIFACTS", filepath.Join(dataHome, "keelson", "artifacts"), "artifact store (bundles, plans, analysis samples): s3://bucket/prefix?region=R&endpoint=URL, file:///path or a folder", &c.Artifacts},
		{"fleet", "KEELSON_FLEET", "false", "true when this worker is one of several: refuses an artifact store (and so Terraform state) on its own disk", &fleet},
		{"work-dir", "KEELSON_WORK_DIR", filepath.Join(dataHome, "keelson", "work"), "folder of Terraform working copies and local state", &c.WorkDir},
		{"kubeconfig", "KUBECONFIG", filepath.Join(home, ".kube", "config"), "kubeconfig with one context per region", &c.Kubeconfig},
		{"terraform", "KEELSON_TERRAFORM", "", "terraform binary (default: terraform on PATH)", &terraform},
		{"http-addr", "KEELSON_HTTP_ADDR", "127.0.0.1:8095", "address of /healthz, /readyz, /metrics and Slack callbacks; empty disables", &c.HTTPAddr},
		{"pprof-addr", "KEELSON_PPROF_ADDR", "", "loopback address of Go's profiler (/debug/pprof/), for make bench and for finding where a worker's time goes; empty disables", &c.PprofAddr},
		{"slack-path", "KEELSON_SLACK_PATH", "/slack/interactions", "HTTP path of Slack interaction callbacks (when a signing secret is set)", &c.SlackPath},
		{"log-level", "KEELSON_LOG_LEVEL", "info", "debug, info, warn or error", &logLevel},
		{"log-format", "KEELSON_LOG_FORMAT", "text", "text or json", &c.LogFormat},
		{"dora-window", "KEELSON_DORA_WINDOW", "30d", "period of the DORA figures on /metrics (30d, 2w, 12h)", &doraWindow},
		{"dora-interval", "KEELSON_DORA_INTERVAL", "1m", "how often the DORA figures are recomputed from Temporal's visibility; 0 disables them", &doraInterval},
		{"codec-keys", codec.EnvKeys, "", "encrypt payloads: comma-separated ID=file:/path or ID=env:NAME, the first key encrypts, all decrypt; empty leaves payloads in clear", &codecKeys},
		{"codec-origins", "KEELSON_CODEC_ORIGINS", "http://localhost:8233", "comma-separated browser origins allowed to call /codec/ (the Web UI's)", &codecOrigins},
		{"access", "KEELSON_ACCESS", "", "access policy file: who may start, approve and operate releases, checked against SSH signatures (docs/identity.md); empty leaves answers unverified", &c.Access},
		{"bridge-key", "KEELSON_BRIDGE_KEY", "", "ed25519 private key file with which the Slack bridge signs the answers of the Slack users it verified", &bridgeKey},
	}
	fs := flag.NewFlagSet("keelson-worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fromEnv := map[string]string{} // flag -> env var that set its value
	for _, o := range opts {
		def := o.def
		if v := getenv(o.env); v != "" {
			def = v
			fromEnv[o.flag] = o.env
		}
		fs.StringVar(o.dst, o.flag, def, o.usage+" (env "+o.env+")")
	}
	// A secret: not a flag default from the environment, which --help prints.
	fs.StringVar(&codecToken, "codec-token", "", "bearer token of the /codec/ endpoint for the Web UI and the temporal CLI; empty leaves it off (env "+envCodecToken+" or "+envCodecTokenFile+")")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q: keelson-worker takes only flags", fs.Arg(0))
	}
	tokenByFlag := false
	fs.Visit(func(f *flag.Flag) {
		delete(fromEnv, f.Name)
		tokenByFlag = tokenByFlag || f.Name == "codec-token"
	})
	bad := func(name, format string, args ...any) error {
		where := "--" + name
		if env, ok := fromEnv[name]; ok {
			where += " (from " + env + ")"
		}
		return fmt.Errorf("%s: %s", where, fmt.Sprintf(format, args...))
	}

	var err error
	if c.DialTimeout, err = time.ParseDuration(dialTimeout); err != nil || c.DialTimeout < 0 {
		return config{}, bad("dial-timeout", "%q is not a duration like 30s or 2m", dialTimeout)
	}
	if c.DoraWindow, err = dora.ParseWindow(doraWindow); err != nil {
		return config{}, bad("dora-window", "%v", err)
	}
	if c.DoraInterval, err = time.ParseDuration(doraInterval); err != nil || c.DoraInterval < 0 {
		return config{}, bad("dora-interval", "%q is not a duration like 1m or 30s", doraInterval)
	}
	if c.LogLevel, err = parseLevel(logLevel); err != nil {
		return config{}, bad("log-level", "%q: want debug, info, warn or error", logLevel)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return config{}, bad("log-format", "%q: want text or json", c.LogFormat)
	}
	if c.HTTPAddr != "" {
		if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
			return config{}, bad("http-addr", "%q is not host:port", c.HTTPAddr)
		}
	}
	if c.PprofAddr != "" {
		// The profiler shows the worker's memory, payloads included: it
		// never listens beyond the machine.
		host, _, err := net.SplitHostPort(c.PprofAddr)
		if ip := net.ParseIP(host); err != nil || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
			return config{}, bad("pprof-addr", "%q: want a loopback host:port such as 127.0.0.1:6060", c.PprofAddr)
		}
	}
	if _, _, err := net.SplitHostPort(c.TemporalAddress); err != nil {
		return config{}, bad("temporal-address", "%q is not host:port", c.TemporalAddress)
	}
	if !strings.HasPrefix(c.SlackPath, "/") {
		return config{}, bad("slack-path", "%q must start with /", c.SlackPath)
	}
	for name, v := range map[string]string{"namespace": c.Namespace, "task-queue": c.TaskQueue, "artifacts": c.Artifacts, "work-dir": c.WorkDir} {
		if v == "" {
			return config{}, bad(name, "is empty")
		}
	}
	if c.Fleet, err = strconv.ParseBool(fleet); err != nil {
		return config{}, bad("fleet", "%q: want true or false", fleet)
	}
	if c.Fleet && !strings.HasPrefix(c.Artifacts, "s3://") {
		return config{}, bad("fleet", "this worker is one of several, but its artifact store %q is on its own disk: "+
			"the others would not find its plans, and Terraform's local state would make each worker create the stacks again. "+
			"Set --artifacts to an s3:// URL (Terraform state then goes to S3 too)", c.Artifacts)
	}
	if c.Codec, err = parseCodec(codecKeys, codecToken, tokenByFlag, codecOrigins, c.HTTPAddr, getenv, fromEnv, bad); err != nil {
		return config{}, err
	}
	if c.Access != "" {
		// A policy that does not load is a mistake to report now, not at
		// the first release (which would be refused).
		if _, err := identity.LoadPolicy(c.Access); err != nil {
			return config{}, bad("access", "%v", err)
		}
	}
	if bridgeKey != "" {
		if c.BridgeKey, err = identity.LoadSigner(identity.Bridge, bridgeKey); err != nil {
			return config{}, bad("bridge-key", "%v", err)
		}
	}
	if terraform != "" {
		// An explicit binary that is not there is a mistake to report now,
		// not at the first plan.
		if c.Terraform, err = exec.LookPath(terraform); err != nil {
			return config{}, bad("terraform", "%v", err)
		}
	} else if p, err := exec.LookPath("terraform"); err == nil {
		c.Terraform = p
	}
	return c, nil
}

// parseCodec reads the encryption options; nil without keys. A token
// without keys, or without the HTTP server to serve it, is a mistake.
func parseCodec(keys, token string, tokenByFlag bool, origins, httpAddr string, getenv func(string) string,
	fromEnv map[string]string, bad func(name, format string, args ...any) error) (*codecConfig, error) {
	if !tokenByFlag && getenv(envCodecToken) != "" {
		token = getenv(envCodecToken)
		fromEnv["codec-token"] = envCodecToken
	}
	if file := getenv(envCodecTokenFile); file != "" && !tokenByFlag {
		if token != "" {
			return nil, fmt.Errorf("both %s and %s are set; use one", envCodecToken, envCodecTokenFile)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", envCodecTokenFile, err)
		}
		// Secret files usually end with a newline that is not part of it.
		if token = strings.TrimSpace(string(b)); token == "" {
			return nil, fmt.Errorf("%s %s is empty", envCodecTokenFile, file)
		}
		fromEnv["codec-token"] = envCodecTokenFile
	}
	if strings.TrimSpace(keys) == "" {
		if token != "" {
			return nil, bad("codec-token", "is set, but --codec-keys is empty: the endpoint has no keys to decode with")
		}
		return nil, nil
	}
	ring, err := codec.ParseKeys(keys, getenv)
	if err != nil {
		return nil, bad("codec-keys", "%v", err)
	}
	cc := &codecConfig{Keys: ring, Token: strings.TrimSpace(token)}
	if cc.Token != "" && httpAddr == "" {
		return nil, bad("codec-token", "is set, but --http-addr is empty: the codec endpoint needs the HTTP server")
	}
	for _, o := range strings.Split(origins, ",") {
		o = strings.TrimRight(strings.TrimSpace(o), "/")
		if o == "" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" {
			return nil, bad("codec-origins", "%q is not an origin like http://localhost:8233", o)
		}
		cc.Origins = append(cc.Origins, o)
	}
	return cc, nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, errors.New("bad level")
	}
	return l, nil
}

// newLogger builds the process's logger.
func newLogger(c config, w io.Writer) *slog.Logger {
	o := &slog.HandlerOptions{Level: c.LogLevel}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}

// terraformEnv is what the worker passes on to Terraform from its own
// environment: its CLI configuration, plugin cache, AWS credentials and
// endpoints (moto locally), and TF_VAR_ variables. The terraform activities
// add PATH themselves; everything else stays out.
func terraformEnv(environ []string) map[string]string {
	env := map[string]string{}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case k == "TF_CLI_CONFIG_FILE", k == "TF_PLUGIN_CACHE_DIR",
			strings.HasPrefix(k, "AWS_"), strings.HasPrefix(k, "TF_VAR_"):
			env[k] = v
		}
	}
	return env
}
