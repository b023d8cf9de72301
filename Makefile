# Two commands on a fresh machine: `make install`, then `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
NOX := $(BIN)/nox --no-install --no-venv
# The SD3.5 runtime that the torch tests run in: this env's lock for .venv's Python, synced by
# `sdenv sync` into .envs/<lock target> (a no-op in well under 3 s when it is already in sync).
RUNTIME_ENV ?= sd35-fp8-cu121
export RUNTIME_ENV
export PATH := $(BIN):$(PATH)

.PHONY: install test test-online lint types lock lock-check dev-lock image test-docker audit bench clean

install: $(VENV)/.installed
	$(BIN)/sdenv sync $(RUNTIME_ENV)

# .venv: sdenv (editable) and its dev tools only, hash-checked from requirements/dev.txt; no torch.
$(VENV)/.installed: pyproject.toml requirements/dev.txt
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --require-hashes --no-deps \
		-r requirements/dev.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

# Re-pin requirements/dev.txt after a change to pyproject.toml's dependencies (`make test` fails
# until then); DEV_LOCK_ARGS=--upgrade moves every pin to the newest.
dev-lock:
	$(BIN)/python scripts/lock_dev.py $(DEV_LOCK_ARGS)

# Offline and fast: lint, types, and every test not marked online/docker/gpu.
test: install
	$(NOX) -s lint types tests

# Real PyPI: locks the default env and proves it imports; local Ray clusters (`sdenv fleet`).
# CI runs it after `make test`.
test-online: install
	$(NOX) -s tests_online

lint: install
	$(NOX) -s lint

types: install
	$(NOX) -s types

lock: install
	$(BIN)/sdenv lock

lock-check: install
	$(NOX) -s lock_check

# Known vulnerabilities in the locks (needs the public OSV service, or AUDIT_ARGS="--osv-url URL").
audit: install
	$(NOX) -s audit -- $(AUDIT_ARGS)

# The default env's image: `sdenv lock --check`, OS base (debootstrap, no registry) and CUDA base,
# app image, smoke inside; tag only on pass. Needs an engine: `scripts/docker-engine.sh start`
# prints the DOCKER_HOST to export. IMAGE_ARGS go to `sdenv image build` (e.g. --ca-bundle FILE).
image: install
	$(NOX) -s image -- $(IMAGE_ARGS)

# Orchestration tests against the real engine (marker `docker`): CI runs it after `make image`.
test-docker: install
	$(NOX) -s tests_docker

clean:
	rm -rf $(VENV) .envs .nox .mypy_cache .ruff_cache .pytest_cache
