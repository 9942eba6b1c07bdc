# Two commands on a fresh machine:
#   make run   - create .venv, install, start the gateway on its embedded defaults
#   make test  - install what the tests need (incl. Prometheus' promtool and redis-server when it can) and run them
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: run test install install-test promtool redis-server lint typecheck bench clean

$(PY):
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[test,dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

run: install
	$(PY) -m gateway --log-format console $(ARGS)

promtool:
	@command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "make: installing Debian package prometheus (promtool, prometheus) for the tests"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null) \
	      || echo "make: could not install prometheus; tests that need promtool/prometheus will fail"; \
	  else \
	    echo "make: promtool not found and cannot install it (need root and apt-get): apt-get install prometheus"; \
	  fi; }

redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "make: installing Debian package redis-server for the shared-budget tests"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) \
	      || echo "make: could not install redis-server; the shared-budget tests will fail"; \
	  else \
	    echo "make: redis-server not found and cannot install it (need root and apt-get): apt-get install redis-server"; \
	  fi; }

test: install-test promtool redis-server
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install-test
	$(VENV)/bin/ruff check gateway proto_handlers tests benchmarks
	$(VENV)/bin/mypy

bench: install-test
	$(PIP) install --quiet -e '.[bench]'
	$(PY) -m benchmarks.ingest $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
