# Two entry points: `make run` (the app on a local Kafka + Elasticsearch) and `make test`.
# Needs Python 3.11+, Java 17+ and Maven; everything else is fetched by the project.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HASH   := $(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# `make run` needs the runtime dependencies only; `make test` adds the test extras on top.
RUN_STAMP  := $(VENV)/.installed-run-$(HASH)
TEST_STAMP := $(VENV)/.installed-test-$(HASH)

.PHONY: run test install system-deps services stop status lint bench chaos clean

# Java and Maven run the local Kafka and Elasticsearch, Chromium the dashboard's browser test
# (BROWSER=1, for `make test` only); installed from Debian when missing.
system-deps:
	@missing=""; \
	command -v java >/dev/null || missing="$$missing default-jre-headless"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	if [ "$(BROWSER)" = 1 ]; then command -v chromium >/dev/null || missing="$$missing chromium"; fi; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "missing:$$missing (install them, or run make as root on Debian)"; exit 1; \
	  fi; \
	fi

$(RUN_STAMP): pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	rm -f $(VENV)/.installed-run-* && touch $@

# The transformers extra is for that backend's test. PyPI has only the CUDA build of torch for
# Linux (~2.5 GB of nvidia-* wheels, ~1.5 min to install); `pip install streamapp` stays torch-free.
$(TEST_STAMP): $(RUN_STAMP)
	@$(MAKE) --no-print-directory system-deps BROWSER=1
	$(BIN)/pip install --quiet -e '.[dev,transformers]'
	rm -f $(VENV)/.installed-test-* && touch $@

install: $(TEST_STAMP)

# `make run WORKERS=2`: several worker processes in one consumer group (web ports 6066, 6067...).
WORKERS ?= 1
run: $(RUN_STAMP)
	$(BIN)/python -m devstack.run --workers $(WORKERS)

test: $(TEST_STAMP)
	$(BIN)/python -m devstack fetch
	@$(MAKE) --no-print-directory compose-plugin || \
	  echo "docker compose plugin not built: tests/test_compose.py skips its 'config' test"
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -ra $(PYTEST_ARGS)

services: $(RUN_STAMP)
	$(BIN)/python -m devstack start

stop:
	$(PYTHON) -m devstack stop

status:
	$(PYTHON) -m devstack status

bench: $(RUN_STAMP)
	$(BIN)/python -m benchmarks.pipeline $(BENCH_ARGS)

# The fault suite at full size (40,000-message bursts repeated, larger crash runs); `make test`
# runs the same scenarios small. Prints a table; figures also in test-artifacts/faults.json.
chaos: $(TEST_STAMP)
	$(BIN)/python -m devstack fetch
	STREAMAPP_FAULTS_SCALE=full $(BIN)/python -m pytest -s -ra tests/test_faults.py $(PYTEST_ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

# `docker compose` (the compose v2 CLI plugin), for docker-compose.yml and its test. Debian
# bookworm packages only docker-compose 1.29 (the old Python tool) and no registry reachable here
# serves the plugin binary, so it is built from its Go module (needs Go 1.24+). `go install
# mod@version` refuses it (its go.mod has exclude directives): download the module, build in it.
# A fresh 2-core machine takes ~4-5 minutes and ~1.4 GB of Go caches, once; `make test` runs it
# (a no-op when built) and, without Go, goes on: tests/test_compose.py then skips that test.
COMPOSE_VERSION ?= v2.40.3
COMPOSE_PLUGIN  ?= $(HOME)/.docker/cli-plugins/docker-compose
.PHONY: compose-plugin
compose-plugin:
	@if "$(COMPOSE_PLUGIN)" version 2>/dev/null | grep -q "$(COMPOSE_VERSION)$$"; then \
	  echo "$(COMPOSE_PLUGIN) is already $(COMPOSE_VERSION)"; exit 0; \
	fi; \
	command -v go >/dev/null || { echo "compose-plugin needs Go 1.24+ on PATH"; exit 1; }; \
	set -e; \
	src=$$(cd /tmp && go mod download -json github.com/docker/compose/v2@$(COMPOSE_VERSION) \
	  | $(PYTHON) -c 'import json, sys; print(json.load(sys.stdin)["Dir"])'); \
	mkdir -p "$(dir $(COMPOSE_PLUGIN))"; \
	echo "building docker compose $(COMPOSE_VERSION) into $(COMPOSE_PLUGIN)"; \
	cd "$$src" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath \
	  -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$(COMPOSE_VERSION)" \
	  -o "$(COMPOSE_PLUGIN)" ./cmd; \
	"$(COMPOSE_PLUGIN)" version

clean: stop
	rm -rf .devstack .streamapp-data $(VENV)
