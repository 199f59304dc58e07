# i2es-hub: the two commands a user needs are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.9.30
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint bench clean up

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv==$(UV_VERSION)
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	AIRFLOW__CORE__LOAD_EXAMPLES=False $(BIN)/python -m i2es_hub.demo

# The Airflow UI with the hub's DAGs on http://127.0.0.1:8080 (Ctrl-C stops it).
up: $(STAMP)
	AIRFLOW__CORE__LOAD_EXAMPLES=False $(BIN)/python -m i2es_hub.demo up

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	AIRFLOW__CORE__LOAD_EXAMPLES=False $(BIN)/python -m bench

clean:
	rm -rf $(VENV) var bench/work
