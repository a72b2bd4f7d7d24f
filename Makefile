# The two commands of the README: `make demo` and `make test`. Both start from
# nothing: they create .venv and install what they need, system packages too.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint format bench docs system-deps node-deps clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,docs]'
	touch $@

# Chromium drives the widget tests and redis-server backs cluster mode's tests; Debian's
# packages, installed when missing.
system-deps:
	@command -v chromium >/dev/null 2>&1 && command -v redis-server >/dev/null 2>&1 || { \
		echo "installing chromium and redis-server (apt-get)"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			chromium redis-server >/dev/null; }

# TypeScript (npm, package-lock.json) checks the page script's declarations in the tests;
# Debian's npm, installed when missing.
node-deps:
	@test -x node_modules/.bin/tsc || { \
		command -v npm >/dev/null 2>&1 || { \
			DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
				nodejs npm >/dev/null; }; \
		npm ci --no-audit --no-fund; }

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: $(STAMP) system-deps node-deps lint docs
	$(PY) -m pytest

# The example portal on http://127.0.0.1:5000, against an embedded simulator unless
# THRILLCONNECT_URL (and its credentials) are set in the environment.
demo: $(STAMP)
	$(PY) -m example_portal --host 127.0.0.1 --port 5000

# wrk drives the HTTP benchmarks; Debian's package, installed when missing.
bench: $(STAMP)
	@command -v wrk >/dev/null 2>&1 || { \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null; }
	$(PY) -m bench.proxy_cache
	$(PY) -m bench.hub_fanout
	$(PY) -m bench.relay_fanout --clients 1000 2000
	$(PY) -m bench.cluster

docs: $(STAMP)
	$(VENV)/bin/sphinx-build -W -b html docs docs/_build/html

clean:
	rm -rf $(VENV) build dist *.egg-info docs/_build
