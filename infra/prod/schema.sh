#!/bin/sh
# Creates Temporal's two PostgreSQL databases and brings their schemas to the
# newest version the server's schema folders hold, with Temporal's own SQL
# tool. Every step is idempotent (an existing database is kept, setup-schema
# leaves a versioned database alone, update-schema applies only what is
# newer), so it runs at every start, and after an upgrade of the server it
# migrates. POSIX sh: infra/prod/up.sh runs it here, and docker-compose.yml
# in the temporalio/admin-tools image.
#
# Environment: SQL_TOOL (temporal-sql-tool), SCHEMA_DIR (the server's
# schema folder, holding postgresql/v12/...), POSTGRES_SEEDS, DB_PORT,
# POSTGRES_USER, POSTGRES_PWD; DBNAME and VISIBILITY_DBNAME (temporal,
# temporal_visibility) as in temporal.yaml.
set -eu

: "${SQL_TOOL:=temporal-sql-tool}"
: "${SCHEMA_DIR:=/etc/temporal/schema}"
: "${POSTGRES_SEEDS:=127.0.0.1}"
: "${DB_PORT:=5432}"
: "${POSTGRES_USER:=temporal}"
: "${POSTGRES_PWD:=temporal}"
: "${DBNAME:=temporal}"
: "${VISIBILITY_DBNAME:=temporal_visibility}"

# temporal-sql-tool reads its connection from these variables: the
# password stays off the command line.
export SQL_PLUGIN=postgres12 SQL_HOST="$POSTGRES_SEEDS" SQL_PORT="$DB_PORT" \
	SQL_USER="$POSTGRES_USER" SQL_PASSWORD="$POSTGRES_PWD"

migrate() { # DATABASE SCHEMA (temporal | visibility)
	dir=$SCHEMA_DIR/postgresql/v12/$2/versioned
	if [ ! -d "$dir" ]; then
		echo "schema: $dir not found" >&2
		return 1
	fi
	SQL_DATABASE=$1 "$SQL_TOOL" create-database
	SQL_DATABASE=$1 "$SQL_TOOL" setup-schema -v 0.0
	SQL_DATABASE=$1 "$SQL_TOOL" update-schema -d "$dir"
	echo "schema: database $1 at the newest version of $dir"
}

migrate "$DBNAME" temporal
migrate "$VISIBILITY_DBNAME" visibility
