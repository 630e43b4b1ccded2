# Fresh machine: `make demo` runs the whole pipeline, `make test` runs the suite (`make test-fast`: the fast lane).
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install demo test test-fast bench image-deps clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/mhp demo

# pytest exits 5 when it collected no tests; that is not a failure of the suite.
test: install
	GX_ANALYTICS_ENABLED=false $(BIN)/python -m pytest $(PYTEST_ARGS) || { rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; else exit $$rc; fi; }

# The fast lane: contract, catalog, engines, handler, server, architecture (tests marked `fast`).
test-fast: install
	GX_ANALYTICS_ENABLED=false $(BIN)/python -m pytest -m fast $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m bench

# Each deploy image's dependency set (deploy/*.Dockerfile) installed into a fresh virtualenv:
# installed size and the entry point's import time (downloads from the package index; minutes).
image-deps: install
	$(BIN)/python -m deploy.image_deps --fresh

clean:
	rm -rf out .pytest_cache
