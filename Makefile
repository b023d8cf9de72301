# Two commands on a fresh machine: `make install`, then `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
NOX := $(BIN)/nox --no-install --no-venv
export PATH := $(BIN):$(PATH)

.PHONY: install test test-online lint types lock lock-check image test-docker audit bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,runtime]'
	touch $@

# Offline and fast: lint, types, and every test not marked online/docker/gpu.
test: install
	$(NOX) -s lint types tests

# Real PyPI: locks the default env and proves it imports; CI runs it after `make test`.
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
	rm -rf $(VENV) .nox .mypy_cache .ruff_cache .pytest_cache
