package artifacts

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/keelson-dev/keelson/internal/labtest"
)

// The S3 store is tested against a real S3 API, moto's: its answers for
// missing keys, multipart uploads and checksums are what the store must
// understand. Set KEELSON_S3_TEST_ENDPOINT to use a server already running.

func TestS3(t *testing.T) {
	isolateAWSEnv(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	endpoint := s3TestEndpoint(t)
	ctx := context.Background()

	t.Run("PutGetUnderPrefix", func(t *testing.T) {
		s, raw := newTestS3(t, endpoint, "releases/keelson")
		require.NoError(t, s.Put(ctx, "web/1.0.0/eu-west/plan.json", strings.NewReader(`{"a":1}`)))
		require.NoError(t, s.Put(ctx, "web/1.0.0/eu-west/plan.bin", strings.NewReader("binary")))
		require.Equal(t, `{"a":1}`, get(t, s, "web/1.0.0/eu-west/plan.json"))
		require.Equal(t, "binary", get(t, s, "web/1.0.0/eu-west/plan.bin"))
		require.Equal(t, []string{
			"releases/keelson/web/1.0.0/eu-west/plan.bin",
			"releases/keelson/web/1.0.0/eu-west/plan.json",
		}, listKeys(t, raw, s.Bucket), "objects are at bucket/prefix/key")
	})

	t.Run("BucketRoot", func(t *testing.T) {
		s, raw := newTestS3(t, endpoint, "")
		require.NoError(t, s.Put(ctx, "a/b", strings.NewReader("x")))
		require.Equal(t, "x", get(t, s, "a/b"))
		require.Equal(t, []string{"a/b"}, listKeys(t, raw, s.Bucket))
	})

	t.Run("Overwrite", func(t *testing.T) {
		s, raw := newTestS3(t, endpoint, "p")
		require.NoError(t, s.Put(ctx, "k/blob", strings.NewReader("first, longer version")))
		require.NoError(t, s.Put(ctx, "k/blob", strings.NewReader("second")))
		require.Equal(t, "second", get(t, s, "k/blob"))
		require.Equal(t, []string{"p/k/blob"}, listKeys(t, raw, s.Bucket))
	})

	t.Run("Missing", func(t *testing.T) {
		s, _ := newTestS3(t, endpoint, "p")
		_, err := s.Get(ctx, "web/none")
		require.ErrorIs(t, err, ErrNotFound)
		_, err = s.Stat(ctx, "web/none")
		require.ErrorIs(t, err, ErrNotFound)

		require.NoError(t, s.Put(ctx, "web/dir/blob", strings.NewReader("x")))
		_, err = s.Get(ctx, "web/dir")
		require.ErrorIs(t, err, ErrNotFound, "a folder is not a blob")
		_, err = s.Stat(ctx, "web/dir")
		require.ErrorIs(t, err, ErrNotFound, "a folder is not a blob")

		// A missing bucket is a configuration error, not a missing blob.
		gone := &S3{Client: s.Client, Bucket: s.Bucket + "-gone", Prefix: "p"}
		_, err = gone.Get(ctx, "web/dir/blob")
		require.Error(t, err)
		require.NotErrorIs(t, err, ErrNotFound)
	})

	t.Run("BadKeys", func(t *testing.T) {
		s, raw := newTestS3(t, endpoint, "p")
		for _, key := range []string{"", ".", "..", "../escape", "a/../../escape", "/etc/passwd", "a//b", "a/./b", "a/", `a\..\b`} {
			require.ErrorIs(t, s.Put(ctx, key, strings.NewReader("x")), ErrBadKey, "put %q", key)
			_, err := s.Get(ctx, key)
			require.ErrorIs(t, err, ErrBadKey, "get %q", key)
			_, err = s.Stat(ctx, key)
			require.ErrorIs(t, err, ErrBadKey, "stat %q", key)
		}
		require.Empty(t, listKeys(t, raw, s.Bucket), "nothing was written")
	})

	t.Run("Stat", func(t *testing.T) {
		s, _ := newTestS3(t, endpoint, "p")
		require.NoError(t, s.Put(ctx, "k/blob", strings.NewReader("12345")))
		require.NoError(t, s.Put(ctx, "k/empty", strings.NewReader("")))
		var st Statter = s
		info, err := st.Stat(ctx, "k/blob")
		require.NoError(t, err)
		require.Equal(t, Info{Size: 5}, info)
		info, err = st.Stat(ctx, "k/empty")
		require.NoError(t, err)
		require.Equal(t, Info{Size: 0}, info)
		require.Equal(t, "", get(t, s, "k/empty"))
	})

	// 8 MiB from a reader that cannot seek or tell its length: once in a
	// single PutObject (the default threshold is 16 MiB) and once as a
	// multipart upload of 5 MiB parts.
	t.Run("LargeNonSeekable", func(t *testing.T) {
		s, raw := newTestS3(t, endpoint, "big")
		data := make([]byte, 8<<20)
		_, err := rand.Read(data)
		require.NoError(t, err)
		want := sha256.Sum256(data)

		require.NoError(t, s.Put(ctx, "single", onlyReader{bytes.NewReader(data)}))
		multi := *s
		multi.partSize = 5 << 20
		require.NoError(t, multi.Put(ctx, "multipart", onlyReader{bytes.NewReader(data)}))

		for _, key := range []string{"single", "multipart"} {
			rc, err := s.Get(ctx, key)
			require.NoError(t, err)
			h := sha256.New()
			n, err := io.Copy(h, rc)
			require.NoError(t, err)
			require.NoError(t, rc.Close())
			require.Equal(t, int64(len(data)), n, key)
			require.Equal(t, hex.EncodeToString(want[:]), hex.EncodeToString(h.Sum(nil)), key)
			info, err := s.Stat(ctx, key)
			require.NoError(t, err)
			require.Equal(t, int64(len(data)), info.Size, key)
		}
		require.Equal(t, []string{"big/multipart", "big/single"}, listKeys(t, raw, s.Bucket))
		// The ETag of an object uploaded in parts ends in -<parts>.
		head, err := raw.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String("big/multipart")})
		require.NoError(t, err)
		require.True(t, strings.HasSuffix(aws.ToString(head.ETag), `-2"`), "ETag %s", aws.ToString(head.ETag))
		head, err = raw.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String("big/single")})
		require.NoError(t, err)
		require.NotContains(t, aws.ToString(head.ETag), "-", "ETag %s", aws.ToString(head.ETag))
	})

	// A Put whose reader fails half-way, or whose activity is cancelled,
	// leaves the earlier version in place and no multipart upload behind.
	t.Run("FailedPutKeepsEarlierVersion", func(t *testing.T) {
		s, raw := newTestS3(t, endpoint, "p")
		require.NoError(t, s.Put(ctx, "k/blob", strings.NewReader("complete")))
		multi := *s
		multi.partSize = 5 << 20
		boom := errors.New("connection reset")

		err := s.Put(ctx, "k/blob", io.MultiReader(strings.NewReader("half"), errReader{boom}))
		require.ErrorIs(t, err, boom)
		// Fails after a first part has gone up.
		err = multi.Put(ctx, "k/blob", io.MultiReader(bytes.NewReader(make([]byte, 6<<20)), errReader{boom}))
		require.ErrorIs(t, err, boom)
		var mpu transfermanager.MultipartUploadError
		require.ErrorAs(t, err, &mpu, "the upload had begun; it must be aborted")
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		err = s.Put(cctx, "k/blob", strings.NewReader("cancelled"))
		require.ErrorIs(t, err, context.Canceled)

		require.Equal(t, "complete", get(t, s, "k/blob"))
		require.Equal(t, []string{"p/k/blob"}, listKeys(t, raw, s.Bucket))
		ups, err := raw.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(s.Bucket)})
		require.NoError(t, err)
		require.Empty(t, ups.Uploads, "failed multipart uploads are aborted")
	})

	// A seekable body (a file) goes through the same way.
	t.Run("File", func(t *testing.T) {
		s, _ := newTestS3(t, endpoint, "p")
		path := filepath.Join(t.TempDir(), "plan")
		require.NoError(t, os.WriteFile(path, []byte("from a file"), 0o644))
		f, err := os.Open(path)
		require.NoError(t, err)
		defer f.Close()
		require.NoError(t, s.Put(ctx, "k/file", f))
		require.Equal(t, "from a file", get(t, s, "k/file"))
	})

	t.Run("Describe", func(t *testing.T) {
		s, _ := newTestS3(t, endpoint, "releases")
		require.Equal(t, fmt.Sprintf("s3://%s/releases (region us-east-1, endpoint %s, path-style)", s.Bucket, endpoint), Describe(s))
	})
}

func TestLocalStat(t *testing.T) {
	s, err := NewLocal(t.TempDir())
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, s.Put(ctx, "k/blob", strings.NewReader("12345")))
	info, err := s.Stat(ctx, "k/blob")
	require.NoError(t, err)
	require.Equal(t, Info{Size: 5}, info)
	_, err = s.Stat(ctx, "k/none")
	require.ErrorIs(t, err, ErrNotFound)
	_, err = s.Stat(ctx, "k")
	require.ErrorIs(t, err, ErrNotFound, "a folder is not a blob")
	_, err = s.Stat(ctx, "../k")
	require.ErrorIs(t, err, ErrBadKey)
	require.Equal(t, "file://"+filepath.ToSlash(s.Dir), Describe(s))
}

// Open's reading of s3 URLs; nothing here talks to S3.
func TestOpenS3URLs(t *testing.T) {
	isolateAWSEnv(t)

	bad := []struct{ url, want string }{
		{"s3://", "no bucket"},
		{"s3:///prefix", "no bucket"},
		{"s3:bucket/prefix", "want s3://bucket/prefix"},
		{"s3://bucket:9000/prefix", "no port"},
		{"s3://buc!ket/prefix", "bucket name"},
		{"s3://bucket//prefix", "prefix"},
		{"s3://bucket/a/../b", "prefix"},
		{"s3://bucket/a/./b", "prefix"},
		{"s3://bucket/prefix#frag", "fragment"},
		{"s3://bucket/prefix?endpoint=127.0.0.1:5055", "parameter endpoint"},
		{"s3://bucket/prefix?endpoint=ftp://host", "parameter endpoint"},
		{"s3://bucket/prefix?endpoint=http://", "parameter endpoint"},
		{"s3://bucket/prefix?endpoint=http://h:1?x=1", "parameter endpoint"},
		{"s3://bucket/prefix?region=", "parameter region"},
		{"s3://bucket/prefix?region=US_EAST", "parameter region"},
		{"s3://bucket/prefix?pathStyle=yes", "parameter pathStyle"},
		{"s3://bucket/prefix?pathStyle=1", "parameter pathStyle"},
		{"s3://bucket/prefix?pathstyle=true", `unknown parameter "pathstyle"`},
		{"s3://bucket/prefix?bucket=other", `unknown parameter "bucket"`},
		{"s3://bucket/prefix?region=us-east-1&region=eu-west-1", "region is given 2 times"},
		{"s3://bucket/prefix?region=%zz", "query"},
	}
	for _, tc := range bad {
		_, err := Open(tc.url)
		require.Error(t, err, tc.url)
		require.Contains(t, err.Error(), tc.url, "the error names the URL")
		require.Contains(t, err.Error(), tc.want, tc.url)
	}

	// Credentials in the URL are refused, and not repeated in the error.
	for _, u := range []string{
		"s3://AKIAEXAMPLE:s3cr3t@bucket/prefix",
		"s3://AKIAEXAMPLE@bucket/prefix",
		"s3://AKIAEXAMPLE:s3cr3t@bucket/prefix?endpoint=http://127.0.0.1:5055",
		"s3://AKIAEXAMPLE:s3cr3t@bucket:bad/prefix",
	} {
		_, err := Open(u)
		require.Error(t, err, u)
		require.NotContains(t, err.Error(), "AKIAEXAMPLE", u)
		require.NotContains(t, err.Error(), "s3cr3t", u)
		require.Contains(t, err.Error(), "REDACTED@bucket", u)
	}
	_, err := Open("s3://AKIAEXAMPLE:s3cr3t@bucket/prefix")
	require.ErrorContains(t, err, "credentials do not belong in the URL")

	good := []struct {
		url, env, bucket, prefix, region, endpoint string
		pathStyle                                  bool
	}{
		{url: "s3://bucket", bucket: "bucket", region: "us-east-1"},
		{url: "s3://bucket/", bucket: "bucket", region: "us-east-1"},
		{url: "s3://bucket/releases/", bucket: "bucket", prefix: "releases", region: "us-east-1"},
		{url: "s3://my.bucket-1/a/b/c", bucket: "my.bucket-1", prefix: "a/b/c", region: "us-east-1"},
		{url: "s3://bucket/p", env: "eu-central-1", bucket: "bucket", prefix: "p", region: "eu-central-1"},
		{url: "s3://bucket/p?region=eu-west-1", env: "eu-central-1", bucket: "bucket", prefix: "p", region: "eu-west-1"},
		{url: "s3://bucket/p?endpoint=http://127.0.0.1:5055", bucket: "bucket", prefix: "p", region: "us-east-1", endpoint: "http://127.0.0.1:5055", pathStyle: true},
		{url: "s3://bucket/p?endpoint=https://minio.example:9000&pathStyle=false&region=eu-west-3", bucket: "bucket", prefix: "p", region: "eu-west-3", endpoint: "https://minio.example:9000"},
		{url: "s3://bucket/p?pathStyle=true", bucket: "bucket", prefix: "p", region: "us-east-1", pathStyle: true},
	}
	for _, tc := range good {
		if tc.env != "" {
			t.Setenv("AWS_REGION", tc.env)
		} else {
			unsetenv(t, "AWS_REGION")
		}
		st, err := Open(tc.url)
		require.NoError(t, err, tc.url)
		s, ok := st.(*S3)
		require.True(t, ok, "%s: %T", tc.url, st)
		require.Equal(t, tc.bucket, s.Bucket, tc.url)
		require.Equal(t, tc.prefix, s.Prefix, tc.url)
		o := s.Client.Options()
		require.Equal(t, tc.region, o.Region, tc.url)
		require.Equal(t, tc.endpoint, aws.ToString(o.BaseEndpoint), tc.url)
		require.Equal(t, tc.pathStyle, o.UsePathStyle, tc.url)
	}
	unsetenv(t, "AWS_REGION")

	// An endpoint from the environment counts as a custom endpoint too.
	t.Setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:5056")
	st, err := OpenContext(context.Background(), "s3://bucket/p")
	require.NoError(t, err)
	require.Equal(t, "s3://bucket/p (region us-east-1, endpoint http://127.0.0.1:5056, path-style)", Describe(st))
	unsetenv(t, "AWS_ENDPOINT_URL_S3")
	st, err = Open("s3://bucket/p")
	require.NoError(t, err)
	require.Equal(t, "s3://bucket/p (region us-east-1)", Describe(st))

	require.Equal(t, "none", Describe(nil))
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"s3://bucket/p":                   "s3://bucket/p",
		"s3://k:s@bucket/p":               "s3://REDACTED@bucket/p",
		"s3://k@bucket":                   "s3://REDACTED@bucket",
		"s3://bucket/p@x":                 "s3://bucket/p@x",
		"s3://bucket?endpoint=http://a@b": "s3://bucket?endpoint=http://a@b",
		"http://u:p@h:1/x":                "http://REDACTED@h:1/x",
		"/no/scheme@x":                    "/no/scheme@x",
	} {
		require.Equal(t, want, redactURL(in), in)
	}
}

// newTestS3 opens a store through Open in a fresh bucket, and returns it
// with a plain client on the same server for looking behind it.
func newTestS3(t *testing.T, endpoint, prefix string) (*S3, *s3.Client) {
	t.Helper()
	var b [6]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	bucket := "keelson-test-" + hex.EncodeToString(b[:])

	st, err := Open(fmt.Sprintf("s3://%s/%s?endpoint=%s&region=us-east-1", bucket, prefix, endpoint))
	require.NoError(t, err)
	s := st.(*S3)
	_, err = s.Client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	require.NoError(t, err, "create bucket %s at %s", bucket, endpoint)
	return s, s.Client
}

func listKeys(t *testing.T, c *s3.Client, bucket string) []string {
	t.Helper()
	keys := []string{}
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		require.NoError(t, err)
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys
}

// onlyReader hides every method but Read: a pipe or an HTTP body.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// isolateAWSEnv keeps the developer's AWS setup (profiles, region, the
// lab's AWS_ENDPOINT_URL) out of the test.
func isolateAWSEnv(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	for _, k := range []string{
		"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION",
		"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN",
		"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
		"AWS_REQUEST_CHECKSUM_CALCULATION", "AWS_RESPONSE_CHECKSUM_VALIDATION",
	} {
		unsetenv(t, k)
	}
}

// unsetenv removes k for the rest of the test; t.Setenv first so that the
// old value comes back afterwards.
func unsetenv(t *testing.T, k string) {
	t.Setenv(k, "")
	os.Unsetenv(k)
}

// s3TestEndpoint returns KEELSON_S3_TEST_ENDPOINT, or starts a moto_server
// of the test's own (labtest.StartMoto, which fails the test rather than
// skipping it when moto is missing: a skipped test would let the S3 store
// go untested unnoticed).
func s3TestEndpoint(t *testing.T) string {
	t.Helper()
	if ep := os.Getenv("KEELSON_S3_TEST_ENDPOINT"); ep != "" {
		return ep
	}
	return labtest.StartMoto(t)
}
