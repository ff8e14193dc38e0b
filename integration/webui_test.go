package integration

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keelson-dev/keelson/workflows"
)

// TestWebUI opens the lab's Temporal Web UI in a real browser (headless
// Chromium driven by playwright-core: integration/webui/check.mjs) and
// checks what an on-call engineer sees: a release waiting at its gate (the
// summary, the details table with every region's row in view, the gate's
// timer summary), a rolled-back release marked Failed in the workflow list,
// and a succeeded one marked Completed. The lab's payloads are encrypted, so
// the summary and details it reads are decoded by the worker's codec
// endpoint, called by the UI (make up's --ui-codec-endpoint). The screenshots of every page go to
// $KEELSON_TEST_OUTPUT/webui (.cache/test-output/webui by default).
func TestWebUI(t *testing.T) {
	l := newLab(t)
	dir := filepath.Join(l.root, "integration", "webui")
	chromium := envOr("KEELSON_CHROMIUM", "/usr/bin/chromium")
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("Chromium is missing (%v): run `make lab-build`, which installs Debian's chromium package", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not on PATH: run `make lab-build`, which installs Debian's nodejs package")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core", "package.json")); err != nil {
		t.Fatalf("playwright-core is not installed in %s: run `make lab-build` (npm ci there)", dir)
	}
	out := filepath.Join(envOr("KEELSON_TEST_OUTPUT", filepath.Join(l.root, ".cache", "test-output")), "webui")
	if err := os.RemoveAll(out); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}

	// Three applications, without Terraform, so the three releases go at
	// once: one stops at the demo's gate, one succeeds, one ships a good
	// version and then a bad one that never becomes ready and rolls back.
	noTerraform := func(doc map[string]any) { delete(doc, "terraform") }
	gateApp, okApp, badApp := l.appName(t, "itwebgate"), l.appName(t, "itwebok"), l.appName(t, "itwebbad")
	gateFile := l.releaseFile(t, gateApp, noTerraform)
	okFile := l.releaseFile(t, okApp, func(doc map[string]any) {
		noTerraform(doc)
		noGate("2s")(doc)
	})
	badFile := l.releaseFile(t, badApp, func(doc map[string]any) {
		noTerraform(doc)
		noGate("2s")(doc)
		doc["readiness"] = map[string]any{"timeout": "15s"}
	})
	gateVersion, good := runVersion(1), runVersion(1)
	gateID := l.start(t, gateFile, gateVersion)
	// The release at the gate is aborted at the end, and its end awaited,
	// before its namespaces go.
	t.Cleanup(func() {
		out, code := l.keelson(t, "abort", gateID, "--user", "oncall", "--reason", "TestWebUI is done with it")
		if code != 0 {
			t.Errorf("abort %s: exit %d\n%s", gateID, code, out)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if res, err := l.ctl.Result(ctx, gateID); err != nil {
			t.Errorf("result of the aborted %s: %v", gateID, err)
		} else if res.Phase != workflows.PhaseAborted {
			t.Errorf("%s after the abort: %s, want aborted", gateID, res.Phase)
		}
	})
	okID := l.start(t, okFile, runVersion(1))
	goodID := l.start(t, badFile, good)

	if res := l.result(t, goodID, 4*time.Minute); res.Phase != workflows.PhaseSucceeded {
		t.Fatalf("the good version of %s: %s", badApp, writeJSON(res))
	}
	badID := l.start(t, badFile, runVersion(2)+"-unready")
	if res := l.result(t, okID, 4*time.Minute); res.Phase != workflows.PhaseSucceeded {
		t.Fatalf("the release that should succeed: %s", writeJSON(res))
	}
	if res := l.result(t, badID, 4*time.Minute); res.Phase != workflows.PhaseRolledBack {
		t.Fatalf("the bad version: want rolled-back, got %s", writeJSON(res))
	}
	l.waitPhase(t, gateID, workflows.PhaseAwaitGate, 3*time.Minute)
	// The lab encrypts payloads: what the UI shows below it decoded through
	// the worker's codec endpoint (infra/codecproxy, docs/codec.md).
	d, err := l.tc.DescribeWorkflowExecution(context.Background(), gateID, "")
	if err != nil {
		t.Fatal(err)
	}
	if enc := string(d.GetExecutionConfig().GetUserMetadata().GetSummary().GetMetadata()["encoding"]); enc != "binary/encrypted" {
		t.Fatalf("the stored summary of %s is %q, want binary/encrypted: the lab's worker and client must encrypt (KEELSON_CODEC_KEYS)", gateID, enc)
	}

	begin := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "check.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		// The lab's Web UI (infra/lab/lib.sh: TEMPORAL_UI_PORT).
		"KEELSON_WEBUI_URL=http://localhost:"+envOr("KEELSON_TEMPORAL_UI_PORT", "8233"),
		"KEELSON_WEBUI_NAMESPACE=default",
		"KEELSON_WEBUI_GATE_ID="+gateID,
		"KEELSON_WEBUI_GATE_APP="+gateApp,
		"KEELSON_WEBUI_GATE_VERSION="+gateVersion,
		"KEELSON_WEBUI_GATE_NAME=promote-to-rest",
		"KEELSON_WEBUI_GATE_ROWS=canary us-east-1,rest eu-west-1,rest ap-southeast-1",
		"KEELSON_WEBUI_ROLLEDBACK_ID="+badID,
		"KEELSON_WEBUI_SUCCEEDED_ID="+okID,
		"KEELSON_WEBUI_OUT="+out,
		"KEELSON_CHROMIUM="+chromium,
	)
	// The script's lines go to the test's log as they come; its failed
	// checks are the test's failure.
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	var (
		mu    sync.Mutex
		fails []string
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			line := sc.Text()
			t.Log("webui: " + line)
			if strings.HasPrefix(line, "FAIL: ") {
				mu.Lock()
				fails = append(fails, strings.TrimPrefix(line, "FAIL: "))
				mu.Unlock()
			}
		}
	}()
	err = cmd.Run()
	pw.Close()
	<-done
	t.Logf("the browser's checks took %s", time.Since(begin).Round(time.Millisecond))
	shots, _ := filepath.Glob(filepath.Join(out, "*.png"))
	t.Logf("screenshots in %s: %d", out, len(shots))
	for _, s := range shots {
		t.Logf("  %s", s)
	}
	if err != nil {
		if len(fails) == 0 {
			t.Fatalf("node check.mjs: %v (its output is above)", err)
		}
		t.Fatalf("what a person sees in the Web UI (%d check(s) failed; screenshots in %s):\n  - %s", len(fails), out, strings.Join(fails, "\n  - "))
	}
}
