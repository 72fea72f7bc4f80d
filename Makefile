# cogplane — the two commands: `make up` (run the platform on this machine) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml package.json 2>/dev/null | sha1sum | cut -c1-12)

.PHONY: up test test-fast lint bench install clean synth package-lambda

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing cogplane and its test tools into $(VENV) ..."
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[test,infra]'
	@if [ -f package.json ]; then npm install --no-audit --no-fund --loglevel=error; fi
	@rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP)

## Run the single-machine stack on 127.0.0.1:$${PORT:-8000} (state in $${COGPLANE_HOME:-.cogplane})
up: $(STAMP)
	@exec $(VENV)/bin/cogplane up

## Install what the tests need and run them all (slow real-model tests included)
test: $(STAMP) synth
	$(PY) -m pytest -q

## The quick loop: everything but the slow real-model tests
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check cogplane functions gpu_runner tests bench infra

bench: $(STAMP)
	$(PY) -m bench

## Synthesize the AWS stack offline (no Docker, no AWS account): cdk.out/
synth: $(STAMP)
	JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 $(PY) -m infra.app

## Stage the Lambda asset (cogplane + functions + Linux wheels) under .build/lambda
package-lambda: $(STAMP)
	scripts/package_lambda.sh

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache
