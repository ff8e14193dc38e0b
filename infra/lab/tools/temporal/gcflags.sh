# Sourced by infra/lab/build.sh and infra/prod/build.sh: the compiler's
# flags for every command of this module, the same in both so that the
# prod topology finds the packages the lab compiled (and the other way).
#
# The Temporal server links what no Keelson topology runs: Elasticsearch,
# Cassandra and MySQL clients, the S3 and Google Cloud Storage archivers
# (with gRPC's xDS and Envoy's API, which come with Cloud Storage), and the
# CLI's own commands and Web UI server, which serve a person, not a
# release. Those are compiled without inlining (-l), which costs them
# nothing that matters; they took 72 s of compile time from an empty cache
# on two cores with the defaults, and -l saved 27 % of the compile time of
# the lab's cluster commands (an expected 20 s here, below what one cold
# build's wall time can show). Everything a workflow task or an activity
# goes through (the server's services, SQLite and PostgreSQL, gRPC,
# protobuf) keeps the compiler's defaults.
temporal_gcflags=(
	-gcflags='github.com/envoyproxy/...=-l'
	-gcflags='github.com/cncf/xds/...=-l'
	-gcflags='github.com/aws/aws-sdk-go/...=-l'
	-gcflags='github.com/olivere/elastic/...=-l'
	-gcflags='github.com/gocql/gocql/...=-l'
	-gcflags='github.com/apache/thrift/...=-l'
	-gcflags='github.com/go-sql-driver/mysql/...=-l'
	-gcflags='cloud.google.com/go/...=-l'
	-gcflags='google.golang.org/api/...=-l'
	-gcflags='github.com/google/s2a-go/...=-l'
	-gcflags='github.com/googleapis/gax-go/...=-l'
	-gcflags='github.com/GoogleCloudPlatform/...=-l'
	-gcflags='github.com/temporalio/cli/...=-l'
	-gcflags='github.com/temporalio/ui-server/...=-l'
	-gcflags='github.com/labstack/echo/...=-l'
	-gcflags='github.com/gomarkdown/markdown/...=-l'
)
