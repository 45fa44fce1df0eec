# Two commands do all the set-up: `make demo` and `make test`.
# Each creates or updates the local virtual environment .venv as needed.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.tensorstats-installed
# The CPU build of PyTorch that lies on this machine's disk; installed first so
# that no later requirement pulls a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: demo test lint bench docs browser clean-venv

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev,torch,plot]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m tensorstats.demo

# The report's browser test opens it in Debian's headless Chromium; installed
# here when missing and the machine allows it (root with apt), else that one
# test is skipped with its reason.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && (apt-get install -y -qq chromium >/dev/null 2>&1 || (apt-get update -qq >/dev/null 2>&1 \
	  && apt-get install -y -qq chromium >/dev/null 2>&1)) || echo "chromium not installed: the browser test will skip"; }

test: $(STAMP) browser
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check tensorstats tests benchmarks examples docs

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict -d site

bench: $(STAMP)
	$(PY) benchmarks/write_throughput.py
	$(PY) benchmarks/collector_overhead.py
	$(PY) benchmarks/normality.py
	$(PY) benchmarks/moments.py
	$(PY) benchmarks/shift.py
	$(PY) benchmarks/emission.py
	$(PY) benchmarks/scaling.py
	$(PY) benchmarks/graph_size.py
	$(PY) benchmarks/distributed_normality.py --steps 200

clean-venv:
	rm -rf $(VENV)
