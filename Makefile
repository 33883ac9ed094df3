# fashion-tagger: one entry point for people and CI.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
TEST_DATABASE_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider

.PHONY: install run migrate test test-quick bench clean

$(BIN)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip check
	touch $@

install: $(BIN)/.installed

migrate: install
	$(BIN)/flask --app wsgi db upgrade

# Embedded defaults: SQLite under instance/, the committed bundles in models/.
run: migrate
	BIND=0.0.0.0:$(PORT) $(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

# The whole suite: SQLite (TensorFlow backend), the classifier again on the torch backend, and the
# service against the real PostgreSQL (a fresh database per run).
test: install
	KERAS_BACKEND=tensorflow $(PYTEST) tests
	KERAS_BACKEND=torch $(PYTEST) tests/classification
	TEST_DATABASE_URL=$(TEST_DATABASE_URL) $(PYTEST) tests/app

test-quick: install
	$(PYTEST) tests

bench: install
	$(BIN)/python bench/pipeline.py

clean:
	rm -rf $(VENV) instance .pytest_cache
