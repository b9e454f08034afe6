# harmonyspeech developer commands. Every target installs what it needs first.
#
# TORCH_SPEC picks the torch build installed before anything that depends on it; CI sets
# TORCH_SPEC=torch==2.13.0 (a local CPU wheel). On a user machine plain `torch` is fine.
# `make test` first fetches upstream MeloTTS's network code (the PyPI sdist, SHA-256 pinned) into
# .cache/ as the oracle of the parity tests; the tests themselves never touch the network.

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch
CONFIG ?= configs/default.yaml

PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install serve test lint format bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[all,dev]"
	touch $(STAMP)

serve: install
	$(VENV)/bin/harmonyspeech serve --config $(CONFIG)

test: install
	$(PY) tests/unit/melo/fetch_reference.py
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check harmonyspeech tests benchmarks
	$(VENV)/bin/ruff format --check harmonyspeech tests benchmarks

format: install
	$(VENV)/bin/ruff check --fix harmonyspeech tests benchmarks
	$(VENV)/bin/ruff format harmonyspeech tests benchmarks

bench: install
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis benchmarks/results
