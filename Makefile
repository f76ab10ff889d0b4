# Two commands do everything on a fresh machine:
#   make demo   set up .venv (first time only) and run the main job
#   make test   set up .venv (first time only) and run the test suite
# TORCH_SPEC picks the torch build; the default is the CPU wheel this project is developed on.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: setup demo test test-all lint bench-kernels gpu-check

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev,mteb]"
	touch $@

demo: setup
	$(VENV)/bin/sbert-align demo --overwrite

test: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench-kernels: setup
	$(PY) benchmarks/bench_kernels.py --device cpu

# On a machine with CUDA, in whatever environment has torch, triton and sentence-transformers (GPU_PY): the kernel
# tests natively (GPU-only tests included), then the two benchmarks that settle what CPU runs cannot: the fused
# top-k against chunked matmul + torch.topk, and the Triton loss at the issue's shapes.
GPU_PY ?= python3
gpu-check:
	$(GPU_PY) -m pytest -q -p no:cacheprovider tests/test_kernels.py tests/test_kernels_triton.py tests/test_topk.py tests/test_objectives.py
	$(GPU_PY) benchmarks/bench_topk.py --device cuda
	$(GPU_PY) benchmarks/bench_kernels.py --device cuda --objectives supcon --dims 768 --batches 256 4096 --memories 0 65536 1048576
