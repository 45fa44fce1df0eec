# Two commands do all the set-up: `make demo` and `make test`.
# Each creates or updates the local virtual environment .venv as needed.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.tensorstats-installed
# The CPU build of PyTorch that lies on this machine's disk; installed first so
# that no later requirement pulls a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: demo test lint bench clean-venv

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev,torch]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m tensorstats.demo

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check tensorstats tests benchmarks examples

bench: $(STAMP)
	$(PY) benchmarks/write_throughput.py
	$(PY) benchmarks/collector_overhead.py
	$(PY) benchmarks/normality.py
	$(PY) benchmarks/moments.py
	$(PY) benchmarks/shift.py
	$(PY) benchmarks/emission.py

clean-venv:
	rm -rf $(VENV)
