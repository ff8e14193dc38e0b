package terraform

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/keelson-dev/keelson/activities/artifacts"
	"github.com/keelson-dev/keelson/internal/labtest"
)

// TestS3BackendSharesStateBetweenWorkers is two workers with nothing on
// disk in common and one S3 store (moto): a plan made by one is applied by
// the other, the state lands in the bucket under the stack's key and in
// neither working copy, and the first worker's next plan sees it.
func TestS3BackendSharesStateBetweenWorkers(t *testing.T) {
	endpoint := labtest.StartMoto(t)
	creds := map[string]string{"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
	for k, v := range creds {
		t.Setenv(k, v)
	}
	ctx := context.Background()
	store, err := artifacts.OpenContext(ctx, "s3://keelson-test/shared?endpoint="+endpoint+"&region=us-east-1")
	require.NoError(t, err)
	s3s := store.(*artifacts.S3)
	_, err = s3s.Client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("keelson-test")})
	require.NoError(t, err)
	loc := s3s.Location()
	backend := &S3Backend{Bucket: loc.Bucket, Prefix: loc.Prefix, Region: loc.Region, Endpoint: loc.Endpoint, PathStyle: loc.PathStyle}

	one, two := newFixture(t), newFixture(t)
	for _, f := range []*fixture{one, two} {
		f.a.Artifacts, f.a.Backend, f.a.Env = store, backend, creds
	}
	st := demoStack(t, "1.0.0")
	plan := one.mustPlan(st)
	require.True(t, plan.Summary.HasChanges(), "a first plan creates the stack")
	two.mustApply(st, plan.PlanKey)

	key := backend.Key(st)
	require.Equal(t, "shared/terraform/web/eu-west/terraform.tfstate", key)
	_, err = s3s.Client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(loc.Bucket), Key: aws.String(key)})
	require.NoError(t, err, "the state is in the bucket")
	_, err = s3s.Client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(loc.Bucket), Key: aws.String(key + ".tflock")})
	require.Error(t, err, "the lock file is gone once the apply finished")
	for _, f := range []*fixture{one, two} {
		_, err := os.Stat(filepath.Join(f.workCopy(st), "terraform.tfstate"))
		require.ErrorIs(t, err, os.ErrNotExist, "no local state in %s", f.workCopy(st))
	}

	again := one.mustPlan(st)
	require.False(t, again.Summary.HasChanges(), "worker one sees worker two's apply: %+v", again.Summary)
}
