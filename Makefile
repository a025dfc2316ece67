# Sluice developer entry points. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha1sum | cut -c1-12)
PYTEST := $(BIN)/python -m pytest -p no:cacheprovider
CONFIG ?= deploy/config/local.yaml

.PHONY: help
help: ## list targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip==25.3
	$(BIN)/pip install -q -r requirements.lock
	@# xds-protos ships an older copy of opentelemetry/proto/*_pb2.py; whichever wheel pip writes
	@# last wins. The OTLP exporters need opentelemetry-proto's own, so it goes in again, last.
	$(BIN)/pip install -q --no-deps --force-reinstall $$(grep -i '^opentelemetry-proto==' requirements.lock)
	$(BIN)/pip install -q --no-deps -e .
	@rm -f $(VENV)/.installed-* && touch $@

.PHONY: install
install: $(STAMP) ## create .venv and install the locked dependencies

.PHONY: deps
deps: ## install system packages the tests need (redis-server, Java 17, Maven, Node.js + npm) when missing
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v java >/dev/null || missing="$$missing openjdk-17-jre-headless"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

.PHONY: run
run: $(STAMP) ## start every service + the simulator + a sink on embedded defaults, and show a first request
	$(BIN)/sluice --config $(CONFIG) serve all,simulator,sinks --first-request

.PHONY: protos
protos: $(STAMP) ## regenerate Python code from protos/ into libs/
	PYTHON=$(BIN)/python protos/generate.sh

.PHONY: check-protos
check-protos: protos ## fail if generated code differs from protos/
	@git diff --quiet -- libs && [ -z "$$(git status --porcelain -- libs)" ] || \
	  { echo "generated code is stale: run 'make protos' and commit"; git status --short -- libs; exit 1; }

.PHONY: check-deploy
check-deploy: $(STAMP) ## render the Helm chart for every region and mode; helm lint, kubeconform -strict, residency checks
	$(BIN)/python -m tests.infra.check_deploy

.PHONY: lint
lint: $(STAMP) ## buf lint the protos; ruff over the tree; mypy over libs/ and services/ (files: pyproject.toml)
	$(BIN)/buf lint
	$(BIN)/ruff check .
	$(BIN)/mypy

.PHONY: test
test: $(STAMP) deps lint check-protos check-deploy ## everything CI runs: lint, fresh protos, deploy manifests, unit + integration + e2e tests
	$(PYTEST) tests

.PHONY: test-unit
test-unit: $(STAMP) ## unit tests only (fakes, no servers)
	$(PYTEST) tests/unit

.PHONY: test-integration
test-integration: $(STAMP) deps ## tests against a real Redis and a real Kafka broker
	$(PYTEST) tests/integration

.PHONY: test-e2e
test-e2e: $(STAMP) deps ## all services as real processes, both run modes, simulator upstream
	$(PYTEST) tests/e2e

.PHONY: chaos
chaos: $(STAMP) deps ## randomly failing and slowing deployments: no request lost, none billed twice (CHAOS_REQUESTS=400)
	CHAOS_REQUESTS=$${CHAOS_REQUESTS:-400} $(PYTEST) tests/e2e/test_chaos.py

.PHONY: bench
bench: $(STAMP) ## direct-to-simulator vs through Sluice (all, mesh), JSON and SSE
	$(BIN)/python -m tests.bench

.PHONY: bench-peers
bench-peers: $(STAMP) ## Sluice `all` vs LiteLLM (pinned, own venv in .cache/peers) on one simulator: CPU per request
	$(BIN)/python -m tests.bench.peers

.PHONY: lock
lock: ## re-resolve dependencies from pyproject.toml into requirements.lock
	rm -rf /tmp/sluice-lock && $(PYTHON) -m venv /tmp/sluice-lock
	/tmp/sluice-lock/bin/pip install -q --upgrade pip==25.3 && /tmp/sluice-lock/bin/pip install -q -e ".[dev,train]"
	{ echo "# The one lock of what CI installs: every package, pinned, for Python 3.11."; \
	  echo "# Regenerate with 'make lock' after changing dependencies in pyproject.toml."; \
	  /tmp/sluice-lock/bin/pip freeze --exclude-editable; } > requirements.lock

.PHONY: clean
clean: ## remove the venv and caches (keeps the Kafka jar cache in .cache/)
	rm -rf $(VENV) .pytest_cache build dist *.egg-info
