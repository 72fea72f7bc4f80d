# cogplane — the two commands: `make up` (run the platform on this machine) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HASH := $(shell cat pyproject.toml package.json 2>/dev/null | sha1sum | cut -c1-12)
RUNTIME := $(VENV)/.runtime-$(HASH)
TESTING := $(VENV)/.testing-$(HASH)
PIP := $(PY) -m pip install -q --disable-pip-version-check
LAMBDA_ASSET := .build/lambda/.staged
LAMBDA_SOURCES := $(shell find cogplane functions -type f -not -path '*/__pycache__/*' 2>/dev/null)
ASSEMBLY := cdk.out/manifest.json
INFRA_SOURCES := $(shell find infra -name '*.py' 2>/dev/null)

.PHONY: up sim-aws test test-fast lint bench install clean synth package-lambda

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

## The deployed shape, simulated offline on this machine: moto (AWS services made from cdk.out),
## the packaged Lambda functions under Python 3.12, API Gateway/Function URL/ECS emulators (README)
sim-aws: $(TESTING) $(ASSEMBLY)
	@exec $(PY) -m simaws

# System suites that also run on the simulated deployment (`--shape sim-aws`, one simulation per
# session; tests of single-machine features are skipped there with their reason). Each passes on
# both shapes; `pytest --shape sim-aws tests/system` runs them all.
SIM_SUITES := $(addprefix tests/system/,test_teams_e2e.py test_trainings_e2e.py test_stack.py test_js_client.py \
	test_webhooks_e2e.py test_stop.py test_large_uploads.py test_client_compat.py test_deployments_e2e.py \
	test_cog_behaviours_e2e.py test_logs.py test_secrets_e2e.py test_models_e2e.py)

## Install what the tests need, lint (make lint: about 10 s of CPU), and run them all (slow real-model tests included)
test: $(TESTING) lint $(ASSEMBLY)
	$(PY) -m pytest -q
	@echo "The system suites that run on both shapes, now on the simulated deployment (make sim-aws) ..."
	$(PY) -m pytest -q --shape sim-aws $(SIM_SUITES)

## The quick loop: everything but the slow real-model tests
test-fast: $(TESTING)
	$(PY) -m pytest -q -m "not slow"

LINT_PATHS := cogplane functions gpu_runner local tests bench infra simaws scripts

## ruff (rules in pyproject.toml: ANN, S and C901 on the core), ruff format --check, mypy (zero findings)
lint: $(TESTING)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy

bench: $(TESTING)
	$(PY) -m bench

## Synthesize the AWS stack offline (no Docker, no AWS account) into cdk.out/, with the staged
## Lambda asset (CONTEXT='-c key=value ...' adds CDK context, e.g. -c cogplane:alarmEmail=you@example.com)
synth: $(TESTING) $(LAMBDA_ASSET)
	@echo "Synthesizing the AWS stack (offline) into cdk.out ..."
	@JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 $(PY) -m infra.app $(CONTEXT) > $(VENV)/synth.log 2>&1 || { cat $(VENV)/synth.log; exit 1; }
	@touch $(ASSEMBLY)

## Stage the Lambda asset (cogplane + functions + Linux wheels) under .build/lambda
package-lambda: $(TESTING)
	scripts/package_lambda.sh
	@touch $(LAMBDA_ASSET)

# Rebuilt only when what goes into them changed (sim-aws and test use them).
$(LAMBDA_ASSET): $(TESTING) scripts/package_lambda.sh $(LAMBDA_SOURCES)
	@echo "Staging the Lambda asset (.build/lambda) ..."
	@scripts/package_lambda.sh > $(VENV)/package-lambda.log 2>&1 || { cat $(VENV)/package-lambda.log; exit 1; }
	@touch $@

$(ASSEMBLY): $(LAMBDA_ASSET) cdk.json $(INFRA_SOURCES)
	@echo "Synthesizing the AWS stack (offline) into cdk.out ..."
	@JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 $(PY) -m infra.app > $(VENV)/synth.log 2>&1 || { cat $(VENV)/synth.log; exit 1; }
	@touch $@

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache cdk.out .build
