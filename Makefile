# orgauthz: `make help` lists the targets. Everything needs only Go: tools are pinned in go.mod
# (`go tool opa`), Caddy is built from tests/caddy as a Go module.
.DEFAULT_GOAL := help
SHELL   := /bin/bash
GO      ?= go
OPA     := $(GO) tool opa
# Packages whose concurrency is worth the race detector's cost on a 2-core CI machine.
RACE_PKGS := ./sidecar/ ./sidecar/internal/token/ ./sidecar/internal/policy/ ./decision/ ./mgmtproxy/ ./internal/confload/ ./revocation/ ./decisionlog/ ./internal/filewatch/

.PHONY: help build run test test-go test-race test-rego e2e soak lint bench caddy image clean bundle

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build sidecar, mgmtproxy and fakelogto into bin/
	$(GO) build -o bin/ ./cmd/...

# Built and exec'd, not `go run`: the demo exits 0 on Ctrl-C and nothing in between may turn that into make's Error.
run: ## start the whole chain on loopback (Logto emulator, sidecar, mgmtproxy, front proxy) and print a walkthrough; ORGAUTHZ_DEMO_* move its ports
	@$(GO) build -o bin/demo ./cmd/demo
	@exec bin/demo $(DEMO_FLAGS)

test: lint test-rego test-go test-race e2e ## everything CI checks

test-go: ## Go unit and integration tests (the end-to-end tests sit behind the e2e build tag: see e2e)
	$(GO) test ./...

test-race: ## the concurrent packages again under the race detector
	$(GO) test -race $(RACE_PKGS)

test-rego: ## opa fmt, opa test with a 90 % coverage floor, and the sidecar's own load rules over policies/
	$(OPA) fmt --list --fail policies
	$(OPA) test policies
	@set -o pipefail; $(OPA) test --coverage --threshold 90 policies | grep -o '"coverage": [0-9.]*' | tail -n 1 | sed 's/"coverage"/policy coverage (%, floor 90)/'
	@# What opa test accepts the sidecar may still refuse (network builtins, no route table): load it as the sidecar does.
	$(GO) test -count=1 -run 'TestCheckDefaultPolicy|TestDefaultPolicy' ./sidecar/internal/policy/

bundle: ## build policies/ into bin/bundle.tar.gz for a bundle server (sidecar --opa-config); BUNDLE_SIGNING_KEY=private.pem signs it (RS256), BUNDLE_REVISION= names it
	@mkdir -p bin
	$(OPA) build -b policies/ --ignore '*_test.rego' -o bin/bundle.tar.gz --revision "$${BUNDLE_REVISION:-$$(git rev-parse --short HEAD 2>/dev/null || echo dev)}" \
		$(if $(BUNDLE_SIGNING_KEY),--signing-key $(BUNDLE_SIGNING_KEY) --signing-alg RS256)

e2e: bin/caddy ## end-to-end: real binaries behind the Envoy-faithful client and Caddy (nginx/Envoy when installed), the fault suite and a 20 s soak
	$(GO) test -tags e2e -count=1 -timeout 30m ./tests/e2e/ ./tests/faults/ ./tests/soak/

soak: ## the 10-minute soak of RELIABILITY.md (SOAK_FLAGS=-duration 1m for a shorter one)
	$(GO) run ./tests/soak $(SOAK_FLAGS)

lint: ## gofmt, go vet, staticcheck, opa fmt and opa check --strict
	@out=$$(gofmt -l .) || exit 1; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet -tags e2e ./...
	$(GO) tool staticcheck -tags e2e ./...
	$(OPA) fmt --list --fail policies
	$(OPA) check --strict policies

bench: ## benchmarks: sidecar vs a null server and an OPA-Envoy-style baseline, one table (BENCH_FLAGS=-quick; see BENCHMARKS.md)
	$(GO) run ./tests/bench $(BENCH_FLAGS)

caddy: bin/caddy ## build Caddy (as a Go module, pinned in tests/caddy/go.mod) into bin/caddy

bin/caddy: tests/caddy/go.mod tests/caddy/go.sum
	@echo "building Caddy from tests/caddy (a few minutes on a cold cache)"
	cd tests/caddy && $(GO) build -o ../../bin/caddy github.com/caddyserver/caddy/v2/cmd/caddy

# Image version stamped into both binaries (--version) and the tag the manifests name.
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
IMAGE_TAG ?= dev

image: ## build the orgauthz/sidecar and orgauthz/mgmtproxy images (Docker, Podman or Buildah; VERSION=, IMAGE_TAG=)
	@engine=""; for e in docker podman buildah; do if command -v $$e >/dev/null; then engine=$$e; break; fi; done; \
	if [ -z "$$engine" ]; then echo "make image: no docker, podman or buildah on PATH" >&2; exit 1; fi; \
	if ! timeout 20 $$engine info >/dev/null 2>&1; then \
	  echo "make image: $$engine is on PATH but no container engine answers ('$$engine info' failed): start the daemon or point DOCKER_HOST at one" >&2; exit 1; fi; \
	for t in sidecar mgmtproxy; do \
	  echo "$$engine build --target $$t --build-arg VERSION=$(VERSION) -t orgauthz/$$t:$(IMAGE_TAG) ."; \
	  $$engine build --target $$t --build-arg VERSION=$(VERSION) -t orgauthz/$$t:$(IMAGE_TAG) . || exit 1; \
	done

clean: ## remove build output
	rm -rf bin
