# cogplane — the two commands: `make up` (run the platform on this machine) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HASH := $(shell cat pyproject.toml package.json 2>/dev/null | sha1sum | cut -c1-12)
RUNTIME := $(VENV)/.runtime-$(HASH)
TESTING := $(VENV)/.testing-$(HASH)
PIP := $(PY) -m pip install -q --disable-pip-version-check

.PHONY: up test test-fast lint bench install clean synth package-lambda

$(VENV)/bin/python:
	@$(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade pip > $(VENV)/install.log 2>&1

# What `make up` needs: the platform itself.
$(RUNTIME): pyproject.toml $(VENV)/bin/python
	@echo "Installing cogplane into $(VENV) (log: $(VENV)/install.log) ..."
	@$(PIP) -e . >> $(VENV)/install.log 2>&1 || { tail -30 $(VENV)/install.log; exit 1; }
	@rm -f $(VENV)/.runtime-*; touch $@

# What `make test` needs on top: test tools, the CDK libraries, the JS client.
$(TESTING): $(RUNTIME) package.json
	@echo "Installing the test tools (pytest, moto, replicate, playwright, aws-cdk-lib, npm replicate) ..."
	@$(PIP) -e '.[test,infra]' >> $(VENV)/install.log 2>&1 || { tail -30 $(VENV)/install.log; exit 1; }
	@npm install --no-audit --no-fund --loglevel=error >> $(VENV)/install.log 2>&1 || { tail -30 $(VENV)/install.log; exit 1; }
	@rm -f $(VENV)/.testing-*; touch $@

install: $(TESTING)

## Run the single-machine stack on 127.0.0.1:$${PORT:-8000} (state in $${COGPLANE_HOME:-.cogplane})
up: $(RUNTIME)
	@exec $(VENV)/bin/cogplane up

## Install what the tests need and run them all (slow real-model tests included)
test: $(TESTING) synth
	$(PY) -m pytest -q

## The quick loop: everything but the slow real-model tests
test-fast: $(TESTING)
	$(PY) -m pytest -q -m "not slow"

lint: $(TESTING)
	$(VENV)/bin/ruff check cogplane functions gpu_runner tests bench infra

bench: $(TESTING)
	$(PY) -m bench

## Synthesize the AWS stack offline (no Docker, no AWS account): cdk.out/
synth: $(TESTING)
	@echo "Synthesizing the AWS stack (offline) ..."
	@JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 $(PY) -m infra.app > $(VENV)/synth.log 2>&1 || { cat $(VENV)/synth.log; exit 1; }

## Stage the Lambda asset (cogplane + functions + Linux wheels) under .build/lambda
package-lambda: $(TESTING)
	scripts/package_lambda.sh

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache cdk.out .build
