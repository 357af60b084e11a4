# Two commands do all the set-up: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# requirements/lock.txt pins every package a clone installs (pip constraints); `make lock` refreshes it.
LOCK := requirements/lock.txt
EXTRAS ?= test

.PHONY: demo test test-slow bench install lock clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c $(LOCK) pip

$(STAMP): setup.cfg pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/python -m pip install -c $(LOCK) -e ".[$(EXTRAS)]"
	touch $(STAMP)

# Re-resolve every dependency from the registry in a throw-away venv and write the lock; then run
# `make test` on it before committing. (Here pip takes torch 2.14.1 / torchvision 0.29.1 from the
# machine's local cache; a newer torch would be a multi-GB download on every fresh clone.)
lock:
	rm -rf .lock-venv && $(PY) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q --upgrade pip
	.lock-venv/bin/python -m pip install -q -e ".[$(EXTRAS)]"
	{ sed -n '1,3p' $(LOCK); .lock-venv/bin/python -m pip freeze --all --exclude-editable \
	  | grep -v '^#' | sort -f; } > $(LOCK).new
	mv $(LOCK).new $(LOCK) && rm -rf .lock-venv
	@echo "wrote $(LOCK); run make test before committing it"

install: $(STAMP)

demo: $(STAMP)
	bash examples/demo.sh

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf out build *.egg-info .lock-venv
