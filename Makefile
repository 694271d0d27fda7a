# dms: `make run` sets everything up and runs a first deployment on a local three-node
# network; `make test` sets everything up and runs the suite. Every other target is a
# convenience for developers.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSDEPS := $(VENV)/.sysdeps

.PHONY: all setup run test test-fast lint typecheck bench lock clean fixtures

all: setup

$(SYSDEPS): scripts/system-deps.sh
	scripts/system-deps.sh
	@mkdir -p $(VENV) && touch $@

$(STAMP): pyproject.toml constraints.txt $(SYSDEPS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

setup: $(STAMP) fixtures

# WASM fixtures and examples, built from C (clang's wasm32-wasi target) and WAT (wabt) into
# build/wasm/, only when a source changed. Tests find them there.
WASM_OUT := build/wasm
WASM_CC := clang --target=wasm32-wasi --sysroot=/usr -O2 -Wall -Wextra
WASM_FIXTURES := $(patsubst wasm/%.c,$(WASM_OUT)/%.wasm,$(wildcard wasm/*.c)) \
	$(patsubst wasm/%.wat,$(WASM_OUT)/%.wasm,$(wildcard wasm/*.wat)) \
	$(WASM_OUT)/hello.wasm

fixtures: $(STAMP) $(WASM_FIXTURES)

$(WASM_OUT)/%.wasm: wasm/%.c | $(SYSDEPS)
	@mkdir -p $(@D)
	$(WASM_CC) $< -o $@

$(WASM_OUT)/%.wasm: wasm/%.wat | $(SYSDEPS)
	@mkdir -p $(@D)
	wat2wasm $< -o $@

$(WASM_OUT)/hello.wasm: examples/hello/hello.c | $(SYSDEPS)
	@mkdir -p $(@D)
	$(WASM_CC) $< -o $@

# Three real nodes on 127.0.0.1 (homes in a temporary folder), hello.wasm deployed from node 1,
# its output and placement printed, then every node stopped.
run: setup
	$(VENV)/bin/dms devstack --nodes 3 --deploy examples/hello.yaml

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy --strict src

bench: setup
	$(PY) bench/run_all.py

# Re-resolve the pins from pyproject.toml into constraints.txt.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install -q -e '.[dev]'
	{ head -n 2 constraints.txt; .lock-venv/bin/pip freeze --exclude-editable | grep -v '^dms'; } > constraints.new
	mv constraints.new constraints.txt && rm -rf .lock-venv

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache .hypothesis
