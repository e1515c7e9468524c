# Two entry points: `make demo` (install + `slimbench demo`, the quickstart study on CIFAR-10, minutes) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION ?= 2.13.0
# Where a CPU-only torch comes from when no local CPU wheel is found (never the CUDA build on a CPU machine).
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

# A CIFAR-10 copy beside the checkout (as on the project's machines) is used when no folder is named.
ifeq ($(SLIMBENCH_DATA),)
ifneq ($(wildcard ../shared/data/cifar10/test.npz),)
export SLIMBENCH_DATA := $(abspath ../shared/data/cifar10)
endif
endif

# pytest-xdist workers: one per logical core, at most four (each holds torch, Brevitas, ONNX Runtime and JAX)
TEST_WORKERS ?= logical

.PHONY: install demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	@if ! $(PY) -c "import torch" 2>/dev/null; then \
	  if command -v nvidia-smi >/dev/null 2>&1; then \
	    $(PIP) install -q "torch==$(TORCH_VERSION)"; \
	  elif $(PIP) install -q --no-deps --no-index "torch==$(TORCH_VERSION)" 2>/dev/null; then \
	    echo "torch $(TORCH_VERSION): local CPU wheel"; \
	    $(PIP) install -q "torch==$(TORCH_VERSION)"; \
	  else \
	    $(PIP) install -q "torch==$(TORCH_VERSION)" --index-url $(TORCH_CPU_INDEX); \
	  fi; \
	fi
	$(PIP) install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/slimbench demo

test: install
	$(PY) -m pytest -q --durations=15 -n $(TEST_WORKERS) --maxprocesses 4

lint: install
	$(VENV)/bin/ruff check src tests benchmarks

bench: install
	$(PY) benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
