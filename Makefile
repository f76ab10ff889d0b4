# Two commands do everything on a fresh machine:
#   make demo   set up .venv (first time only) and run the main job
#   make test   set up .venv (first time only) and run the test suite
# TORCH_SPEC picks the torch build; the default is the CPU wheel this project is developed on.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: setup demo test test-all lint bench-kernels

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev,mteb]"
	touch $@

demo: setup
	$(VENV)/bin/sbert-align demo

test: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench-kernels: setup
	$(PY) benchmarks/bench_kernels.py --device cpu
