//go:build tools

// Package tools pins the Temporal commands of both local topologies: the
// lab's temporal CLI (its dev server), and for the prod topology the server
// (frontend, history, matching and worker services in one process), its SQL
// schema tool and the Web UI server. The CLI embeds that server and that UI
// server at these versions, so one module builds all four and their shared
// packages compile once.
package tools

import (
	_ "github.com/temporalio/cli/cmd/temporal"
	_ "github.com/temporalio/ui-server/v2/cmd/server"
	_ "go.temporal.io/server/cmd/server"
	_ "go.temporal.io/server/cmd/tools/sql"
)
