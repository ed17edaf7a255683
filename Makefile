# Two commands on a fresh machine: `make run` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# What the service itself needs: `make run` and the operating commands install only this.
SERVE  := $(VENV)/.installed-serve

.PHONY: run test lint check bench bench-smoke migrate worker clean

$(SERVE): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $(SERVE)

# ...and the test and lint tools on top.
$(STAMP): $(SERVE) requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

## Set up, create/upgrade the database, serve on http://127.0.0.1:8000 (embedded SQLite, `preview` target).
run: $(SERVE)
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

## Set up and run the whole test suite (lint first). Two runs: the tests of one process on every
## core (pytest-xdist; four workers on two cores were faster, but timing-bound tests failed under
## the contention now and then), then the durability scenarios, which start gunicorn and worker
## processes: the 500-handoff chaos run and two shorter scenarios in one worker, the others in a second
## (tests/durability/conftest.py groups them; 170-240 s by the hour, where one after another took 213-259 s
## in a quiet one).
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n auto --ignore=tests/durability
	$(BIN)/python -m pytest -n 2 --dist loadgroup tests/durability

## Benchmark against loopback vendor fakes (< 10 min): bench/RESULTS.md, bench/latency.png.
bench: $(STAMP)
	$(BIN)/pip install --quiet -r requirements-bench.txt
	$(BIN)/python -m bench.run

bench-smoke: $(STAMP)
	$(BIN)/python -m pytest tests/test_bench_smoke.py -q

lint: $(STAMP)
	$(BIN)/ruff check .

check: $(SERVE)
	$(BIN)/flask --app wsgi connector check

migrate: $(SERVE)
	$(BIN)/flask --app wsgi connector migrate

worker: $(SERVE)
	$(BIN)/flask --app wsgi connector worker

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
