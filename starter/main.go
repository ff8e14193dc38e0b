// Command keelson starts and steers releases: start (optionally waiting
// with live progress), status, watch, list, approve, reject, pause, resume,
// abort, promote and rollback. It talks to Temporal through package control.
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}
