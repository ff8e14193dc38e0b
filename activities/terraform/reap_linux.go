package terraform

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// reapOrphans kills what a Terraform that died (with its worker, SIGKILLed)
// left running in its working copy: local-exec provisioners, which Terraform
// starts in its own process group and which do not die with it. Such a
// script, running on unseen, could race the retry's apply of the same
// resources. terraform-exec gives each Terraform its own process group, so a
// leftover is a process whose working directory is in dir and whose group
// leader is gone. A group whose Terraform is alive (another worker's run, or
// an orphaned Terraform) is left alone: the state lock keeps us apart.
// It returns the PIDs it signalled.
func reapOrphans(dir string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := syscall.Getpgrp()
	groups := map[int]bool{}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if err != nil || (cwd != dir && !strings.HasPrefix(cwd, dir+"/")) {
			continue
		}
		_, _, pgid, ok := procStat(pid)
		if !ok || pgid == self || pgid <= 1 || alive(pgid) {
			continue
		}
		groups[pgid] = true
		pids = append(pids, pid)
	}
	for pgid := range groups {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	slices.Sort(pids)
	return pids
}

// procStat reads state, parent and process group from /proc/PID/stat.
func procStat(pid int) (state byte, ppid, pgid int, ok bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, 0, false
	}
	// The command name is in parentheses and may contain spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 || len(f[0]) == 0 {
		return 0, 0, 0, false
	}
	ppid, err1 := strconv.Atoi(f[1])
	pgid, err2 := strconv.Atoi(f[2])
	if err1 != nil || err2 != nil {
		return 0, 0, 0, false
	}
	return f[0][0], ppid, pgid, true
}

// alive reports whether pid is a running (not zombie) process.
func alive(pid int) bool {
	state, _, _, ok := procStat(pid)
	return ok && state != 'Z' && state != 'X'
}
