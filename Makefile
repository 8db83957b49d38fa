# modelcanary: the two commands a newcomer types are `make demo` and `make test`.
# Every target that needs Python depends on `setup`, which builds .venv once.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed
REPO   ?= model_repo
MINUTES ?= 10

.DEFAULT_GOAL := help
.PHONY: help setup test chaos lint demo bench soak model-repo clean

help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-11s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: $(STAMP) ## Prometheus and Alertmanager (apt, as root), .venv with modelcanary, Triton, helm, kubectl, envtest, perf_analyzer

$(STAMP): pyproject.toml constraints.txt scripts/install-system-packages.sh scripts/install-kube-tools.sh scripts/install-envtest.sh scripts/install-perf-analyzer.sh
	bash scripts/install-system-packages.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	$(BIN)/modelcanary triton install
	bash scripts/install-kube-tools.sh $(BIN)
	bash scripts/install-envtest.sh $(VENV)/envtest $(BIN)
	bash scripts/install-perf-analyzer.sh $(VENV)
	touch $(STAMP)

test: setup ## run the test suite
	$(PY) -m pytest -q

chaos: setup ## kill parts of a real `modelcanary up` under load (kill -9); serving must go on
	$(PY) -m pytest -q tests/stack/test_chaos.py

lint: setup ## ruff (lint and format check), mypy and the import contracts (lint-imports)
	$(BIN)/ruff check operator tests benchmarks
	$(BIN)/ruff format --check operator tests benchmarks
	$(BIN)/mypy
	PYTHONPATH=operator $(BIN)/lint-imports --no-cache --no-logo

model-repo: setup ## build the example model repository (digits v1 to v5) in $(REPO)
	$(BIN)/modelcanary examples build --repo $(REPO)

demo: model-repo ## five local rollouts end to end (promote; roll back by the gate, the shadow, errors, latency) and a report
	$(BIN)/modelcanary repo verify --repo $(REPO)
	$(BIN)/modelcanary demo --repo $(REPO)

bench: model-repo ## export time; gateway overhead; fault-to-rollback; the gate; decisions; the judge's CPU; the soak (MINUTES=10)
	$(PY) benchmarks/bench_export.py
	$(PY) benchmarks/bench_gateway.py
	$(PY) benchmarks/bench_http_layer.py
	$(PY) benchmarks/bench_rollback.py --repo $(REPO)
	$(PY) benchmarks/bench_gate.py --repo $(REPO)
	$(PY) benchmarks/bench_shadow.py --repo $(REPO)
	$(PY) benchmarks/bench_decisions.py
	$(PY) benchmarks/bench_judge.py
	$(PY) benchmarks/bench_soak.py --repo $(REPO) --minutes $(MINUTES)

soak: model-repo ## 200 requests/s, rollouts, a monitor killed every minute, for MINUTES (10)
	$(PY) benchmarks/bench_soak.py --repo $(REPO) --minutes $(MINUTES)

clean: ## remove the virtual environment, built repositories and caches
	rm -rf $(VENV) $(REPO) .pytest_cache .mypy_cache .ruff_cache
