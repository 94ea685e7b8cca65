# Tamales sales forecasting platform — `make` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
export BENTOML_DO_NOT_TRACK := true
export DO_NOT_TRACK := 1
export GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT := false
# Prefect's temporary API server can take longer than its default wait to start on a busy 2-core machine.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
# The project's own state (feature store file, MLflow DB). Prefect and BentoML keep their default homes
# (PREFECT_HOME / BENTOML_HOME if set), so `uv run bentoml list` etc. in a fresh shell see what `make run` built.
export TAMALES_STATE_DIR ?= $(CURDIR)/.tamales

UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
# Tools started by make (bentoml build runs uv) find the same uv.
export PATH := $(dir $(UV)):$(PATH)
SAMPLE_DIR ?= data/sample_delivery
PORT ?= 3000

.PHONY: help setup run test test-fast typecheck deadcode lint format sample pipeline serve test-container bench-accuracy bench-features bench-scale bench-serve soak clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

setup: ## Install uv if missing and sync the locked environment
	@command -v $(UV) >/dev/null 2>&1 || python3 -m pip install --user --quiet uv \
		|| python3 -m pip install --user --quiet --break-system-packages uv  # PEP 668 distributions
	$(UV) sync --frozen

sample: setup ## Generate the sample deliveries (if absent)
	@test -d $(SAMPLE_DIR) || $(UV) run --frozen python -m features.synth --out $(SAMPLE_DIR)

run: sample ## End to end on sample data: ingest → features → train → package → forecasts, then serve the bento
	$(UV) run --frozen python -m flows.pipeline --source $(SAMPLE_DIR)
	$(UV) run --frozen python -m flows.serve_latest --port $(PORT)

test: setup ## Lint, format check, type check, then every test
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy
	$(UV) run --frozen pytest

test-fast: setup ## The tests that need no server, emulator, flow run, bento or container (< 60 s)
	$(UV) run --frozen pytest -m "not integration" -q

lint: setup ## ruff check + format check + mypy
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy

typecheck: setup ## mypy on features/ training/ service/ flows/ (configured in pyproject.toml)
	$(UV) run --frozen mypy

deadcode: setup ## vulture: unused code (configured in pyproject.toml; vulture_whitelist.py lists framework hooks)
	$(UV) run --frozen vulture

format: setup ## Apply ruff fixes and formatting
	$(UV) run --frozen ruff check --fix .
	$(UV) run --frozen ruff format .

test-container: setup ## Build the bento's image with podman and check it answers
	bash scripts/test_container.sh

bench-accuracy: setup ## Backtest table (model vs naive and statsforecast baselines) on generated deliveries (~25 min)
	$(UV) run --frozen python bench/accuracy.py --profiles realistic,easy --seeds 1,2,3,4,5,6,7,8

bench-features: setup ## Benchmark ingest + features on 10 M raw rows
	$(UV) run --frozen python bench/features.py

bench-scale: setup ## Benchmark the polars engine at 10/50/100 M raw rows (~25 min, ~15 GB of disk in bench/out)
	$(UV) run --frozen python bench/features.py --rows 10000000 50000000 100000000 --workdir bench/out/scale

bench-serve: setup ## Benchmark the predict route vs a no-op BentoML service (wrk)
	bash bench/serve.sh

soak: setup ## 10-minute soak of the predict route
	bash bench/soak.sh

clean: ## Remove local state, lake and sample data
	rm -rf .tamales data
