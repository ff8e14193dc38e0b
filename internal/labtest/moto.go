package labtest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// MotoStartTimeout bounds how long moto_server may take to answer.
const MotoStartTimeout = 60 * time.Second

// StartMoto starts a moto server (AWS APIs in one local process, state in
// memory) on a free port of 127.0.0.1 for the test, and stops it when the
// test ends. It returns the endpoint, http://127.0.0.1:<port>. moto_server
// comes from PATH; the test fails (never skips) when it is missing.
//
// Each server is the test's own: nothing it creates is seen by other tests.
func StartMoto(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		t.Fatalf("labtest: moto_server not found in PATH (install moto with its server: pip install 'moto[server]'): %v", err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatalf("labtest: moto: %v", err)
	}
	endpoint := "http://127.0.0.1:" + strconv.Itoa(port)

	var out lockedBuffer
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.Env = motoEnv()
	cmd.Stdout = &out
	cmd.Stderr = &out
	// Its own process group, so that stopping it also stops what a
	// wrapper (the pyenv shim) started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("labtest: start %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	stop := func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("labtest: moto_server output:\n%s", tail(out.String(), 8000))
		}
	})

	if err := waitHTTP(endpoint, exited, MotoStartTimeout); err != nil {
		stop()
		t.Fatalf("labtest: moto_server on %s: %v; its output:\n%s", endpoint, err, tail(out.String(), 4000))
	}
	t.Logf("labtest: moto on %s started in %s", endpoint, time.Since(start).Round(time.Millisecond))
	return endpoint
}

// waitHTTP waits until url answers anything at all over HTTP.
func waitHTTP(url string, exited <-chan struct{}, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-exited:
			return errors.New("exited before it answered")
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer after %s: %w", timeout, err)
		}
	}
}

// freePort is a port the kernel had free a moment ago. Ephemeral ports
// are not reused at once, so the race with another process is narrow.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("choose a port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// FakeAWSEnv points the AWS SDK's default chain at dummy credentials (moto
// accepts any) for the test, and away from the developer's own: no shared
// config or credentials file, no profile, no instance metadata.
func FakeAWSEnv(t testing.TB) {
	t.Helper()
	none := filepath.Join(t.TempDir(), "none")
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID":           "testing",
		"AWS_SECRET_ACCESS_KEY":       "testing",
		"AWS_CONFIG_FILE":             none,
		"AWS_SHARED_CREDENTIALS_FILE": none,
		"AWS_EC2_METADATA_DISABLED":   "true",
	} {
		t.Setenv(k, v)
	}
	// Unset, not empty: boto3 (and so moto_server) takes an empty
	// AWS_PROFILE for a profile named "" and fails every request.
	for _, k := range []string{"AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"} {
		t.Setenv(k, "") // restored at cleanup
		os.Unsetenv(k)
	}
}

// motoEnv is the environment without the AWS settings meant for the
// clients: moto_server runs boto3 itself, which fails every request on
// some of them (an empty AWS_PROFILE).
func motoEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	return env
}
