# i2es-hub: the two commands a user needs are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.9.30
STAMP := $(VENV)/.installed
# The hub's own modules compiled ahead: a shell with PYTHONDONTWRITEBYTECODE set
# would otherwise compile them from source on every command.
BYTECODE := $(VENV)/.compiled
SOURCES := $(wildcard i2es_hub/*.py i2es_hub/*/*.py)

.PHONY: install demo test test-fast lint bench clean up reliability

install: $(STAMP) $(BYTECODE)

$(BYTECODE): $(STAMP) $(SOURCES)
	$(BIN)/python -m compileall -q i2es_hub
	touch $(BYTECODE)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv==$(UV_VERSION)
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

demo: $(STAMP) $(BYTECODE)
	AIRFLOW__CORE__LOAD_EXAMPLES=False $(BIN)/python -m i2es_hub.demo

# The Airflow UI with the hub's DAGs on http://127.0.0.1:8080 (Ctrl-C stops it).
up: $(STAMP) $(BYTECODE)
	AIRFLOW__CORE__LOAD_EXAMPLES=False $(BIN)/python -m i2es_hub.demo up

test: $(STAMP) $(BYTECODE)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Long crash and fault trials (20+ trials, 10,000 documents); figures on stdout.
# CI may shorten them, e.g. make reliability I2ES_HUB_CRASH_TRIALS=5
reliability: $(STAMP) $(BYTECODE)
	I2ES_HUB_RELIABILITY=long $(BIN)/python -m pytest -q -s -p no:cacheprovider \
		--timeout 3600 \
		tests/reliability $(PYTEST_ARGS)

lint: $(STAMP) $(BYTECODE)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP) $(BYTECODE)
	AIRFLOW__CORE__LOAD_EXAMPLES=False $(BIN)/python -m bench

clean:
	rm -rf $(VENV) var bench/work
