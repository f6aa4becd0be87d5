# offload: `make dev` runs the whole system on a local AWS, `make test` runs every test.
# Both create .venv and install what they need the first time (and when pyproject.toml changes).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: dev test soak lint format install clean package bench validate

# The SAM CLI and cfn-lint live in a virtualenv of their own: the SAM CLI pins boto3,
# Flask and others to versions of its own choosing.
TOOLS       := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# Only the CPU build of torch 2.13.0 is installable offline here; installing it first
	# keeps pip from resolving another torch with gigabytes of CUDA packages.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[api,worker,gpu,dev]'
	touch $(STAMP)

install: $(STAMP)

$(TOOLS_STAMP): Makefile
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS)/bin/python -m pip install --quiet aws-sam-cli==1.170.0 cfn-lint==1.58.0
	touch $(TOOLS_STAMP)

# template.yaml as CloudFormation (cfn-lint) and as SAM (the SAM CLI's own lint). Offline.
validate: $(TOOLS_STAMP)
	$(TOOLS)/bin/cfn-lint template.yaml
	SAM_CLI_TELEMETRY=0 $(TOOLS)/bin/sam validate --lint --region us-east-1 --template-file template.yaml

dev: $(STAMP)
	$(BIN)/offload dev

# Debian's chromium, which the dashboard's browser test drives (never `playwright install`).
CHROMIUM := /usr/bin/chromium
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
$(CHROMIUM):
	$(SUDO) apt-get install -y --no-install-recommends chromium || \
	  ($(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium)

test: $(STAMP) validate $(CHROMIUM)
	$(BIN)/pytest

# The fault suites at larger counts (minutes): 10 worker kills, a burst of 1000 jobs; then
# 500 jobs through a flaky AWS (8% of every service's requests refused, 8% dropped after
# being done, 8% slowed) with 10 worker kills on top (RELIABILITY.md).
soak: $(STAMP)
	OFFLOAD_SOAK_KILLS=10 OFFLOAD_SOAK_BURST=1000 $(BIN)/pytest tests/e2e/test_faults.py
	OFFLOAD_FLAKY_JOBS=500 OFFLOAD_FLAKY_RATE=0.08 OFFLOAD_FLAKY_KILLS=10 OFFLOAD_FLAKY_SECONDS=1 \
	  $(BIN)/pytest -s tests/e2e/test_flaky_aws.py

# The API function's deployment package for template.yaml's runtime: build/api/ (its
# CodeUri) and build/api.zip, checked against Lambda's size limits.
package: $(STAMP)
	$(BIN)/python -m infra.packaging.package

# The figures in BENCHMARKS.md (issue 8), side by side on this machine, in about 8 minutes:
# API latency under heavy work (offload vs BackgroundTasks), dispatch (vs plain Celery on
# the same moto SQS and on Redis), AWS requests and price per job, the handler's cold start
# and package size, inline work on Lambda (vs Mangum + BackgroundTasks), and embedding
# batching; then the summary table. OFFLOAD_BENCH_QUICK=1 shrinks every count (a smoke run).
# Debian's redis-server is installed when missing; when that fails, the Redis comparison is
# skipped with a note. A goal missed is reported in BENCHMARKS.md, not as a failure: the
# cold start's exit status says whether it met its budget, and the rest runs regardless.
bench: $(STAMP)
	command -v redis-server >/dev/null || $(SUDO) apt-get install -y --no-install-recommends redis-server || \
	  ($(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends redis-server) || \
	  echo "redis-server not installed: the dispatch benchmark skips Celery on Redis"
	-$(BIN)/python -m bench.cold_start
	$(BIN)/python -m bench.load
	$(BIN)/python -m bench.dispatch
	$(BIN)/python -m bench.cost
	$(BIN)/python -m bench.inline_lambda
	$(BIN)/python -m bench.embeddings
	$(BIN)/python -m bench.summary

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	# The engine's layers (pyproject.toml), then no import cycle and no module too long.
	$(BIN)/lint-imports
	$(BIN)/python -m infra.architecture

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) $(TOOLS) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
