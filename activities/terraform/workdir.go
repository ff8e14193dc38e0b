package terraform

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// generated reports whether a top-level name in a working copy is something
// Terraform or Keelson made there, which lives across runs and is never
// taken from the stack's source: state, the init cache, plan files, and
// logs the stack writes beside its state (the demo's applies.log).
func generated(name string) bool {
	switch name {
	case ".terraform", scratchDir, "terraform.tfstate", "terraform.tfstate.backup",
		".terraform.tfstate.lock.info", "terraform.tfstate.d", "errored.tfstate":
		return true
	}
	return strings.HasSuffix(name, ".tfplan") || strings.HasSuffix(name, ".log")
}

// syncStack makes dst's configuration a copy of src's while keeping what
// earlier runs generated: everything else at dst's top level is removed
// first, so a file deleted from the stack does not linger in the copy.
func syncStack(src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	old, err := os.ReadDir(dst)
	if err != nil {
		return err
	}
	for _, e := range old {
		if !generated(e.Name()) {
			if err := os.RemoveAll(filepath.Join(dst, e.Name())); err != nil {
				return err
			}
		}
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil || rel == "." {
			return err
		}
		if d.Name() == ".terraform" || (!strings.Contains(rel, string(filepath.Separator)) && generated(d.Name())) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			return copyFile(p, target)
		default:
			// Symlinks and the like could point outside the stack; a stack
			// is plain files.
			return fmt.Errorf("%s: not a regular file", rel)
		}
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// dirLocks holds one token per working copy in use by this process.
var dirLocks sync.Map // dir -> chan struct{}

// lockDir waits, as long as ctx allows, until no other activity of this
// worker uses dir.
func lockDir(ctx context.Context, dir string) (func(), error) {
	v, _ := dirLocks.LoadOrStore(dir, make(chan struct{}, 1))
	ch := v.(chan struct{})
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for working copy %s: %w", dir, ctx.Err())
	}
}
