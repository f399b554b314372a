# Two commands do all the set-up: `make train` (the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
PY := $(VENV)/bin/python

.PHONY: install lock test train seeds bench catalogue clean

install: $(STAMP)

# Re-installs only when pyproject.toml or constraints.txt change (or the venv is missing). The
# versions are constraints.txt's: the ones the tests passed with, so metrics reproduce number for number.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Refresh constraints.txt: the newest versions pyproject.toml allows, in a fresh venv. Then `make test`.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet -e '.[dev]'
	{ echo "# Tested, pinned versions for \`make install\` (pip's constraints: only what the project needs is installed)."; \
	  echo "# Made by \`make lock\` from a fresh venv on Python $$(.venv-lock/bin/python -c 'import platform; print(platform.python_version())'), $$(date -u +%Y-%m-%d); refresh with \`make lock\`, then run \`make test\`."; \
	  .venv-lock/bin/python -m pip freeze --exclude-editable; } > constraints.txt
	rm -rf .venv-lock

# Two xdist workers, a file to each, each held to its share of the cores (conftest.py says why); the
# slowest tests are listed at the end. TEST_WORKERS=1 runs in one process.
TEST_WORKERS ?= 2
test: install
	$(PY) -m pytest $(if $(filter 1,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile) --durations=15

# The three trainers at the reference settings (torch, Flax Linen, Flax NNX), then one comparison.
train: install
	$(PY) -m torch_impl.train --out-dir runs/torch --overwrite
	$(PY) -m flax_impl.train --out-dir runs/flax --overwrite
	$(PY) -m flax_impl.train --api nnx --out-dir runs/nnx --overwrite
	$(PY) -m common.compare runs/torch runs/flax runs/nnx --out runs/comparison

# A seed sweep per trainer and their comparison as distributions (mean +- std per epoch, Welch's 95%
# interval for the difference of the means, banded curves): runs/seeds/{torch,flax}/ (a folder per
# seed, seeds.json) and runs/seeds-comparison.md/.png. Settable: make seeds SEEDS=0-15 EPOCHS=3.
# The full recipe (8 seeds, 10 epochs) takes about 40 minutes on a 2-core CPU.
SEEDS ?= 0-7
EPOCHS ?= 10
seeds: install
	$(PY) -m torch_impl.train --seeds $(SEEDS) --epochs $(EPOCHS) --out-dir runs/seeds/torch --overwrite
	$(PY) -m flax_impl.train --seeds $(SEEDS) --epochs $(EPOCHS) --out-dir runs/seeds/flax --overwrite
	$(PY) -m common.compare runs/seeds/torch runs/seeds/flax --out runs/seeds-comparison

# The step table, then the whole-process table (fresh processes, interleaved rounds).
bench: install
	$(PY) -m benchmarks
	$(PY) -m benchmarks.process

# The porting-bug catalogue: every known bug of parity/bugs.py planted in a copy of the repository, its
# model's proof run on it; writes docs/catalogue.md (the kit's recall and false alarms, and the whole
# suite's, a row per bug). Two proofs run side by side, a thread each (--jobs 1: one at a time, every
# core). One model at a time: make catalogue CATALOGUE_ARGS="--model nanogpt --out F".
CATALOGUE_ARGS ?=
catalogue: install
	$(PY) -m parity.catalogue $(CATALOGUE_ARGS)

clean:
	rm -rf runs
