#!/usr/bin/env bash
# Every GPU measurement the issues ask for, in one prepared run (for a lent device machine, where
# python3 already has torch, jax[cuda], flax, optax, safetensors, tqdm and matplotlib):
#   copy the four dataset files into data/fashion-mnist/ first and name that folder in `carry`;
#   then run: bash benchmarks/gpu_check.sh   (about 5 minutes on one H100)
# Results go to $OUT (the device tool brings back at most 8 files) or runs/gpu-check/.
# PYTHON picks the interpreter (default python3). TRAIN_ARGS and BENCH_ARGS shorten a trial run, e.g. TRAIN_ARGS="--epochs 1 --train-size 2000".
set -uo pipefail
export PYTHONPATH=. PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
DEST=${OUT:-runs/gpu-check}
RUNS=runs/gpu-check-runs
TRAIN_ARGS=${TRAIN_ARGS:-}
BENCH_ARGS=${BENCH_ARGS:---steps 512 --warmup 128 --repeats 3}
mkdir -p "$DEST" "$RUNS"
{
    nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
    "$PY" -c "import jax, torch; print('jax', jax.__version__, jax.devices()); print('torch', torch.__version__, torch.cuda.is_available())"
    # shellcheck disable=SC2086
    "$PY" -m benchmarks $BENCH_ARGS --out "$DEST/bench"
    # shellcheck disable=SC2086
    "$PY" -m flax_impl.train --out-dir "$RUNS/flax" --overwrite $TRAIN_ARGS
    # shellcheck disable=SC2086
    "$PY" -m torch_impl.train --out-dir "$RUNS/torch" --overwrite $TRAIN_ARGS
    "$PY" -m common.compare "$RUNS/torch" "$RUNS/flax" --out "$DEST/comparison"
} 2>&1 | tee "$DEST/gpu_check.log"
