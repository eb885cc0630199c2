# Everything the README names. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
EXAMPLES := -f examples/workflows -f examples/sinks -f examples/sources -f examples/operatorconfigs/punchingfist-config.yaml
OUT ?= build/demo

.PHONY: install demo test lint unit crds golden bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

## demo: compile the design document's examples into Argo WorkflowTemplates
demo: install
	@mkdir -p $(OUT)
	$(VENV)/bin/punchingfist compile $(EXAMPLES) > $(OUT)/workflowtemplates.yaml
	$(VENV)/bin/punchingfist crds --output-dir $(OUT)/crds
	@$(PY) scripts/summarize.py $(OUT)/workflowtemplates.yaml

## test: lint, types, import contracts, unit + golden + drift tests
test: install lint unit

lint: install
	$(VENV)/bin/ruff check punchingfist tests benchmarks scripts
	$(VENV)/bin/ruff format --check punchingfist tests benchmarks scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

unit: install
	$(PY) -m pytest

## crds: regenerate crds/ from the API models
crds: install
	$(VENV)/bin/punchingfist crds --output-dir crds

## golden: regenerate the compiler golden files (review the diff!)
golden: install
	PF_UPDATE_GOLDEN=1 $(PY) -m pytest tests/golden -q

bench: install
	$(PY) benchmarks/compile.py

clean:
	rm -rf $(VENV) build .mypy_cache .ruff_cache .pytest_cache
