# The two commands a newcomer needs: `make demo` (the main job) and `make test`.
# Both create or reuse the project's virtual environment (.venv) themselves.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export DAGSTER_HOME := $(CURDIR)/.dagster
export JAX_PLATFORMS ?= cpu

.PHONY: demo test test-slow test-cluster ui reports tensorboard bench screenshots clean system-packages

# Debian packages some tests need (servers, a headless browser): installed by `make test`
# when missing (as root, or through sudo).
DEBIAN_PACKAGES := chromium postgresql

# The pinned set is installed with uv: ~7x faster than pip on a fresh machine (20 s against
# 134 s, benchmarks/RESULTS.md).
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "sable-lake needs Python >= 3.11"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt uv
	$(PY) -m uv pip install --quiet --python $(PY) -c constraints.txt -e '.[test]'
	PYTHONDONTWRITEBYTECODE= $(PY) -c '$(WARM_IMPORTS)'
	touch $@

# uv writes no .pyc files, and where PYTHONDONTWRITEBYTECODE is set Python writes none
# either: then every process (each run, the code server, the daemon, each test's subprocess)
# compiles the sources it imports again, ~4-5 CPU-s for a run's. Importing what the runs
# import once at install, with writing on, byte-compiles just those (~15 s; uv's
# --compile-bytecode compiles all 18k files in 43 s: benchmarks/RESULTS.md).
WARM_IMPORTS := import warnings; warnings.simplefilter("ignore"); import pipelines.definitions, \
	trainer.online.training, trainer.offline.training, trainer.offline.episodes, trainer.replay, \
	pipelines.card_plots, pipelines.episode_media, matplotlib.pyplot

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

demo: $(STAMP) $(DAGSTER_HOME)/dagster.yaml  ## the main job: the demo pipeline, end to end
	$(PY) -m pipelines.demo

system-packages:  ## the Debian packages the tests need, installed when missing
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		echo "installing Debian packages: $$missing"; \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			$$sudo apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

test: $(STAMP) $(DAGSTER_HOME)/dagster.yaml system-packages  ## lint + the test suite (CPU, minutes)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -m "not slow" -n auto --dist loadscope

test-slow: $(STAMP) $(DAGSTER_HOME)/dagster.yaml system-packages  ## the tests marked slow
	$(PY) -m pytest -m slow

test-cluster: $(STAMP) $(DAGSTER_HOME)/dagster.yaml system-packages  ## Dagster on PostgreSQL + multi-process training (slow; CI runs it after `make test`)
	$(PY) -m pytest -m cluster

# The lake's reports/ folder (the plots the asset pages show inline) over HTTP; an s3:// lake
# needs $$SABLE_REPORTS_URL pointing at a server of its reports/ prefix instead.
REPORTS := $(or $(SABLE_LAKE),lake)/reports
UI_PORT ?= 3000
REPORTS_PORT ?= 3001

# `dagster dev` runs inside $(DAGSTER_HOME): from a folder holding another dagster.yaml (this
# one, the template) it warns that file "will not be used". The lake, models and checkpoints
# stay where `make demo` put them: their paths are made absolute (an s3:// lake as it is).
ABS = $(if $(findstring ://,$(1)),$(1),$(abspath $(1)))
UI_ENV = SABLE_LAKE=$(call ABS,$(or $(SABLE_LAKE),lake)) \
	SABLE_LAKE_MODELS=$(call ABS,$(or $(SABLE_LAKE_MODELS),models)) \
	SABLE_CHECKPOINTS=$(call ABS,$(or $(SABLE_CHECKPOINTS),checkpoints)) \
	PYTHONWARNINGS='ignore:Function `dev_command` is superseded'

ui: $(STAMP) $(DAGSTER_HOME)/dagster.yaml  ## the Dagster UI on http://127.0.0.1:3000 (plots from :3001)
	mkdir -p $(REPORTS)
	$(PY) -m http.server --bind 127.0.0.1 --directory $(REPORTS) $(REPORTS_PORT) >/dev/null 2>&1 & \
	server=$$!; trap 'kill $$server' EXIT INT TERM; \
	cd $(DAGSTER_HOME) && $(UI_ENV) $(CURDIR)/$(VENV)/bin/dagster dev -m pipelines.definitions \
		-d $(CURDIR) -h 127.0.0.1 -p $(UI_PORT)

reports: $(STAMP)  ## only the plots' server: <lake>/reports on http://127.0.0.1:3001
	mkdir -p $(REPORTS)
	$(PY) -m http.server --bind 127.0.0.1 --directory $(REPORTS) 3001

# Every model's training curves (trainer/tensorboard.py writes them under <models>/tensorboard).
CURVES := $(or $(SABLE_LAKE_MODELS),models)/tensorboard

tensorboard: $(STAMP)  ## every run's training curves in TensorBoard on http://127.0.0.1:6006
	mkdir -p $(CURVES)
	$(VENV)/bin/tensorboard --logdir $(CURVES) --host 127.0.0.1 --port 6006

bench: $(STAMP)  ## the lake I/O benchmark (writes benchmarks/_data, minutes)
	$(PY) benchmarks/lake_io.py

screenshots: $(STAMP) $(DAGSTER_HOME)/dagster.yaml  ## UI screenshots into docs/img (needs Debian's chromium)
	$(PY) -m pipelines.screenshots --out docs/img

clean:  ## remove the demo lake and the local Dagster instance (not .venv)
	rm -rf lake .dagster models checkpoints
