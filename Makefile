# `make demo`: set-up + the embedded default benchmark. `make test`: set-up + the test suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned here only (never in the package metadata): these machines carry 2.14.1 + torchvision 0.29.1.
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-all lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PIN)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

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

clean:
	rm -rf $(VENV) runs .pytest_cache
