// Package labtest starts a real Kubernetes API server for tests: one kwok
// cluster (etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
// the kwok controller as local processes) with two fake nodes on which pods
// are scheduled and reported Running and Ready.
//
// The binaries come from the lab bin dir built by infra/lab/build.sh
// (`make lab-build`); nothing is downloaded here.
package labtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Binaries are the lab binaries a kwok cluster needs.
var Binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kwokctl"}

// Cluster is a running kwok cluster.
type Cluster struct {
	Name       string
	Kubeconfig string // file with one context, Context
	Context    string
	// Started is how long creating the cluster and its nodes took.
	Started time.Duration

	bin     string
	workdir string
	tmp     string // removed on Stop when we made it
}

// StartCluster starts a kwok cluster for the test and deletes it when the
// test ends. It fails the test (never skips it) when the lab cannot start.
func StartCluster(t testing.TB, name string) (kubeconfig, context string) {
	t.Helper()
	c, err := Start(name)
	if err != nil {
		t.Fatalf("labtest: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("labtest: %v", err)
		}
	})
	t.Logf("labtest: cluster %s started in %s", name, c.Started.Round(time.Millisecond))
	return c.Kubeconfig, c.Context
}

// BinDir is the lab bin dir: KEELSON_LAB_BIN, or <repo root>/.cache/lab/bin.
func BinDir() (string, error) {
	if dir := os.Getenv("KEELSON_LAB_BIN"); dir != "" {
		return filepath.Abs(dir)
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, ".cache", "lab", "bin"), nil
}

// Start creates the cluster named name in a fresh temporary work dir, so
// that tests running at the same time (other packages, other engineers)
// never share state or names. For TestMain, where there is no testing.TB;
// call Stop when done.
func Start(name string) (*Cluster, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, b := range Binaries {
		if fi, err := os.Stat(filepath.Join(bin, b)); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("lab binaries missing in %s: %s; run `make lab-build` (infra/lab/build.sh) first",
			bin, strings.Join(missing, ", "))
	}

	tmp, err := os.MkdirTemp("", "keelson-lab-"+name+"-")
	if err != nil {
		return nil, fmt.Errorf("start cluster %s: %w", name, err)
	}
	c := &Cluster{
		Name:       name,
		Kubeconfig: filepath.Join(tmp, "kubeconfig"),
		Context:    "kwok-" + name,
		bin:        bin,
		workdir:    filepath.Join(tmp, "kwok"),
		tmp:        tmp,
	}

	config, err := writePortsConfig(tmp)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("start cluster %s: %w", name, err)
	}

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_, err = c.kwokctl(ctx, "create", "cluster",
		"--config", config,
		"--name", name,
		"--runtime", "binary",
		"--etcd-binary", filepath.Join(bin, "etcd"),
		"--kube-apiserver-binary", filepath.Join(bin, "kube-apiserver"),
		"--kube-controller-manager-binary", filepath.Join(bin, "kube-controller-manager"),
		"--kube-scheduler-binary", filepath.Join(bin, "kube-scheduler"),
		"--kwok-controller-binary", filepath.Join(bin, "kwok"),
		"--kubeconfig", c.Kubeconfig,
		// Without a wait, the first request of a test can race the API
		// server's start.
		"--wait", "3m",
	)
	if err != nil {
		// A half-created cluster still has processes to stop.
		return nil, errors.Join(fmt.Errorf("create cluster %s: %w", name, err), c.Stop())
	}
	if _, err := c.kwokctl(ctx, "scale", "node", "--name", name, "--replicas", "2"); err != nil {
		return nil, errors.Join(fmt.Errorf("scale nodes of cluster %s: %w", name, err), c.Stop())
	}
	c.Started = time.Since(start)
	return c, nil
}

// Stop deletes the cluster (its processes) and its work dir.
func (c *Cluster) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := c.kwokctl(ctx, "delete", "cluster", "--name", c.Name, "--kubeconfig", c.Kubeconfig)
	if err != nil {
		// Keep the work dir: its logs and pid files say what is still running.
		return fmt.Errorf("delete cluster %s (work dir %s kept): %w", c.Name, c.tmp, err)
	}
	if err := os.RemoveAll(c.tmp); err != nil {
		return fmt.Errorf("delete cluster %s: %w", c.Name, err)
	}
	return nil
}

// kwokctl runs kwokctl with the cluster's own work dir and returns its
// output; the error carries the output, which is where kwokctl says why.
func (c *Cluster) kwokctl(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, "kwokctl"), args...)
	cmd.Env = append(os.Environ(),
		"KWOK_WORKDIR="+c.workdir,
		// kwokctl looks for the other binaries on PATH for some components.
		"PATH="+c.bin+string(os.PathListSeparator)+os.Getenv("PATH"),
	)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("kwokctl %s: %w\n%s", strings.Join(args, " "), err, tail(out.String(), 4000))
	}
	return out.Bytes(), nil
}

// writePortsConfig writes a kwokctl configuration that gives every
// component a port chosen by the kernel. Left to itself, kwokctl picks ports
// counting down from 32767 and checks them one by one, so two clusters
// created at the same moment (parallel test packages, other engineers) pick
// the same ports and one never serves. Ephemeral ports (32768 and up on
// Linux) never meet kwokctl's own range.
func writePortsConfig(dir string) (string, error) {
	names := []string{"etcdPeerPort", "etcdPort", "kubeApiserverPort", "kwokControllerPort",
		"kubeControllerManagerPort", "kubeSchedulerPort"}
	var b strings.Builder
	b.WriteString("apiVersion: config.kwok.x-k8s.io/v1alpha1\nkind: KwokctlConfiguration\noptions:\n")
	// Hold every listener until all ports are chosen, so they differ.
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for _, n := range names {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", fmt.Errorf("choose a port for %s: %w", n, err)
		}
		listeners = append(listeners, l)
		fmt.Fprintf(&b, "  %s: %d\n", n, l.Addr().(*net.TCPAddr).Port)
	}
	path := filepath.Join(dir, "kwokctl.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return "", err
	}
	return path, nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// repoRoot walks up from the working directory (a package dir under go
// test) to the module's go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(data, []byte("module github.com/keelson-dev/keelson\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("repo root (go.mod of github.com/keelson-dev/keelson) not found above the working directory; set KEELSON_LAB_BIN")
		}
		dir = parent
	}
}
