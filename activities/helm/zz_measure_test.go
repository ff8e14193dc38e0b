package helm

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

func TestZZMeasureConfigWarmup(t *testing.T) {
	acts := &Activities{Kubeconfig: kubeconfig}
	var s0, s1 time.Duration
	for i := 0; i < 6; i++ {
		ns := fmt.Sprintf("warm-%d", i)
		h := newHarness(t, ns)
		h.acts = acts
		h.env.RegisterActivity(acts)
		in := h.upgradeInput("1.0.0")
		start := time.Now()
		if _, err := acts.Upgrade(t.Context(), in); err != nil {
			t.Fatal(err)
		}
		cold := time.Since(start)
		in.Target.Release = "b"
		start = time.Now()
		if _, err := acts.Upgrade(t.Context(), in); err != nil {
			t.Fatal(err)
		}
		warm := time.Since(start)
		cfg, _ := acts.config(in.Target)
		rel, _ := cfg.Releases.Last("b")
		start = time.Now()
		if _, err := cfg.KubeClient.Build(bytes.NewBufferString(rel.Manifest), false); err != nil {
			t.Fatal(err)
		}
		build := time.Since(start)
		t.Logf("ns %s: install in fresh config %s, in warm config %s, warm build %s", ns, cold, warm, build)
		if i > 0 {
			s0 += cold
			s1 += warm
		}
	}
	t.Logf("mean cold %s warm %s", s0/5, s1/5)
}
