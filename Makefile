# sendgrid-operator developer entry points. Every install step lives here or in hack/,
# so a fresh machine needs nothing but this checkout.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help venv lint test test-unit demo demo-down bench controlplane postgres tools clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev,sql]'
	touch $@

venv: $(STAMP) ## create .venv with the project and its dev tools

lint: $(STAMP) ## ruff and mypy (strict)
	$(VENV)/bin/ruff check operator tests benchmarks hack
	$(VENV)/bin/ruff format --check operator tests benchmarks hack
	$(VENV)/bin/mypy

postgres: ## install PostgreSQL from Debian's packages if missing
	bash hack/postgres.sh install

controlplane: ## build (or reuse) kube-apiserver, kube-controller-manager, etcd, kubectl, helm
	bash hack/controlplane/build.sh

tools: $(STAMP) postgres controlplane

test-unit: $(STAMP) ## tests that need no cluster and no database
	$(PY) -m pytest -m "not cluster and not postgres" $(PYTEST_ARGS)

test: tools lint ## everything: lint, unit, emulator, PostgreSQL and control-plane tests
	$(PY) -m pytest $(PYTEST_ARGS)

demo: tools ## the main job end to end on a local control plane with the emulator
	bash hack/demo.sh

demo-down: ## stop everything `make demo` started
	bash hack/demo-down.sh

bench: $(STAMP) postgres ## benchmarks; results in benchmarks/results, summary in docs/performance.md
	$(PY) -m benchmarks.run $(BENCH_ARGS)

clean: ## remove the virtualenv and local state (the control-plane build cache is kept)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
