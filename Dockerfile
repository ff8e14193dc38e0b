# Keelson's worker (and CLI) as an image, for docker-compose.yml and real
# clusters. Multi-stage: Go builds static binaries; the runtime image holds
# them, Terraform (the worker runs it) and CA certificates, and nothing else.
ARG GO_VERSION=1.26
ARG TERRAFORM_VERSION=1.11.4

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first: this layer is cached until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ENV CGO_ENABLED=0
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w" -o /out/keelson-worker ./worker && \
    go build -trimpath -ldflags="-s -w" -o /out/keelson ./starter && \
    mkdir -p /state/artifacts /state/work

FROM hashicorp/terraform:${TERRAFORM_VERSION} AS terraform

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=terraform /bin/terraform /usr/local/bin/terraform
COPY --from=build /out/keelson-worker /out/keelson /usr/local/bin/
# Owned by nonroot, so a fresh named volume mounted here starts writable.
COPY --from=build --chown=65532:65532 /state /var/lib/keelson
# State the worker keeps between activities: plan artifacts and Terraform
# working copies. Mount a volume here (docker-compose.yml does).
ENV KEELSON_ARTIFACTS=/var/lib/keelson/artifacts \
    KEELSON_WORK_DIR=/var/lib/keelson/work
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/keelson-worker"]
