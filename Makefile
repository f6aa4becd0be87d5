# offload: `make dev` runs the whole system on a local AWS, `make test` runs every test.
# Both create .venv and install what they need the first time (and when pyproject.toml changes).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: dev test soak lint format install clean package bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# Only the CPU build of torch 2.13.0 is installable offline here; installing it first
	# keeps pip from resolving another torch with gigabytes of CUDA packages.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[api,worker,gpu,dev]'
	touch $(STAMP)

install: $(STAMP)

dev: $(STAMP)
	$(BIN)/offload dev

test: $(STAMP)
	$(BIN)/pytest

# The fault suite at larger counts (minutes): 10 worker kills, a burst of 1000 jobs.
soak: $(STAMP)
	OFFLOAD_SOAK_KILLS=10 OFFLOAD_SOAK_BURST=1000 $(BIN)/pytest tests/e2e/test_faults.py

# The API function's deployment package for template.yaml's runtime: build/api/ (its
# CodeUri) and build/api.zip, checked against Lambda's size limits.
package: $(STAMP)
	$(BIN)/python -m infra.package

# The figures in BENCHMARKS.md: the API handler's cold start against a bare FastAPI + Mangum
# app, and embedding throughput with batched jobs against one job per forward pass.
bench: $(STAMP)
	$(BIN)/python -m bench.cold_start
	$(BIN)/python -m bench.embeddings

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
