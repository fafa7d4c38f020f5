# `make demo`: set-up + the embedded default benchmark. `make test`: set-up + the test suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned here only (never in the package metadata): these machines carry 2.14.1 + torchvision 0.29.1.
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed
# The `iqa` extra without its heavy dependency trees (never touching torch): pyiqa, the wheels NIQE and DISTS
# take their published parameters from, and the small modules pyiqa imports for its weight-free metrics.
IQA_NODEPS ?= pyiqa==0.1.16 basicsr-fixed==1.4.2 dists-pytorch==0.1 huggingface_hub==2.4.0 httpx2==2.16.2 \
	httpcore2==2.16.2 truststore==0.10.5

.PHONY: setup iqa demo test test-all lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PIN)
	$(BIN)/python -m pip install -q -e '.[test,trackers]'
	$(BIN)/python -m pip install -q --no-deps $(IQA_NODEPS)
	touch $(STAMP)

setup: $(STAMP)

iqa: $(STAMP)
	$(BIN)/python -m pip install -q --no-deps $(IQA_NODEPS)

demo: setup
	$(BIN)/evalsuite run benchmark

test: setup
	bash scripts/setup-system.sh
	$(BIN)/python -m pytest -q -rs

test-all: setup
	bash scripts/setup-system.sh
	$(BIN)/python -m pytest -q -rs -m ''

lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) runs .pytest_cache
