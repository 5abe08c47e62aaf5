# Two commands on a fresh machine:
#   make run [PHOTOS=DIR] [PROBE=PHOTO]  index DIR into ./countenance-data, search it for PROBE,
#                                        then serve the API and browser UI on 127.0.0.1:8000
#   make test                            lint, type-check and run the whole test suite
# Both create the virtual environment in .venv and install into it from scratch.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= countenance-data
SOURCE ?= photos
BASIS ?= legitimate_interest
PHOTOS ?=
PROBE ?=
ACTOR ?= $(shell id -un)
PURPOSE ?= find where the people in PROBE appear in PHOTOS
CASE ?= make-run
PYTEST_ARGS ?=
HOST ?= 127.0.0.1
PORT ?= 8000
ADMIN ?= admin

.PHONY: run test lint typecheck venv clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(BIN)/.installed

run: $(BIN)/.installed
	$(BIN)/countenance --data $(DATA) sources add $(SOURCE) --basis $(BASIS) --exist-ok
	@if [ -n "$(PHOTOS)" ]; then set -x; \
	    $(BIN)/countenance --data $(DATA) ingest $(PHOTOS) --source $(SOURCE); fi
	@if [ -n "$(PROBE)" ]; then set -x; \
	    $(BIN)/countenance --data $(DATA) search $(PROBE) --actor "$(ACTOR)" --purpose "$(PURPOSE)" --case "$(CASE)"; fi
	$(BIN)/countenance --data $(DATA) serve --host $(HOST) --port $(PORT) --first-admin $(ADMIN)

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(BIN)/.installed
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
