# The two commands a newcomer runs: `make demo` (main job) and `make test`.
# --no-cache-dir: a CI machine once ran out of disk in this install (the venv is ~6 GB); pip's cache is a copy never reused.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --no-cache-dir --upgrade pip
	$(PY) -m pip install -q --no-cache-dir -r requirements-dev.txt
	$(PY) -m pip install -q --no-cache-dir --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tgsemi demo --out runs/demo

demo-quick: $(STAMP)
	$(VENV)/bin/tgsemi demo --quick --out runs/demo-quick

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q

.PHONY: install demo demo-quick test
