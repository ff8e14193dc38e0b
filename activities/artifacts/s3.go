package artifacts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// S3 is a Store in an S3 bucket (or an S3-compatible server such as moto),
// for workers that share no disk: the blob with key k is the object
// Prefix/k in Bucket.
type S3 struct {
	Client *s3.Client
	Bucket string
	// Prefix is the store's folder in the bucket, without leading or
	// trailing slash; empty puts keys at the bucket's root.
	Prefix string

	// partSize replaces the upload part size and the multipart threshold
	// when set (tests: a multipart upload without a 16 MiB body).
	partSize int64
}

var _ Store = (*S3)(nil)
var _ Statter = (*S3)(nil)

// abortTimeout bounds the clean-up after a failed multipart upload. The
// abort runs on a fresh context so that an upload stopped by a cancelled
// activity still removes its parts, which S3 otherwise keeps (and bills)
// until a lifecycle rule expires them.
const abortTimeout = 30 * time.Second

// NewS3 returns a store in bucket under prefix; credentials, region and
// endpoint are the client's.
func NewS3(client *s3.Client, bucket, prefix string) (*S3, error) {
	if client == nil {
		return nil, fmt.Errorf("artifact store s3://%s: no S3 client", bucket)
	}
	if err := checkBucket(bucket); err != nil {
		return nil, fmt.Errorf("artifact store s3://%s: %w", bucket, err)
	}
	if err := checkPrefix(prefix); err != nil {
		return nil, fmt.Errorf("artifact store s3://%s/%s: %w", bucket, prefix, err)
	}
	return &S3{Client: client, Bucket: bucket, Prefix: prefix}, nil
}

func (s *S3) objectKey(key string) (string, error) {
	if err := CheckKey(key); err != nil {
		return "", err
	}
	if s.Client == nil || s.Bucket == "" {
		return "", fmt.Errorf("artifact store has no bucket")
	}
	if s.Prefix == "" {
		return key, nil
	}
	return s.Prefix + "/" + key, nil
}

// Put uploads the blob with the SDK's transfer manager rather than a plain
// PutObject. PutObject cannot send a non-seekable body of unknown length (it
// needs the length, and over plain HTTP, as with moto, a hash of the whole
// payload), and buffering the whole blob in memory or on disk first would
// bound its size by what the worker has spare. The transfer manager reads
// the body in parts of 8 MiB, a few in memory at a time, and sends one
// PutObject for a small blob or a multipart upload for a large one. Either
// way S3 shows the new object only once it is complete, so a reader sees the
// earlier version or the new one, never part of it, as with Local; a failed
// multipart upload is aborted. A reader of unknown length can fill at most
// 10,000 parts (about 78 GiB); a seekable one, such as a file, tells its
// length and gets larger parts.
func (s *S3) Put(ctx context.Context, key string, r io.Reader) error {
	obj, err := s.objectKey(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put artifact %s: %w", key, err)
	}
	body := io.Reader(ctxReader{ctx, r})
	if rs, ok := r.(io.Seeker); ok {
		body = ctxReadSeeker{ctxReader{ctx, r}, rs}
	}
	tm := transfermanager.New(s.Client, func(o *transfermanager.Options) {
		// The transfer manager's own default (a CRC32 on every request)
		// would override the client's; keep the client's, so that
		// AWS_REQUEST_CHECKSUM_CALCULATION=when_required still works for
		// S3-compatible servers that reject checksums.
		o.RequestChecksumCalculation = s.Client.Options().RequestChecksumCalculation
		o.FailTimeout = abortTimeout
		if s.partSize > 0 {
			o.PartSizeBytes = s.partSize
			o.MultipartUploadThreshold = s.partSize
		}
	})
	_, err = tm.UploadObject(ctx, &transfermanager.UploadObjectInput{
		Bucket: aws.String(s.Bucket),
		Key:    aws.String(obj),
		Body:   body,
	})
	if err != nil {
		return fmt.Errorf("put artifact %s: %w", key, err)
	}
	return nil
}

// Get streams the blob; the caller closes it. A missing key wraps
// ErrNotFound. A missing bucket does not: that is a configuration error, and
// a caller must not take it for a blob not written yet.
func (s *S3) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	obj, err := s.objectKey(key)
	if err != nil {
		return nil, err
	}
	out, err := s.Client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.Bucket),
		Key:    aws.String(obj),
	})
	if isNotFound(err) {
		return nil, fmt.Errorf("get artifact %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get artifact %s: %w", key, err)
	}
	return out.Body, nil
}

// Stat asks S3 for the blob's size (a HEAD request) without reading it. A
// missing key wraps ErrNotFound. A HEAD answer has no body to say what is
// missing, so for a store whose bucket is gone Stat reports not found too;
// Get tells the two apart.
func (s *S3) Stat(ctx context.Context, key string) (Info, error) {
	obj, err := s.objectKey(key)
	if err != nil {
		return Info{}, err
	}
	out, err := s.Client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(s.Bucket),
		Key:    aws.String(obj),
	})
	if isNotFound(err) {
		return Info{}, fmt.Errorf("stat artifact %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return Info{}, fmt.Errorf("stat artifact %s: %w", key, err)
	}
	return Info{Size: aws.ToInt64(out.ContentLength)}, nil
}

// isNotFound reports whether S3 said the object does not exist: NoSuchKey
// from GET, NotFound from HEAD. A 403 is not mapped even though S3 answers
// it for missing keys to callers without s3:ListBucket: that is a
// permissions problem to report, not an absent blob.
func isNotFound(err error) bool {
	if err == nil {
		return false
	}
	var noKey *types.NoSuchKey
	var notFound *types.NotFound
	if errors.As(err, &noKey) || errors.As(err, &notFound) {
		return true
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "NoSuchKey", "NotFound":
			return true
		}
	}
	return false
}

func (s *S3) describe() string {
	d := "s3://" + s.Bucket
	if s.Prefix != "" {
		d += "/" + s.Prefix
	}
	if s.Client == nil {
		return d
	}
	o := s.Client.Options()
	var details []string
	if o.Region != "" {
		details = append(details, "region "+o.Region)
	}
	if o.BaseEndpoint != nil {
		details = append(details, "endpoint "+redactURL(*o.BaseEndpoint))
	}
	if o.UsePathStyle {
		details = append(details, "path-style")
	}
	if len(details) > 0 {
		d += " (" + strings.Join(details, ", ") + ")"
	}
	return d
}

// ctxReadSeeker is a ctxReader that keeps the reader's Seek, so that the
// transfer manager can learn a seekable body's length.
type ctxReadSeeker struct {
	ctxReader
	io.Seeker
}

// s3Location is what an s3:// URL says.
type s3Location struct {
	bucket, prefix   string
	endpoint, region string
	pathStyle        *bool // nil: the default
}

// s3Params are the query parameters an s3:// URL may carry.
var s3Params = []string{"endpoint", "region", "pathStyle"}

// parseS3URL reads s3://bucket/prefix?endpoint=...&region=...&pathStyle=...
// strictly: a misspelt parameter silently ignored would send artifacts to
// real AWS instead of the intended server, or the other way round.
func parseS3URL(u *url.URL) (s3Location, error) {
	var loc s3Location
	if u.User != nil {
		return loc, errors.New("credentials do not belong in the URL; they come from the AWS default chain " +
			"(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an instance or pod role)")
	}
	if u.Opaque != "" {
		return loc, errors.New("want s3://bucket/prefix")
	}
	if u.Fragment != "" {
		return loc, errors.New("an s3 URL has no fragment (#...)")
	}
	if strings.Contains(u.Host, ":") {
		return loc, errors.New("a bucket has no port; give a custom server as ?endpoint=http://host:port")
	}
	if err := checkBucket(u.Host); err != nil {
		return loc, fmt.Errorf("%w; want s3://bucket/prefix", err)
	}
	loc.bucket = u.Host
	// One leading slash separates the bucket; one trailing slash is
	// tolerated since a prefix reads like a folder. Anything else must make a
	// clean prefix: "s3://b//p" is a typo, not the prefix "p".
	loc.prefix = strings.TrimSuffix(strings.TrimPrefix(u.Path, "/"), "/")
	if err := checkPrefix(loc.prefix); err != nil {
		return loc, err
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return loc, fmt.Errorf("query: %w", err)
	}
	names := make([]string, 0, len(q))
	for name := range q {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !slices.Contains(s3Params, name) {
			return loc, fmt.Errorf("unknown parameter %q; known: %s", name, strings.Join(s3Params, ", "))
		}
		if len(q[name]) != 1 {
			return loc, fmt.Errorf("parameter %s is given %d times", name, len(q[name]))
		}
		v := q[name][0]
		switch name {
		case "endpoint":
			if err := checkEndpoint(v); err != nil {
				return loc, fmt.Errorf("parameter endpoint=%q: %w", redactURL(v), err)
			}
			loc.endpoint = v
		case "region":
			if !validRegion(v) {
				return loc, fmt.Errorf("parameter region=%q: want a region name such as us-east-1", v)
			}
			loc.region = v
		case "pathStyle":
			// Only the two words: "pathStyle=1" or "=yes" may mean either
			// thing to whoever wrote them.
			switch v {
			case "true", "false":
				b := v == "true"
				loc.pathStyle = &b
			default:
				return loc, fmt.Errorf("parameter pathStyle=%q: want true or false", v)
			}
		}
	}
	return loc, nil
}

// openS3 makes the store an s3:// URL describes. Nothing is sent to S3:
// loading the configuration reads the environment and the shared files,
// and credentials are fetched on first use.
func openS3(ctx context.Context, shown string, u *url.URL) (Store, error) {
	loc, err := parseS3URL(u)
	if err != nil {
		return nil, fmt.Errorf("artifact store %q: %w", shown, err)
	}
	var opts []func(*config.LoadOptions) error
	if loc.region != "" {
		opts = append(opts, config.WithRegion(loc.region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("artifact store %q: load AWS configuration: %w", shown, err)
	}
	if cfg.Region == "" {
		// Requests are signed for a region even at a custom endpoint;
		// us-east-1 is S3's own default and what moto expects.
		cfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if loc.endpoint != "" {
			o.BaseEndpoint = aws.String(loc.endpoint)
		}
		// An S3-compatible server (moto, MinIO) rarely answers as
		// bucket.host, so path style is the default with any custom
		// endpoint: from the URL or from AWS_ENDPOINT_URL[_S3], which the
		// SDK has already applied here.
		o.UsePathStyle = o.BaseEndpoint != nil
		if loc.pathStyle != nil {
			o.UsePathStyle = *loc.pathStyle
		}
		// A blob uploaded in parts has a checksum of its parts' checksums,
		// which a download cannot check; the SDK would print a warning to
		// stderr, past the worker's logger, on every such Get. Each part
		// was checked on upload.
		o.DisableLogOutputChecksumValidationSkipped = true
	})
	s, err := NewS3(client, loc.bucket, loc.prefix)
	if err != nil {
		return nil, fmt.Errorf("artifact store %q: %w", shown, err)
	}
	return s, nil
}

// checkBucket refuses names S3 could never accept, so that a typo fails at
// start-up rather than at the first release. It allows the capitals and
// underscores of old us-east-1 buckets; S3 judges the rest.
func checkBucket(b string) error {
	if b == "" {
		return errors.New("no bucket")
	}
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("bucket name %q has %q; want letters, digits, '.', '-' and '_'", b, c)
		}
	}
	return nil
}

// checkPrefix holds the prefix to the rule for keys: it is the first part
// of every object key, so it must not add empty, "." or ".." elements.
func checkPrefix(p string) error {
	if p == "" {
		return nil
	}
	if CheckKey(p) != nil {
		return fmt.Errorf("prefix %q must be a relative slash path without empty, \".\" or \"..\" elements", p)
	}
	return nil
}

func checkEndpoint(v string) error {
	e, err := url.Parse(v)
	if err != nil {
		return errors.New("not a URL")
	}
	switch {
	case e.Scheme != "http" && e.Scheme != "https":
		return errors.New("want http://host:port or https://host:port")
	case e.Host == "":
		return errors.New("no host")
	case e.User != nil:
		return errors.New("credentials do not belong in the URL; they come from the AWS default chain")
	case e.RawQuery != "" || e.Fragment != "":
		return errors.New("an endpoint has no query or fragment")
	}
	return nil
}

func validRegion(r string) bool {
	if r == "" {
		return false
	}
	for _, c := range r {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// S3Location is where an S3 store keeps its objects, as another client
// (Terraform's S3 backend) must be told it.
type S3Location struct {
	Bucket    string
	Prefix    string
	Region    string
	Endpoint  string // empty: AWS's own
	PathStyle bool
}

// Location reports the store's bucket, prefix and client settings.
func (s *S3) Location() S3Location {
	o := s.Client.Options()
	l := S3Location{Bucket: s.Bucket, Prefix: s.Prefix, Region: o.Region, PathStyle: o.UsePathStyle}
	if o.BaseEndpoint != nil {
		l.Endpoint = *o.BaseEndpoint
	}
	return l
}
