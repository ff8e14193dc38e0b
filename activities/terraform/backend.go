package terraform

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/hashicorp/terraform-exec/tfexec"
)

// S3Backend keeps every stack's state in S3 with Terraform's built-in S3
// backend, one key per application and region, locked by S3 lock files
// (use_lockfile, Terraform 1.10 and later): any worker then plans and
// applies against the same state, so a plan made on one worker applies on
// another. Without it, state is the working copy's local file, which only
// one worker sees.
type S3Backend struct {
	Bucket string
	// Prefix is the folder of the keys: PREFIX/terraform/APP/REGION/terraform.tfstate.
	Prefix    string
	Region    string
	Endpoint  string // an S3-compatible endpoint (moto in the lab); empty for AWS's
	PathStyle bool

	// Client reads the state's lock file and keeps the lease of each
	// locking command beside the state (lease.go), so that a retry takes
	// back the lock a killed attempt left. Without it such a lock stays
	// until someone runs terraform force-unlock.
	Client *s3.Client
	// LeaseTTL replaces DefaultLeaseTTL (tests).
	LeaseTTL time.Duration
}

// overrideFile declares the backend in the working copy: Terraform merges
// *_override.tf files into the stack's configuration, so the stack itself
// needs no backend block (and one it has is replaced).
const overrideFile = "keelson_backend_override.tf"

// Key is the state's object key of a stack.
func (b *S3Backend) Key(st Stack) string {
	return path.Join(b.Prefix, "terraform", st.Application, st.Region, "terraform.tfstate")
}

// configure writes the override and the backend's settings into the working
// copy and returns the init options that select them.
func (b *S3Backend) configure(s *session) ([]tfexec.InitOption, error) {
	if err := os.WriteFile(filepath.Join(s.dir, overrideFile), []byte("terraform {\n  backend \"s3\" {}\n}\n"), 0o644); err != nil {
		return nil, fmt.Errorf("write backend override: %w", err)
	}
	lines := []string{
		"bucket = " + strconv.Quote(b.Bucket),
		"key = " + strconv.Quote(b.Key(s.st)),
		"region = " + strconv.Quote(b.Region),
		"use_lockfile = true",
	}
	if b.Endpoint != "" {
		// An S3 look-alike has no STS, IAM or regions to check.
		lines = append(lines,
			"endpoints = { s3 = "+strconv.Quote(b.Endpoint)+" }",
			"skip_credentials_validation = true",
			"skip_requesting_account_id = true",
			"skip_region_validation = true",
			"skip_metadata_api_check = true",
		)
	}
	if b.PathStyle {
		lines = append(lines, "use_path_style = true")
	}
	cfg := s.scratch("backend.hcl")
	if err := os.WriteFile(cfg, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("write backend config: %w", err)
	}
	// Reconfigure: a working copy that held local state (or another key)
	// is pointed at this backend without Terraform asking to migrate.
	return []tfexec.InitOption{tfexec.BackendConfig(cfg), tfexec.Reconfigure(true)}, nil
}
