# Two commands on a fresh machine: `make demo` and `make test`.
# Both create the local virtual environment (.venv) on first use.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck architecture unit bench bench-quick clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python >= 3.11) on PATH, or run: make PYTHON=python3 ..."; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m subagent_exec.demo

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
