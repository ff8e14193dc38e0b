package slackhook_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keelson-dev/keelson/worker/slackhook"
)

func clearEnv(t *testing.T) {
	for _, n := range []string{slackhook.EnvBotToken, slackhook.EnvSigningSecret, slackhook.EnvAppToken} {
		t.Setenv(n, "")
		t.Setenv(n+"_FILE", "")
	}
	t.Setenv(slackhook.EnvAPIURL, "")
}

func TestConfigFromEnv(t *testing.T) {
	t.Run("nothing set is Slack off", func(t *testing.T) {
		clearEnv(t)
		c, err := slackhook.ConfigFromEnv()
		require.NoError(t, err)
		require.False(t, c.Enabled())
		require.Contains(t, c.String(), "slack: off")
	})
	t.Run("values and files", func(t *testing.T) {
		clearEnv(t)
		dir := t.TempDir()
		f := filepath.Join(dir, "secret")
		require.NoError(t, os.WriteFile(f, []byte("s3cr3t\n"), 0o600))
		t.Setenv(slackhook.EnvBotToken, "xoxb-1")
		t.Setenv(slackhook.EnvSigningSecret+"_FILE", f)
		t.Setenv(slackhook.EnvAppToken, "xapp-1-abc")
		t.Setenv(slackhook.EnvAPIURL, "http://127.0.0.1:9999/api")
		c, err := slackhook.ConfigFromEnv()
		require.NoError(t, err)
		require.Equal(t, slackhook.Config{BotToken: "xoxb-1", SigningSecret: "s3cr3t", AppToken: "xapp-1-abc", APIURL: "http://127.0.0.1:9999/api/"}, c)
		require.True(t, c.HTTPEnabled())
		require.True(t, c.SocketModeEnabled())
		require.NotContains(t, c.String(), "s3cr3t", "the start-up line never shows secrets")
	})
	for name, set := range map[string]map[string]string{
		"both value and file":   {slackhook.EnvBotToken: "xoxb-1", slackhook.EnvBotToken + "_FILE": "/dev/null"},
		"unreadable file":       {slackhook.EnvBotToken + "_FILE": "/nonexistent/keelson/token"},
		"secret without token":  {slackhook.EnvSigningSecret: "s"},
		"app token not an xapp": {slackhook.EnvBotToken: "xoxb-1", slackhook.EnvAppToken: "xoxb-2"},
	} {
		t.Run(name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range set {
				t.Setenv(k, v)
			}
			_, err := slackhook.ConfigFromEnv()
			require.Error(t, err)
		})
	}
}
