# Everything the README names. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
EXAMPLES := -f examples/workflows -f examples/sinks -f examples/sources -f examples/operatorconfigs/punchingfist-config.yaml
OUT ?= build/demo

.PHONY: install demo examples test lint unit integration e2e cluster control-plane cluster-build \
	cluster-up cluster-down cluster-status system-deps vault crds golden bench bench-cluster clean

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

## test: lint, types, import contracts, unit + golden + drift tests, the integration tier on
## real servers, the e2e tier on a real control plane (built once into ~/.cache/punchingfist by
## `make control-plane`), then the cluster tier on a real node (`make cluster-up`; left running)
test: install lint unit integration e2e cluster

lint: install
	$(VENV)/bin/ruff check punchingfist tests benchmarks scripts hack
	$(VENV)/bin/ruff format --check punchingfist tests benchmarks scripts hack
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

unit: install
	$(PY) -m pytest tests/unit tests/golden

## integration: real servers from Debian packages (Prometheus) and Vault (`make vault`), started
## by the tests
integration: install system-deps vault
	$(PY) -m pytest tests/integration

system-deps:
	@hack/system-deps.sh

## vault: build the Vault server the secret-reference tests start (cached per version; minutes
## the first time). Exit 3 = no Go: outside CI those tests then skip with that reason.
vault:
	@hack/vault/build.sh; rc=$$?; \
	if [ $$rc -eq 3 ] && [ -z "$$CI" ]; then echo "vault not built: no Go"; \
	elif [ $$rc -ne 0 ]; then exit $$rc; fi

e2e: install control-plane
	$(PY) -m pytest tests/e2e

## cluster: the cluster tier (tests/cluster) on the single-node cluster, started (or reused) by
## cluster-up. Where it cannot start, the tier is skipped with the reason; in CI that fails.
cluster: install
	@if $(MAKE) --no-print-directory cluster-up; then $(PY) -m pytest tests/cluster; \
	elif [ -n "$$CI" ]; then echo "the cluster did not start (CI=$$CI: the cluster tier must run)"; exit 1; \
	else echo "the cluster did not start: the cluster tier is skipped (see above)"; fi

## cluster-build: build the node, containerd, CoreDNS, Argo's executor and the images (cached)
cluster-build: system-deps
	@hack/cluster/build.sh

## cluster-up: build what is missing, then start a single-node cluster on this machine (or reuse
## the running one) with Argo, the chart and the examples installed; prints its kubeconfig
cluster-up: install cluster-build
	@$(PY) -m hack.cluster up

## cluster-down: stop every process cluster-up started and remove the cluster's state
cluster-down: install
	@$(PY) -m hack.cluster down

cluster-status: install
	@$(PY) -m hack.cluster status

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
	$(PY) benchmarks/storm.py
	$(PY) benchmarks/engine.py
	$(PY) benchmarks/reconcile.py
	$(PY) benchmarks/evals.py

## bench-cluster: runs on the single-node cluster (`make cluster-up` first): alert -> Workflow,
## pod, first model request, Succeeded (p50/max of 10) beside the local engine; a 20-alert burst
## with peak memory; argo submit to Succeeded and pod overhead per step
bench-cluster: install
	$(PY) benchmarks/cluster.py

clean:
	rm -rf $(VENV) build .mypy_cache .ruff_cache .pytest_cache
