# The targets are the contract; README.md names them. Every target sets itself up first.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: install install-dev system-deps image-deps serve wheel test test-image test-latest lint lock fmt test-unit bench loadtest audit up down chart-lint docs clean

# Python environment with the service (no torch; the graph fallback, the `peers` extra, only where the
# native kernels did not build); install-dev adds the test tools, the peers and the torch extra (CPU build).
# Both install the exact versions of the lock files in requirements/ (`make lock` regenerates them).
# The native kernels are rebuilt when any of their sources changes.
NATIVE_SOURCES := inference/_onednn.cpp $(wildcard inference/native/*.cpp inference/native/*.hpp inference/native/*.h)

$(VENV)/.stamp-install: pyproject.toml setup.py $(NATIVE_SOURCES) requirements/service.txt requirements/peers.txt
	scripts/setup.sh install
	@touch $@

$(VENV)/.stamp-dev: pyproject.toml setup.py $(NATIVE_SOURCES) requirements/dev.txt
	scripts/setup.sh dev
	@touch $@

install: $(VENV)/.stamp-install

install-dev: $(VENV)/.stamp-dev

# Test-only system packages from Debian (promtool, prometheus, chromium); Redis comes from pip.
system-deps:
	scripts/setup.sh system

# What the image tests need from Debian: the docker.io engine and client, docker-compose, debootstrap.
image-deps:
	scripts/setup.sh image

# One command: set up, then run the whole service on this machine (embedded Redis + worker + API).
# STYLE=hayao,paprika picks the styles (the first is the default; unset: ANIMEGAN_STYLES or
# face_paint_512_v2). Weights missing from --weights-dir DIR / ANIMEGAN_WEIGHTS_DIR and the cache
# are downloaded first when the style has a public download (verified against the pinned digest).
# Offline: make serve ARGS="--weights-dir DIR --style hayao" (or STYLE=hayao).
STYLE ?=
serve: install
	$(BIN)/animegan serve --fetch-missing $(if $(STYLE),--style $(STYLE)) $(ARGS)

# A manylinux wheel in DIR (default dist/) that carries the native kernels and the oneDNN library they
# link: installed on a machine with no compiler and no libdnnl, every precision of its CPU runs natively.
DIST ?= dist
wheel: install-dev
	PATH="$(abspath $(BIN)):$$PATH" scripts/wheel.sh "$(DIST)"

# One command: set up everything the tests need, then lint and run the whole suite (the image
# tests in tests/image/ included).
test: install-dev system-deps image-deps
	$(MAKE) lint
	$(BIN)/pytest

# The image tests alone: build the image with BuildKit on a real Docker engine (started when none
# runs) and run the compose stack (README "What is verified here").
test-image: install-dev system-deps image-deps
	$(BIN)/pytest tests/image

# The suite against the newest versions pyproject.toml's ranges allow today, in a venv of its own
# (.venv-latest): run it on a schedule, so an upstream release that breaks us shows up as a task
# before the next `make lock` takes it into the locks.
test-latest: system-deps image-deps
	VENV=.venv-latest scripts/setup.sh latest
	@touch .venv-latest/.stamp-dev
	$(MAKE) VENV=.venv-latest lint
	.venv-latest/bin/pytest

# Regenerate the lock files from pyproject.toml (newest versions its ranges allow today).
lock: install-dev
	$(PY) scripts/lock.py

# The docs site is part of lint: `--strict` fails on a dead link or anchor, a page left out of the
# nav, or a reference generator that fails (an undocumented setting, a key missing from the layout).
# NO_MKDOCS_2_WARNING: Material's end-of-life notice, answered in docs/internals/docs-site.md.
MKDOCS = NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs

lint: install-dev
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(MKDOCS) build --strict --quiet

# The docs site on http://127.0.0.1:8001, rebuilt on every change of a page or of the code it documents.
docs: install-dev
	$(MKDOCS) serve --dev-addr 127.0.0.1:8001

fmt: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test-unit: install-dev
	$(BIN)/pytest -m unit

bench: install
	$(BIN)/animegan bench

# The classic load scenario against the embedded stack; the report lands in loadtest-reports/.
loadtest: install-dev
	$(BIN)/animegan loadtest classic --users 10 --duration 10m

# Dependency audit with pip-audit; needs PyPI's vulnerability data (fails, naming the cause, without it).
audit: install-dev
	$(PY) scripts/audit.py

# Compose stack (needs a Docker engine; not available on every machine).
# Compose v2 (the docker plugin) where it is installed, else Debian 12's docker-compose 1.x.
COMPOSE = $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

up:
	$(COMPOSE) up -d --build

down:
	$(COMPOSE) down

chart-lint: system-deps
	$(BIN)/helm lint --strict charts/animegan
	for f in charts/animegan/ci/*-values.yaml; do $(BIN)/helm template t charts/animegan -f $$f >/dev/null || exit 1; done

clean:
	rm -rf $(VENV) .venv-latest .pytest_cache .mypy_cache .ruff_cache *.egg-info site
