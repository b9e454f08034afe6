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

.PHONY: install redis-server serve test lint format bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[all,dev]"
	touch $(STAMP)

serve: install
	$(VENV)/bin/harmonyspeech serve --config $(CONFIG)

# The Redis rate-limit tests start their own redis-server (Debian's package): install it when
# missing (as root, or through passwordless sudo). Without it those tests skip, or fail under
# HARMONYSPEECH_REQUIRE_REDIS=1 (as .ci/run sets).
redis-server:
	@if command -v redis-server >/dev/null 2>&1 || test -x /usr/sbin/redis-server; then \
		exit 0; \
	fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
		echo "make: redis-server is missing and there is no apt-get: install Redis yourself" >&2; \
		exit 0; \
	fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	else \
		echo "make: redis-server is missing; cannot install it (not root, no passwordless sudo):" \
			"run 'sudo apt-get install -y redis-server'" >&2; \
		exit 0; \
	fi; \
	echo "make: installing redis-server (apt-get)"; \
	export DEBIAN_FRONTEND=noninteractive; \
	$$sudo apt-get install -y --no-install-recommends redis-server >/dev/null \
		|| { $$sudo apt-get update -q >/dev/null && \
			$$sudo apt-get install -y --no-install-recommends redis-server >/dev/null; } \
		|| echo "make: apt-get could not install redis-server" >&2

test: install redis-server
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
