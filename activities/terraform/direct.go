package terraform

// What Keelson can know about a working copy without starting Terraform.
// Each Terraform process costs about 60 ms before it does anything (more
// with providers to start), which, on a stack that changes little, is most
// of a plan and apply: the state's lineage and outputs are read where
// Keelson knows the state is, and init is skipped when nothing it reads has
// changed since it last succeeded. Where Keelson cannot be sure (a backend
// the stack declares itself, a workspace, a state format it does not know)
// Terraform is asked, as before.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// initStampFile, inside .terraform, holds the digest of init's inputs as
// they were when init last succeeded in the working copy.
const initStampFile = "keelson-init.sha256"

// initDigest is a digest of everything init reads: the Terraform binary,
// the environment Terraform runs in, and every file of the working copy's
// configuration (the stack, Keelson's backend override and the backend's
// settings), by path, mode and content.
func (s *session) initDigest() (string, error) {
	h := sha256.New()
	fi, err := os.Stat(s.bin)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(h, "bin %s %d %d\n", s.bin, fi.Size(), fi.ModTime().UnixNano())
	for _, k := range slices.Sorted(maps.Keys(s.env)) {
		fmt.Fprintf(h, "env %q=%q\n", k, s.env[k])
	}
	files := []string{filepath.Join(scratchDir, "backend.hcl")}
	err = filepath.WalkDir(s.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(s.dir, p)
		if err != nil || rel == "." {
			return err
		}
		if !strings.Contains(rel, string(filepath.Separator)) && generated(d.Name()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.IsDir() {
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	for _, rel := range files {
		f, err := os.Open(filepath.Join(s.dir, rel))
		if errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(h, "absent %q\n", rel)
			continue
		}
		if err != nil {
			return "", err
		}
		fi, err := f.Stat()
		if err == nil {
			fmt.Fprintf(h, "file %q %o %d\n", rel, fi.Mode(), fi.Size())
			_, err = io.Copy(h, f)
		}
		f.Close()
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (s *session) initStamp() string { return filepath.Join(s.dir, ".terraform", initStampFile) }

// initCurrent reports whether init last succeeded with these inputs.
func (s *session) initCurrent(digest string) bool {
	b, err := os.ReadFile(s.initStamp())
	return err == nil && strings.TrimSpace(string(b)) == digest
}

// stampInit records that init succeeded with the inputs of digest, unless
// init changed them itself: a stack without a dependency lock file gets one
// from init, which the next copy of the stack removes, so such a stack is
// initialised every time (its providers are checked against a lock file).
func (s *session) stampInit(digest string) {
	after, err := s.initDigest()
	if err != nil || after != digest {
		return
	}
	// A stack with neither providers nor a backend leaves no .terraform.
	err = os.MkdirAll(filepath.Dir(s.initStamp()), 0o755)
	if err == nil {
		err = os.WriteFile(s.initStamp(), []byte(digest+"\n"), 0o644)
	}
	if err != nil {
		s.log.Warn("could not record init; the next run initialises again", "err", err)
	}
}

// stateDoc is what Keelson reads of a state: Terraform's state format 4.
type stateDoc struct {
	Version int    `json:"version"`
	Lineage string `json:"lineage"`
	Serial  uint64 `json:"serial"`
	Outputs map[string]struct {
		Value     json.RawMessage `json:"value"`
		Sensitive bool            `json:"sensitive"`
	} `json:"outputs"`
}

// stateDirect reads the stack's state without Terraform where Keelson
// knows where it is: the S3 backend's object, or the working copy's
// terraform.tfstate when no backend is configured at all. ok is false when
// only Terraform can tell (the stack declares a backend of its own, a
// workspace is selected, the state is in a format Keelson does not read).
// No state yet reads as a zero stateDoc. The state can hold secrets: it is
// never logged.
func (s *session) stateDirect(ctx context.Context) (doc stateDoc, ok bool, err error) {
	var raw []byte
	switch b := s.a.Backend; {
	case b != nil && b.Client != nil:
		out, err := b.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(b.Bucket), Key: aws.String(b.Key(s.st))})
		var nsk *types.NoSuchKey
		if errors.As(err, &nsk) {
			return doc, true, nil
		}
		if err != nil {
			return doc, false, fmt.Errorf("read state of %s from s3://%s/%s: %w", s.name, b.Bucket, b.Key(s.st), err)
		}
		defer out.Body.Close()
		if raw, err = io.ReadAll(out.Body); err != nil {
			return doc, false, fmt.Errorf("read state of %s from s3://%s/%s: %w", s.name, b.Bucket, b.Key(s.st), err)
		}
	case b != nil:
		return doc, false, nil
	default:
		if _, ws := s.env["TF_WORKSPACE"]; ws {
			return doc, false, nil
		}
		// init records a configured backend here; the local default has none.
		if _, err := os.Stat(filepath.Join(s.dir, ".terraform", "terraform.tfstate")); !errors.Is(err, fs.ErrNotExist) {
			return doc, false, nil
		}
		raw, err = os.ReadFile(filepath.Join(s.dir, "terraform.tfstate"))
		if errors.Is(err, fs.ErrNotExist) {
			return doc, true, nil
		}
		if err != nil {
			return doc, false, fmt.Errorf("read state of %s: %w", s.name, err)
		}
	}
	if len(strings.TrimSpace(string(raw))) == 0 {
		return doc, true, nil
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return doc, false, fmt.Errorf("read state of %s: %w", s.name, err)
	}
	if doc.Version != 4 {
		return stateDoc{}, false, nil
	}
	return doc, true, nil
}
