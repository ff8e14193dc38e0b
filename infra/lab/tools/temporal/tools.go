//go:build tools

// Package tools pins the Temporal server commands built for the prod
// topology: the server (frontend, history, matching and worker services in
// one process) and its SQL schema tool.
package tools

import (
	_ "go.temporal.io/server/cmd/server"
	_ "go.temporal.io/server/cmd/tools/sql"
)
