# DVC pipeline orchestrated by Prefect 3. `make` lists the targets and knobs.
# Every target sets up what it needs (.venv, then the data), so on a fresh clone `make run-dvc`
# alone works.

# Knobs: override per command (`make run-dvc FAIL_ONCE=1`) or export them. The `##` line above
# each one documents it, and `make help` lists them from those lines.
## 1: a task fails its first attempt on purpose, to show the retry
FAIL_ONCE ?= 0
## 0: no metrics log line and table at the end (the artifact is still published)
SHOW_METRICS ?= 1
## the params file Option B runs with
PARAMS ?= params.yaml
## stages (Option C) or trials (sweep, on threads) at once; empty: the number of CPUs
JOBS ?=
## the sweep that `make sweep` runs; empty: the repository's sweep.yaml
SWEEP ?=
## another DVC repository to run (run-dvc, run-dvc-stages) or sweep; empty: this one
REPO ?=
## plots: a git revision or DVC experiment to draw beside the workspace (as dvc plots diff REV); empty: the workspace
REV ?=
## a Dask scheduler, tcp://host:8786, to run the sweep's trials on; empty: threads here
DASK_ADDRESS ?=
## worker processes that dask-start starts here, or that dask-worker adds
DASK_WORKERS ?= 2
# dask-start listens here; for workers on other machines, this machine's address on a network you
# trust: Dask runs whatever its clients send.
## the address dask-start's scheduler and workers listen on
DASK_HOST ?= 127.0.0.1
## the port of dask-start's scheduler
DASK_PORT ?= 8786
# Server address: the defaults live in prefect.toml (host 127.0.0.1, port 4200). These override
# them for the server and the client alike; pass the same to the run targets, or export them.
## the Prefect server's host (prefect.toml: 127.0.0.1)
PREFECT_HOST ?=
## the Prefect server's port (prefect.toml: 4200), e.g. 4300
PREFECT_PORT ?=
## user:pass: the server asks for it (not its health check), the client sends it
PREFECT_AUTH ?=
# The database: like PREFECT_PORT, pass it to prefect-start, prefect-status and doctor alike.
## the server's database: empty for SQLite in .prefect/, or postgresql+asyncpg://...
PREFECT_DB_URL ?=
## deploy, serve: a cron string ('0 3 * * *', UTC) or seconds; empty: none
SCHEDULE ?=
# Kept on the server, so `make deploy` without it leaves the last one in place.
## deploy: where the server POSTs (JSON) when a kit run ends Failed or Crashed
NOTIFY_URL ?=
## deploy: seconds without a heartbeat (one every 30 s) before a run is marked Crashed
CRASH_AFTER ?= 90
## bench: runs of each case (the table shows medians)
BENCH_RUNS ?= 3
## bench-scale: the rows of the iris-shaped data (150: the kit's own iris)
ROWS ?= 2000000
## test: test files run this many at a time, each with its own server (they mostly wait)
TEST_WORKERS ?= 2
## the interpreter that builds .venv
PYTHON ?= python3

VENV := .venv
RAW_DATA := data/raw/iris.csv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
# flock (util-linux) keeps two first runs from building .venv at once; where there is none
# (macOS), the build runs unguarded.
VENV_LOCK := $(if $(shell command -v flock),flock $(VENV).lock)

# The knobs the flows share, as their flags.
FLOW_FLAGS = $(if $(filter 1,$(FAIL_ONCE)),--fail-once) $(if $(filter 0,$(SHOW_METRICS)),--no-show-metrics)

ifneq ($(PREFECT_HOST),)
export PREFECT_SERVER_API_HOST := $(PREFECT_HOST)
endif
ifneq ($(PREFECT_PORT),)
export PREFECT_SERVER_API_PORT := $(PREFECT_PORT)
endif
ifneq ($(PREFECT_AUTH),)
export PREFECT_SERVER_API_AUTH_STRING := $(PREFECT_AUTH)
export PREFECT_API_AUTH_STRING := $(PREFECT_AUTH)
endif
ifneq ($(PREFECT_DB_URL),)
export PREFECT_SERVER_DATABASE_CONNECTION_URL := $(PREFECT_DB_URL)
endif

.DEFAULT_GOAL := help

.PHONY: help  ## List the targets and the knobs (this list)
help:
	@echo "Targets:"
	@awk '/^\.PHONY: [a-z-]+ +## / { name = $$2; sub(/^[^#]*## /, ""); printf "  %-16s %s\n", name, $$0 }' $(MAKEFILE_LIST)
	@echo "Knobs (make TARGET KNOB=value; the default after =):"
	@awk '/^## / { doc = substr($$0, 4); next } /^[A-Z_]+ \?=/ && doc { value = $$0; sub(/^[^=]*= ?/, "", value); \
		printf "  %-28s %s\n", $$1 "=" value, doc } { doc = "" }' $(MAKEFILE_LIST)

.PHONY: setup  ## Build .venv from requirements.txt (again only when requirements change)
setup: $(STAMP)

# A stamp file: the venv is rebuilt only when requirements.txt is newer. Of two first runs on a
# fresh clone, the second waits for the first's build, finds it built and goes on.
# --compile-bytecode: uv leaves it to the first import, which cannot write it where
# PYTHONDONTWRITEBYTECODE is set, and then every run compiles Prefect anew (import prefect:
# 4.1 s without, 1.1 s with, measured here).
$(STAMP): requirements.txt
	@$(VENV_LOCK) sh -ec '\
		[ "$@" -nt requirements.txt ] && exit 0; \
		echo "Building $(VENV) from requirements.txt"; \
		[ -x $(PY) ] || $(PYTHON) -m venv $(VENV); \
		if command -v uv >/dev/null 2>&1 || $(PY) -m pip install -q uv==$(UV_VERSION); then \
			UV=$$(command -v uv || echo $(VENV)/bin/uv); \
			$$UV pip install -q --compile-bytecode --python $(PY) -r requirements.txt; \
		else \
			$(PY) -m pip install -q -r requirements.txt; \
		fi; \
		touch $@'

.PHONY: lock  ## Re-pin requirements.txt from requirements.in
lock: $(STAMP)
	$(VENV)/bin/uv pip compile -q requirements.in -o requirements.txt --python $(PY) \
		--custom-compile-command "make lock"

.PHONY: data  ## Restore the raw data if missing (DVC cache, dvc pull, else scikit-learn's copy, md5-checked)
data: $(STAMP)
	@$(PY) scripts/get_data.py

# What the run targets depend on: the file, not `make data`, so once it is there make starts no
# Python process for it (a no-op run is that much shorter). `make data` still reports on it.
$(RAW_DATA): | $(STAMP)
	@$(PY) scripts/get_data.py

.PHONY: prefect-start  ## Start the Prefect server in the background (UI at http://127.0.0.1:4200; PREFECT_DB_URL= for PostgreSQL)
prefect-start: $(STAMP)
	@$(PY) scripts/server.py start

.PHONY: prefect-stop  ## Stop the Prefect server that prefect-start started
prefect-stop: $(STAMP)
	@$(PY) scripts/server.py stop

.PHONY: prefect-status  ## Is the server up? URL, database, versions
prefect-status: $(STAMP)
	@$(PY) scripts/server.py status

.PHONY: doctor  ## What to look at when something is off: settings and sources, server, data, dvc status
doctor: $(STAMP)
	@$(PY) scripts/doctor.py

.PHONY: metrics  ## The metrics as a table, with the change against the last published run and git HEAD
metrics: $(STAMP)
	@$(PY) scripts/metrics.py

.PHONY: plots  ## Draw dvc.yaml's plots offline into dvc_plots/index.html, inline SVG (REV=HEAD~1, REPO=path)
plots: $(STAMP)
	@$(PY) scripts/plots.py $(if $(REV),--rev $(REV)) $(if $(REPO),--repo $(REPO))

.PHONY: run-dvc  ## Option A: a Prefect flow runs `dvc repro` (FAIL_ONCE=1, SHOW_METRICS=0, REPO=path)
run-dvc: $(STAMP) $(RAW_DATA)
	@$(PY) scripts/flow_dvc.py $(FLOW_FLAGS) $(if $(REPO),--repo $(REPO))

.PHONY: run-stages  ## Option B: Prefect runs the stages itself, cached (PARAMS=, FAIL_ONCE=1, SHOW_METRICS=0)
run-stages: $(STAMP) $(RAW_DATA)
	@$(PY) scripts/flow_stages.py --params $(PARAMS) $(FLOW_FLAGS)

.PHONY: run-dvc-stages  ## Option C: DVC's stages as Prefect tasks, independent ones at once (JOBS=N, FAIL_ONCE=1, SHOW_METRICS=0, REPO=path)
run-dvc-stages: $(STAMP) $(RAW_DATA)
	@$(PY) scripts/flow_dvc_stages.py $(FLOW_FLAGS) $(if $(REPO),--repo $(REPO)) $(if $(JOBS),--jobs $(JOBS))

.PHONY: sweep  ## Run a sweep (SWEEP=sweep.yaml), each trial a DVC experiment (REPO=path, JOBS=N, DASK_ADDRESS=tcp://host:8786)
sweep: $(STAMP) $(RAW_DATA)
	@$(PY) scripts/sweep.py $(SWEEP) $(if $(REPO),--repo $(REPO)) $(if $(JOBS),--jobs $(JOBS)) $(if $(DASK_ADDRESS),--dask-address $(DASK_ADDRESS)) \
		$(if $(filter 0,$(SHOW_METRICS)),--no-show-metrics)

.PHONY: dask-start  ## Start a Dask scheduler and DASK_WORKERS=2 workers in the background, on DASK_HOST=127.0.0.1
dask-start: $(STAMP)
	@$(PY) scripts/dask_cluster.py start --workers $(DASK_WORKERS) --host $(DASK_HOST) --port $(DASK_PORT)

.PHONY: dask-stop  ## Stop the Dask scheduler and workers that dask-start started
dask-stop: $(STAMP)
	@$(PY) scripts/dask_cluster.py stop

.PHONY: dask-worker  ## Join this machine to DASK_ADDRESS as DASK_WORKERS workers that run trials (foreground)
dask-worker: $(STAMP)
	@$(if $(DASK_ADDRESS),,echo "error: set DASK_ADDRESS, e.g. make dask-worker DASK_ADDRESS=tcp://host:8786" >&2; exit 2)
	@$(PY) scripts/dask_cluster.py worker $(DASK_ADDRESS) --workers $(DASK_WORKERS)

.PHONY: serve  ## Serve Options A, B and C from this checkout until Ctrl-C; UI's Run button works (SCHEDULE=: Option A's)
serve: $(STAMP) $(RAW_DATA)
	@$(PY) scripts/serve.py --schedule "$(SCHEDULE)"

.PHONY: deploy  ## Register prefect.yaml's deployments (git source: origin, this branch), work pool, automations (SCHEDULE=, NOTIFY_URL=)
deploy: $(STAMP)
	@$(PY) scripts/deploy.py --schedule "$(SCHEDULE)" --notify-url "$(NOTIFY_URL)" --crash-after "$(CRASH_AFTER)"

.PHONY: worker  ## A process worker on prefect.yaml's work pool, in the foreground (another machine runs the same)
worker: $(STAMP)
	@$(PY) scripts/worker.py

.PHONY: bench  ## Time dvc repro, Options A, B and C, and sweeps side by side (BENCH_RUNS=3); reports/bench*.json
bench: $(STAMP) $(RAW_DATA)
	@$(PY) benchmarks/bench.py --runs $(BENCH_RUNS)
	@$(PY) benchmarks/bench_sweep.py

.PHONY: bench-scale  ## Every way of running on ROWS=2000000 rows, time and peak memory, sweep against DVC's queue; reports/bench-scale-ROWS.json
bench-scale: $(STAMP)
	@$(PY) benchmarks/bench_scale.py --rows $(ROWS)

.PHONY: bench-sweep  ## Time make sweep against DVC's queue, at 16/64/256 trials, and on Dask; reports/bench-sweep.json
bench-sweep: $(STAMP)
	@$(PY) benchmarks/bench_sweep.py

.PHONY: test  ## Run the tests (each in its own temporary repo, Prefect home and server)
test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=10 $(PYTEST_ARGS)

.PHONY: clean  ## Remove outputs and caches (the sweeps' records too); keeps .venv, raw data, run history, tracked reports
clean:
	rm -f data/processed/*.csv models/*.joblib  # not the folders: their .gitignore is DVC's, tracked
	rm -rf dvc_plots .dvc/cache/runs .dvc/tmp/exps .dvc/tmp/kit-stage-runs .dvc/tmp/kit-file-memo.json .prefect/storage .pytest_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
