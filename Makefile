# Two commands on a fresh machine:
#   make run PHOTOS=DIR PROBE=PHOTO   index DIR into ./countenance-data and search it for PROBE
#   make test                         lint, type-check and run the whole test suite
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

.PHONY: run test lint typecheck venv clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(BIN)/.installed

run: $(BIN)/.installed
	@test -n "$(PHOTOS)" -a -n "$(PROBE)" || { echo "usage: make run PHOTOS=DIR PROBE=PHOTO"; exit 2; }
	$(BIN)/countenance --data $(DATA) sources add $(SOURCE) --basis $(BASIS) --exist-ok
	$(BIN)/countenance --data $(DATA) ingest $(PHOTOS) --source $(SOURCE)
	$(BIN)/countenance --data $(DATA) search $(PROBE) --actor "$(ACTOR)" --purpose "$(PURPOSE)" --case "$(CASE)"

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(BIN)/.installed
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
