# Ondas: `make up` runs the platform on this machine, `make test` runs every test. `make help` lists all.
SHELL := /bin/bash
PY := .venv/bin/python
FORMAT ?= table
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install up down status test test-unit test-integration test-e2e lint

help: ## List the targets and what they do
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

install: ## Install what is missing: Debian packages and the Python venv (.venv); idempotent
	@scripts/install.sh

up: install ## Install what is missing, start the whole platform on 127.0.0.1, print where everything is
	@$(PY) -m ondasctl up

down: ## Stop exactly what `make up` started (by PID)
	@if [ -x $(PY) ]; then $(PY) -m ondasctl down; else echo "==> nothing to stop (no .venv)"; fi

status: ## Show every process and its health (FORMAT=json for one JSON object)
	@$(PY) -m ondasctl status --format $(FORMAT)

test: install lint ## Install what is missing, lint, then run the whole test suite (unit, integration, e2e)
	@echo "==> running the test suite"
	@$(PY) -m pytest $(PYTEST_ARGS)

test-unit: install ## Only the unit tests (no servers)
	@$(PY) -m pytest -m unit $(PYTEST_ARGS)

test-integration: install ## Only the integration tests (real servers on free ports)
	@$(PY) -m pytest -m integration $(PYTEST_ARGS)

test-e2e: install ## Only the end-to-end tests (the whole platform through the gateway)
	@$(PY) -m pytest -m e2e $(PYTEST_ARGS)

lint: install ## ruff (lint and format check), import rules (import-linter), mypy, and decK's check of gateway/kong.yml
	@echo "==> lint: ruff, lint-imports, mypy and deck validate"
	@.venv/bin/ruff check --quiet .
	@.venv/bin/ruff format --check --quiet .
	@out=$$(.venv/bin/lint-imports --no-cache --no-logo 2>&1) || { echo "$$out"; exit 1; }
	@.venv/bin/mypy --no-error-summary ondas ondasctl auth device_manager history persister agents x509_mgmt flowbroker kafka_ws
	@deck validate -s gateway/kong.yml
