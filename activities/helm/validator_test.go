package helm

import (
	"errors"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/resource"
)

type countingVerifier struct {
	calls map[schema.GroupVersionKind]int
	err   map[schema.GroupVersionKind]error
}

func (v *countingVerifier) HasSupport(gvk schema.GroupVersionKind) error {
	v.calls[gvk]++
	return v.err[gvk]
}

// The support cache keeps answers, never failures to get one.
func TestSupportCacheKeepsAnswersNotFailures(t *testing.T) {
	deploy := schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	old := schema.GroupVersionKind{Group: "example.com", Version: "v1", Kind: "Old"}
	flaky := schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}
	unsupported := resource.NewParamUnsupportedError(old, resource.QueryParamFieldValidation)
	v := &countingVerifier{calls: map[schema.GroupVersionKind]int{}, err: map[schema.GroupVersionKind]error{
		old:   unsupported,
		flaky: errors.New("the server is currently unable to handle the request"),
	}}
	c := &supportCache{next: v}
	for range 3 {
		if err := c.HasSupport(deploy); err != nil {
			t.Fatalf("deployment: %v", err)
		}
		if err := c.HasSupport(old); !resource.IsParamUnsupportedError(err) {
			t.Fatalf("old kind: %v, want unsupported", err)
		}
		if err := c.HasSupport(flaky); err == nil {
			t.Fatal("a failure to ask must be returned")
		}
	}
	if v.calls[deploy] != 1 || v.calls[old] != 1 {
		t.Errorf("answers asked %d and %d times, want once each", v.calls[deploy], v.calls[old])
	}
	if v.calls[flaky] != 3 {
		t.Errorf("a failure was kept: asked %d times, want 3", v.calls[flaky])
	}
	// Once the server answers, the answer is kept.
	delete(v.err, flaky)
	for range 2 {
		if err := c.HasSupport(flaky); err != nil {
			t.Fatalf("after recovery: %v", err)
		}
	}
	if v.calls[flaky] != 4 {
		t.Errorf("asked %d times, want 4", v.calls[flaky])
	}
}
