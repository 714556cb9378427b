# tether: `make demo` serves the demo, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint system-deps bench soak clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tether demo

system-deps:
	bash scripts/system-deps.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check server tests $(wildcard bench)
	$(VENV)/bin/mypy

test: $(STAMP) system-deps lint
	$(PY) -m pytest -q -p no:cacheprovider

# The benchmark (a few minutes; the machine should be otherwise idle).
bench: $(STAMP)
	$(PY) bench/run.py --update-readme

# The soak and chaos harness (about 10 minutes; not part of `make test`).
SOAK_ARGS ?=
soak: $(STAMP)
	$(PY) bench/soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) build dist server/*.egg-info test-artifacts
