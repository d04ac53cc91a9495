# Two commands do everything on a fresh machine:
#   make demo   - bring up the local stack and run the jobs end to end
#   make test   - run the whole test suite (what CI runs)
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed
# The DAG tests' own environment, at the Composer image's Airflow and provider versions
# (requirements-composer.in says which image and why).
# Inside .venv so it is ignored (git, docker, ruff) and removed with it.
COMPOSER_VENV := $(VENV)/composer
COMPOSER_PY := $(COMPOSER_VENV)/bin/python
COMPOSER_STAMP := $(COMPOSER_VENV)/.installed
export NO_GCE_CHECK := true
export PYTHONDONTWRITEBYTECODE :=

.PHONY: venv composer-venv test-composer browser demo test test-fast lint format lock stack-up stack-down stack-status stack-wipe bench clean

venv: $(STAMP)

# The venv is rebuilt whenever the lock or setup.py changes.
$(STAMP): requirements.lock setup.py
	@echo "==> Creating $(VENV) with $(PYTHON) (one-off: 1.5 to 3.5 min measured on 2 cores, longer on a busy machine; most of it step 2)"
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 (see README, Prerequisites)"; exit 1; }
	@echo "==> [1/4] virtualenv and uv"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv==0.13.8
	@echo "==> [2/4] $$(grep -c '^[a-zA-Z]' requirements.lock) pinned packages from requirements.lock, compiled to bytecode (the long step)"
	@# sync, not install: a venv built from an older lock loses what the lock dropped
	@# (Airflow left for .venv/composer); uv keeps itself, pip and setuptools.
	@start=$$(date +%s); $(UV) pip sync --python $(PY) --compile-bytecode requirements.lock \
	  && echo "    done in $$(( $$(date +%s) - start )) s"
	@echo "==> [3/4] this project (editable)"
	$(UV) pip install --python $(PY) --quiet --no-deps -e .
	@echo "==> [4/4] DuckDB extensions for the BigQuery emulator (offline)"
	$(PY) -m beam_pipelines.local install-extensions
	@touch $(STAMP)
	@echo "==> $(VENV) ready"

composer-venv: $(COMPOSER_STAMP)

# No editable install here: tests/composer puts the repository on sys.path (and PYTHONPATH,
# for the jobs and emulators it starts), as Composer's dags/ folder does for the DAGs.
# uv comes from the main venv.
$(COMPOSER_STAMP): requirements-composer.lock | $(STAMP)
	@echo "==> Creating $(COMPOSER_VENV) (Composer image versions, one-off, ~1.5 min)"
	test -x $(COMPOSER_PY) || $(PYTHON) -m venv $(COMPOSER_VENV)
	$(UV) pip sync --python $(COMPOSER_PY) --compile-bytecode --quiet requirements-composer.lock
	@touch $(COMPOSER_STAMP)

# Every DAG test (the emulator end-to-end DAG runs included) under the Composer image's
# versions. pytest exits 5 when it collects nothing, so a lost test folder fails here.
test-composer: composer-venv
	$(COMPOSER_PY) -m pytest tests/composer

demo: venv
	$(PY) -m beam_pipelines.demo

# The whole suite in the main venv, then the DAG tests in the Composer one.
# Two pytest workers, each test file whole on one (its fixtures' emulators are the worker's
# own): most tests wait on emulators and job processes, so on 2 cores the suite took 13.0
# min against 21.6 serially (795 tests, 2026-12-08). TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
test: venv browser composer-venv
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile
	$(MAKE) --no-print-directory test-composer

# Chromium for the report's browser test, installed where missing (.ci/install-browser says how).
browser:
	@.ci/install-browser

lint: venv
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

# Re-resolve requirements.in and requirements-composer.in into their locks (needs the package index).
lock: venv
	$(UV) pip compile requirements.in --python-version 3.11 --quiet -o requirements.lock
	$(UV) pip compile requirements-composer.in --python-version 3.11 --quiet -o requirements-composer.lock

stack-up: venv
	$(PY) -m beam_pipelines.local up
stack-down: venv
	$(PY) -m beam_pipelines.local down
stack-status: venv
	$(PY) -m beam_pipelines.local status
# stack-down keeps the data (BigQuery tables, GCS objects, lake, SQL source); this deletes it.
stack-wipe: venv
	$(PY) -m beam_pipelines.local wipe

bench: venv
	$(PY) -m benchmarks.run_all

# Everything generated: the venvs, the local stack and its data, reports, test artefacts.
clean:
	-$(PY) -m beam_pipelines.local down 2>/dev/null
	rm -rf $(VENV) .local reports tests/artifacts build *.egg-info .pytest_cache
