# Everything the README names. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
EXAMPLES := -f examples/workflows -f examples/sinks -f examples/sources -f examples/operatorconfigs/punchingfist-config.yaml
OUT ?= build/demo

.PHONY: install demo examples test lint unit integration e2e control-plane system-deps crds golden bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

## demo: the main job on this machine, offline: the embedded server on the examples, the sample
## crash-loop alert fired at its webhook, the investigation run on the local engine, the stored
## alert, incident, run and report shown (a recorded model is replayed when none is configured)
demo: install
	$(VENV)/bin/punchingfist demo

## examples: compile the design document's examples into Argo WorkflowTemplates (build/demo/)
examples: install
	@mkdir -p $(OUT)
	$(VENV)/bin/punchingfist compile $(EXAMPLES) > $(OUT)/workflowtemplates.yaml
	$(VENV)/bin/punchingfist crds --output-dir $(OUT)/crds
	@$(PY) scripts/summarize.py $(OUT)/workflowtemplates.yaml

## test: lint, types, import contracts, unit + golden + drift tests, then the e2e tier on a
## real control plane (built once into ~/.cache/punchingfist by `make control-plane`)
test: install lint unit integration e2e

lint: install
	$(VENV)/bin/ruff check punchingfist tests benchmarks scripts
	$(VENV)/bin/ruff format --check punchingfist tests benchmarks scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

unit: install
	$(PY) -m pytest tests/unit tests/golden

## integration: real servers from Debian packages (Prometheus), started by the tests
integration: install system-deps
	$(PY) -m pytest tests/integration

system-deps:
	@hack/system-deps.sh

e2e: install control-plane
	$(PY) -m pytest tests/e2e

## control-plane: build etcd, kube-apiserver, Argo's workflow-controller and argo (cached)
## (exit 3 = no Go: outside CI the e2e tests then skip with that reason; in CI it fails)
control-plane:
	@hack/control-plane/build.sh; rc=$$?; \
	if [ $$rc -eq 3 ] && [ -z "$$CI" ]; then echo "e2e control plane not built: no Go"; \
	elif [ $$rc -ne 0 ]; then exit $$rc; fi

## crds: regenerate crds/ from the API models
crds: install
	$(VENV)/bin/punchingfist crds --output-dir crds
	$(VENV)/bin/punchingfist crds --output-dir charts/punchingfist/crds

## golden: regenerate the compiler golden files (review the diff!)
golden: install
	PF_UPDATE_GOLDEN=1 $(PY) -m pytest tests/golden -q

bench: install
	$(PY) benchmarks/compile.py
	$(PY) benchmarks/agent_loop.py
	$(PY) benchmarks/intake.py
	$(PY) benchmarks/engine.py
	$(PY) benchmarks/reconcile.py

clean:
	rm -rf $(VENV) build .mypy_cache .ruff_cache .pytest_cache
