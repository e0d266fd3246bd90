# go-k8s-debug: `make demo` opens the console on the sandbox cluster; `make test` runs every test.
# Both call `make setup`, which is idempotent and caches what it builds.

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# `make bench BENCH=console_hour` runs named benchmarks only (the hour-long one is never a default).
BENCH ?=

.PHONY: setup demo test bench lint sandbox-down screenshots clean

setup:
	@bash demo/setup.sh

demo: setup
	@$(VENV)/bin/go-k8s-debug sandbox up --nodes 2 --demo
	@$(VENV)/bin/go-k8s-debug --kubeconfig "$$($(VENV)/bin/go-k8s-debug sandbox kubeconfig)" -n demo

test: setup
	@$(VENV)/bin/ruff check tui bpf demo tests
	@$(VENV)/bin/lint-imports
	@$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	@$(PY) -m tests.bench.run $(BENCH)

screenshots: setup
	@$(PY) screenshots/capture.py

sandbox-down:
	@$(VENV)/bin/go-k8s-debug sandbox down

clean:
	rm -rf $(VENV) build
