package slackhook

import (
	"fmt"
	"os"
	"strings"
)

// Environment variables the worker reads Slack's secrets from. Each has a
// _FILE twin naming a file that holds the value (a mounted Kubernetes or
// Docker secret), so the secret need not sit in the process environment.
const (
	EnvBotToken      = "KEELSON_SLACK_BOT_TOKEN"
	EnvSigningSecret = "KEELSON_SLACK_SIGNING_SECRET"
	EnvAppToken      = "KEELSON_SLACK_APP_TOKEN"
	// EnvAPIURL points the client at another Slack API (slacktest in tests
	// and the demo); empty means slack.com.
	EnvAPIURL = "KEELSON_SLACK_API_URL"
)

// Config is how the worker talks to Slack. It never comes from a release
// file: a release file names channels and approvers, not credentials.
type Config struct {
	// BotToken (xoxb-…) posts messages and opens modals.
	BotToken string
	// SigningSecret verifies interaction callbacks on the HTTP endpoint.
	SigningSecret string
	// AppToken (xapp-…) enables Socket Mode, for workspaces that cannot
	// reach an endpoint of the worker.
	AppToken string
	// APIURL overrides https://slack.com/api/ (must end with a slash).
	APIURL string
}

// Enabled reports whether Slack is configured at all. Without a bot token
// gates still work from the CLI and the Web UI; the worker says so at start.
func (c Config) Enabled() bool { return c.BotToken != "" }

// HTTPEnabled reports whether the HTTP interaction endpoint can verify
// requests.
func (c Config) HTTPEnabled() bool { return c.Enabled() && c.SigningSecret != "" }

// SocketModeEnabled reports whether Socket Mode can connect.
func (c Config) SocketModeEnabled() bool { return c.Enabled() && c.AppToken != "" }

// String describes the configuration without its secrets, for the worker's
// start-up line.
func (c Config) String() string {
	if !c.Enabled() {
		return "slack: off (no " + EnvBotToken + "); gates are answered from the CLI or the Web UI"
	}
	var ways []string
	if c.HTTPEnabled() {
		ways = append(ways, "HTTP callbacks")
	}
	if c.SocketModeEnabled() {
		ways = append(ways, "Socket Mode")
	}
	if len(ways) == 0 {
		return "slack: notifications only (no signing secret or app token, so buttons cannot be answered)"
	}
	return "slack: on, interactions by " + strings.Join(ways, " and ")
}

// ConfigFromEnv reads the Slack configuration from the environment. A
// variable and its _FILE twin both set is an error, as is an unreadable
// file; nothing set is a valid configuration with Slack off.
func ConfigFromEnv() (Config, error) {
	var c Config
	var err error
	if c.BotToken, err = secret(EnvBotToken); err != nil {
		return Config{}, err
	}
	if c.SigningSecret, err = secret(EnvSigningSecret); err != nil {
		return Config{}, err
	}
	if c.AppToken, err = secret(EnvAppToken); err != nil {
		return Config{}, err
	}
	c.APIURL = os.Getenv(EnvAPIURL)
	if c.APIURL != "" && !strings.HasSuffix(c.APIURL, "/") {
		c.APIURL += "/"
	}
	if c.AppToken != "" && !strings.HasPrefix(c.AppToken, "xapp-") {
		return Config{}, fmt.Errorf("%s: an app-level token starts with xapp-", EnvAppToken)
	}
	if !c.Enabled() && (c.SigningSecret != "" || c.AppToken != "") {
		return Config{}, fmt.Errorf("slack: %s is set but %s is not: callbacks need the bot token to answer", firstSet(c), EnvBotToken)
	}
	return c, nil
}

func firstSet(c Config) string {
	if c.SigningSecret != "" {
		return EnvSigningSecret
	}
	return EnvAppToken
}

func secret(name string) (string, error) {
	v, file := os.Getenv(name), os.Getenv(name+"_FILE")
	if v != "" && file != "" {
		return "", fmt.Errorf("both %s and %s_FILE are set; use one", name, name)
	}
	if file == "" {
		return strings.TrimSpace(v), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read %s_FILE: %w", name, err)
	}
	// Secret files usually end with a newline that is not part of the secret.
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s_FILE %s is empty", name, file)
	}
	return s, nil
}
