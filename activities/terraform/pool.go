package terraform

import (
	"fmt"
	"os"
	"sync"

	"github.com/hashicorp/terraform-exec/tfexec"
)

// terraforms keeps the tfexec.Terraform values of each working copy from
// one activity to the next. terraform-exec runs `terraform version -json`
// once per value before the first command whose flags depend on the
// version (init, show): a process of about 40 ms, which every Plan paid
// again for a fresh value. A kept value knows its version. It is
// kept under its working copy, binary, and the binary's size and
// modification time, so a binary replaced in place is asked again.
type terraforms struct {
	mu   sync.Mutex
	free map[string][]*tfexec.Terraform
}

// keepPerKey bounds the values kept for a working copy: a session uses one,
// and one more for a show beside its apply.
const keepPerKey = 2

// terraformKey names the values that may serve the working copy dir with
// the binary bin.
func terraformKey(dir, bin string) (string, error) {
	fi, err := os.Stat(bin)
	if err != nil {
		return "", fmt.Errorf("terraform binary: %w", err)
	}
	return fmt.Sprintf("%s\x00%s\x00%d\x00%d", dir, bin, fi.Size(), fi.ModTime().UnixNano()), nil
}

// take returns a kept value for key, or nil. The working copy's lock makes
// the session its only user until put.
func (p *terraforms) take(key string) *tfexec.Terraform {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.free[key]
	if len(list) == 0 {
		return nil
	}
	tf := list[len(list)-1]
	p.free[key] = list[:len(list)-1]
	return tf
}

// put keeps tf for the next session of key.
func (p *terraforms) put(key string, tf *tfexec.Terraform) {
	if tf == nil || key == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.free == nil {
		p.free = map[string][]*tfexec.Terraform{}
	}
	if len(p.free[key]) < keepPerKey {
		p.free[key] = append(p.free[key], tf)
	}
}
