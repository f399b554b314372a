# Two commands do all the set-up: `make train` (the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
PY := $(VENV)/bin/python

.PHONY: install test train bench clean

install: $(STAMP)

# Re-installs only when pyproject.toml changes (or the venv is missing).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: install
	$(PY) -m pytest

train: install
	$(PY) -m torch_impl.train --out-dir runs/torch --overwrite
	$(PY) -m flax_impl.train --out-dir runs/flax --overwrite
	$(PY) -m common.compare runs/torch runs/flax --out runs/comparison

# The step table, then the whole-process table (fresh processes, interleaved rounds).
bench: install
	$(PY) -m benchmarks
	$(PY) -m benchmarks.process

clean:
	rm -rf runs
