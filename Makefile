# The two commands of the README: `make demo` and `make test`. Each installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_FARMERS ?= 20000
PORT ?= 8000

.PHONY: install demo test lint bench lock services stop-services clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check .

test: $(STAMP)
	bash scripts/test.sh

demo: $(STAMP)
	DEMO_FARMERS=$(DEMO_FARMERS) PORT=$(PORT) bash scripts/demo.sh

# The benchmarks also need the `bench` extra (locust, the load generator of load_portals).
bench: $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,bench]'
	$(PY) manage.py migrate_schemas --executor=batched -v 0
	$(PY) -m benchmarks

services: $(STAMP)
	$(PY) -m platform.embedded start

stop-services: $(STAMP)
	$(PY) -m platform.embedded stop

# Re-resolve the newest versions allowed by pyproject.toml and pin them.
lock:
	rm -rf /tmp/puhui-lock && $(PYTHON) -m venv /tmp/puhui-lock
	/tmp/puhui-lock/bin/pip install --quiet --upgrade pip
	/tmp/puhui-lock/bin/pip install --quiet -e '.[dev]'
	/tmp/puhui-lock/bin/pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

clean:
	rm -rf $(VENV)
