# reasoning-operator: every tool the targets need is built or installed by `make setup` into
# ~/.cache/reasoning-operator (override with REASONING_CACHE_DIR); nothing is installed by hand.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

export UV_PYTHON_DOWNLOADS := never
# uv trusts its own CA bundle by default; the system store also holds any CA a proxy to PyPI needs
export UV_SYSTEM_CERTS := 1
UV = $(shell bash -c 'source hack/lib.sh && bin_uv')
RUN = $(UV) run --locked --no-sync
PYTHON_SOURCES = operator/reasoning_operator pipeline/reasoning_pipeline tests

.PHONY: help setup test unit integration lint format crds seccomp-profile cluster-up cluster-down cluster-status bench images demo kind-up clean clean-cache

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -ts $$'\t'

setup: ## check prerequisites; build the cluster's programs and install uv (cached); sync .venv
	@hack/setup.sh

test: setup lint ## lint, then every unit and integration test (starts and stops the local cluster)
	$(RUN) pytest

unit: setup ## the unit tests only (no cluster)
	$(RUN) pytest tests/unit

integration: setup ## the integration tests only
	$(RUN) pytest tests/integration

lint: setup ## ruff and mypy (strict) over the operator, the pipeline and the tests
	$(RUN) ruff check $(PYTHON_SOURCES)
	$(RUN) ruff format --check $(PYTHON_SOURCES)
	$(RUN) mypy

format: setup ## rewrite the sources in ruff's format and apply its safe fixes
	$(RUN) ruff format $(PYTHON_SOURCES)
	$(RUN) ruff check --fix $(PYTHON_SOURCES)

crds: setup ## regenerate crds/ from the spec models (a test fails while crds/ is stale)
	$(RUN) python -m reasoning_operator.crd crds

seccomp-profile: ## regenerate hack/seccomp/sandbox.json (containerd's default profile + user namespaces)
	cd hack/seccomp && go run . > sandbox.json.new && mv sandbox.json.new sandbox.json

cluster-up: setup ## start the embedded local cluster (idempotent); prints how to use it
	@hack/cluster.sh up

cluster-down: ## stop every process of the local cluster and remove its state
	@hack/cluster.sh down

cluster-status: ## which local cluster components run and answer
	@hack/cluster.sh status

bench: setup ## benchmarks in tests/bench: they print figures and assert nothing about time
	$(RUN) pytest tests/bench -s -p no:cacheprovider -o python_files='bench_*.py' -o python_functions='bench_*'

images: setup ## build the operator, pipeline and trainer images (no pulls) and load them onto the local node
	@hack/images.sh all

kind-up: setup ## the same layout on kind, for machines with internet (see hack/kind.yaml)
	@hack/kind.sh

demo: setup ## the tiny recipe for real on the local cluster: images, cluster, chart, run, results
	@hack/demo.sh

clean: cluster-down ## stop the cluster; remove .venv and caches inside the repo (keeps ~/.cache/reasoning-operator)
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

clean-cache: clean ## also remove every cached tool build in ~/.cache/reasoning-operator
	rm -rf "$$(bash -c 'source hack/lib.sh && echo $$CACHE_ROOT')"
