# syntax=docker/dockerfile:1
# Images of orgauthz, one target per binary, named as envoy/k8s and envoy/docker-compose.yaml name them:
#
#   docker build --target sidecar   --build-arg VERSION=v1.2.3 -t orgauthz/sidecar:dev .
#   docker build --target mgmtproxy --build-arg VERSION=v1.2.3 -t orgauthz/mgmtproxy:dev .
#   (`make image` does both; `fakelogto` is the Logto emulator, for the compose demo only)
#
# Static binaries (CGO_ENABLED=0) on distroless/static: CA certificates and tzdata, no shell, no
# package manager, uid 65532. Nothing is written to the image's filesystem at run time, so it runs
# with readOnlyRootFilesystem. envoy/image_test.go checks this file.
#
# Base images are pinned by digest. The digests were taken from public Dockerfiles pinning the
# same tags (no registry was reachable where this was written): refresh them with
#   docker buildx imagetools inspect golang:1.26
#   docker buildx imagetools inspect gcr.io/distroless/static-debian12:nonroot

FROM --platform=$BUILDPLATFORM golang:1.26@sha256:3aff6657219a4d9c14e27fb1d8976c49c29fddb70ba835014f477e1c70636647 AS build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath \
      -ldflags "-s -w -X github.com/orgauthz/orgauthz/internal/version.Version=$VERSION" \
      -o /out/ ./cmd/sidecar ./cmd/mgmtproxy ./cmd/fakelogto

FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab AS sidecar
# The default policy, for `--policies=/policies`; Kubernetes mounts its ConfigMap over /policies/orgauthz.
COPY --from=build /src/policies /policies
COPY --from=build /out/sidecar /sidecar
USER 65532:65532
EXPOSE 9191 9192 9090
ENTRYPOINT ["/sidecar"]

FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab AS fakelogto
COPY --from=build /out/fakelogto /fakelogto
USER 65532:65532
EXPOSE 3001
ENTRYPOINT ["/fakelogto"]

# Last, so that a build without --target gives mgmtproxy rather than the emulator.
FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab AS mgmtproxy
COPY --from=build /out/mgmtproxy /mgmtproxy
USER 65532:65532
EXPOSE 8081 9091
ENTRYPOINT ["/mgmtproxy"]
