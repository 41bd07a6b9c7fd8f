# Two commands on a fresh machine: `make demo` and `make test`.
# Both create the local virtual environment (.venv) on first use. `make demo`
# installs only what the demo needs (the package's dependencies and the
# `demo` extra); `make test` installs the rest (the `test` extra: server,
# Ray, deepagents, selenium, ruff, mypy, ...). Either order works, and
# either alone.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# Installs into .venv. When $(PYTHON) has pip, the venv is made without its
# own copy (`ensurepip` alone took 3-8 s, a third of a first `make demo`) and
# that pip installs into it (`pip --python`); otherwise the venv brings pip.
# --no-compile: modules are byte-compiled when first imported, not all at
# install time (Ray alone is thousands of files the demo never imports).
PIP = $(if $(wildcard $(VENV)/bin/pip),$(PY) -m pip,$(PYTHON) -m pip --python $(PY)) install --quiet --no-compile
DEMO_STAMP := $(VENV)/.demo-installed
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck architecture unit bench bench-quick clean

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python >= 3.11) on PATH, or run: make PYTHON=python3 ..."; exit 1; }
	@if $(PYTHON) -m pip --version >/dev/null 2>&1; then $(PYTHON) -m venv --without-pip $(VENV); \
	else $(PYTHON) -m venv $(VENV); fi

# The demo runs from the source tree (PYTHONPATH=src), so it needs only the
# package's dependencies and the demo extra, read from pyproject.toml: no
# build of the package (its isolated build environment alone cost ~3 s of CPU,
# ~10 s on a busy machine). The test stamp covers the demo (the test extra
# includes the demo extra).
DEMO_DEPS = $(shell $(PYTHON) -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print(' '.join(repr(d) for d in p['dependencies'] + p['optional-dependencies']['demo']))")

$(DEMO_STAMP): pyproject.toml | $(PY)
	@if [ $(STAMP) -nt pyproject.toml ]; then echo "demo: already installed by make test"; \
	else echo "installing what the demo needs into $(VENV): $(DEMO_DEPS)"; \
	$(PIP) $(DEMO_DEPS); fi
	touch $(DEMO_STAMP)

$(STAMP): pyproject.toml | $(PY)
	@echo "installing the package and the test extra (server, ray, deepagents, demo, selenium, pytest, ruff, mypy, ...) into $(VENV)"
	$(PIP) -e '.[test]'
	touch $(STAMP)

demo: $(DEMO_STAMP)
	PYTHONPATH=src $(PY) -m subagent_exec.demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src/ tests/ examples/ benchmarks/

typecheck: $(STAMP)
	$(VENV)/bin/mypy src/

# No import cycles and the layers of docs/architecture.md ([tool.importlinter] in pyproject.toml).
architecture: $(STAMP)
	$(VENV)/bin/lint-imports --no-cache --no-logo

unit: $(STAMP)
	$(PY) -m pytest -q

test: lint typecheck architecture unit

bench: $(STAMP)
	$(PY) -m benchmarks

bench-quick: $(STAMP)
	$(PY) -m benchmarks --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
