package helm

import (
	"fmt"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/resource"
	"k8s.io/client-go/openapi/cached"
	"k8s.io/kubectl/pkg/util/openapi"
	"k8s.io/kubectl/pkg/validation"
)

// Helm validates every object of every manifest it builds (install,
// upgrade, rollback) against the cluster: kubectl's factory makes a new
// validator for each Build, whose first question for each kind, whether
// the API server supports field validation, parses that group version's
// OpenAPI v3 document from scratch (core/v1's is megabytes of JSON). With
// a hundred releases at once that parsing was half of the worker's CPU
// (make bench, pprof) and what bounded how fast releases were deployed.
//
// The context's factory keeps one validator per directive instead, whose
// answers to that question are kept for the worker's life: a kind's
// support does not change while the API server runs, and a server upgrade
// only adds support. Unlike kubectl's own cache, which a short-lived CLI
// can afford, a failure to ask (a timeout, an API server restarting) is
// not kept: the next Build asks again instead of failing every upgrade of
// the context until the worker restarts.

// Validator returns the context's validator for a field validation
// directive, made on first use.
func (f *contextFactory) Validator(directive string) (validation.Schema, error) {
	if directive == metav1.FieldValidationIgnore {
		return validation.NullSchema{}, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if s, ok := f.validators[directive]; ok {
		return s, nil
	}
	s, err := f.newValidator(directive)
	if err != nil {
		return nil, err
	}
	if f.validators == nil {
		f.validators = map[string]validation.Schema{}
	}
	f.validators[directive] = s
	return s, nil
}

// newValidator is kubectl's factory's Validator with supportCache in
// place of its caching verifier.
func (f *contextFactory) newValidator(directive string) (validation.Schema, error) {
	getter, ok := f.Factory.(openapi.OpenAPIResourcesGetter)
	if !ok {
		return nil, fmt.Errorf("helm validator: the kube factory %T reads no OpenAPI schema", f.Factory)
	}
	dynamic, err := f.DynamicClient()
	if err != nil {
		return nil, fmt.Errorf("helm validator: %w", err)
	}
	disc := f.discovery
	param := resource.QueryParamFieldValidation
	primary := &supportCache{next: resource.NewQueryParamVerifierV3(dynamic, cached.NewClient(disc.OpenAPIV3()), param)}
	secondary := resource.NewQueryParamVerifier(dynamic, disc, param)
	s := validation.ConjunctiveSchema{validation.NewSchemaValidation(getter), validation.NoDoubleKeySchema{}}
	return validation.NewParamVerifyingSchema(s, resource.NewFallbackQueryParamVerifier(primary, secondary), directive), nil
}

// supportCache keeps a verifier's answers per kind: supported (nil) or not
// supported (a ParamUnsupportedError). Any other error is returned and
// asked again next time.
type supportCache struct {
	next resource.Verifier
	mu   sync.RWMutex
	m    map[schema.GroupVersionKind]error
}

func (c *supportCache) HasSupport(gvk schema.GroupVersionKind) error {
	c.mu.RLock()
	err, ok := c.m[gvk]
	c.mu.RUnlock()
	if ok {
		return err
	}
	err = c.next.HasSupport(gvk)
	if err == nil || resource.IsParamUnsupportedError(err) {
		c.mu.Lock()
		if c.m == nil {
			c.m = map[schema.GroupVersionKind]error{}
		}
		c.m[gvk] = err
		c.mu.Unlock()
	}
	return err
}
