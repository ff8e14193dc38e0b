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
#
# Nothing is compiled with DWARF (stack_gcflags, used by infra/lab/build.sh
# for every build of the stack, as the Makefile's GCFLAGS is for Keelson's):
# the linker's -s -w drops it, and writing it cost the compiler 10 % of its
# CPU (this module from an empty cache on two cores, measured back to back
# with most of it compiled without inlining: 248 s of CPU instead of 276 s,
# 141 s of wall time instead of 156 s; the cold build of the whole stack
# took 1,042 s of CPU instead of 1,291 s).
stack_gcflags=-dwarf=false
temporal_gcflags=(
	-gcflags="all=$stack_gcflags"
	-gcflags="github.com/envoyproxy/...=-l $stack_gcflags"
	-gcflags="github.com/cncf/xds/...=-l $stack_gcflags"
	-gcflags="github.com/aws/aws-sdk-go/...=-l $stack_gcflags"
	-gcflags="github.com/olivere/elastic/...=-l $stack_gcflags"
	-gcflags="github.com/gocql/gocql/...=-l $stack_gcflags"
	-gcflags="github.com/apache/thrift/...=-l $stack_gcflags"
	-gcflags="github.com/go-sql-driver/mysql/...=-l $stack_gcflags"
	-gcflags="cloud.google.com/go/...=-l $stack_gcflags"
	-gcflags="google.golang.org/api/...=-l $stack_gcflags"
	-gcflags="github.com/google/s2a-go/...=-l $stack_gcflags"
	-gcflags="github.com/googleapis/gax-go/...=-l $stack_gcflags"
	-gcflags="github.com/GoogleCloudPlatform/...=-l $stack_gcflags"
	-gcflags="github.com/temporalio/cli/...=-l $stack_gcflags"
	-gcflags="github.com/temporalio/ui-server/...=-l $stack_gcflags"
	-gcflags="github.com/labstack/echo/...=-l $stack_gcflags"
	-gcflags="github.com/gomarkdown/markdown/...=-l $stack_gcflags"
)
