package labtest

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func TestStartClusterServesTwoReadyNodes(t *testing.T) {
	kubeconfig, kubeContext := StartCluster(t, "labtest")

	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig},
		&clientcmd.ConfigOverrides{CurrentContext: kubeContext},
	).ClientConfig()
	if err != nil {
		t.Fatalf("kubeconfig %s context %s: %v", kubeconfig, kubeContext, err)
	}
	// The API server listens on the port labtest chose, not on one of
	// kwokctl's own (which collide between clusters created together).
	conf, err := os.ReadFile(filepath.Join(filepath.Dir(kubeconfig), "kwokctl.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(rc.Host)
	if err != nil {
		t.Fatal(err)
	}
	if want := "kubeApiserverPort: " + u.Port() + "\n"; !strings.Contains(string(conf), want) {
		t.Fatalf("API server at %s, but kwokctl was configured with\n%s", rc.Host, conf)
	}

	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	// kwok marks the nodes Ready shortly after they are created.
	deadline := time.Now().Add(time.Minute)
	for {
		nodes, err := cs.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
		ready := 0
		if err == nil {
			for _, n := range nodes.Items {
				for _, c := range n.Status.Conditions {
					if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
						ready++
					}
				}
			}
		}
		if ready == 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("want 2 ready nodes, have %d (list error: %v)", ready, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func TestStartSaysHowToBuildMissingBinaries(t *testing.T) {
	t.Setenv("KEELSON_LAB_BIN", t.TempDir())
	_, err := Start("none")
	if err == nil || !strings.Contains(err.Error(), "make lab-build") || !strings.Contains(err.Error(), "kube-apiserver") {
		t.Fatalf("want an error naming the missing binaries and `make lab-build`, got %v", err)
	}
}
