#!/usr/bin/env bash
# Every GPU measurement the issues ask for, in one prepared run (for a lent device machine, where
# python3 already has torch, jax[cuda], flax, optax, safetensors, tqdm and matplotlib):
#   copy the four dataset files into data/fashion-mnist/ first and name that folder in `carry`;
#   then run: bash benchmarks/gpu_check.sh   (at most 9.7 minutes, every timeout included: give the
#   device call timeout_s 600)
# Results go to $OUT (the device tool brings back at most 8 files) or runs/gpu-check/:
#   bench.md/json (the training step, both flax variants, torch eager / compile / reduce-overhead /
#   the whole step in one CUDA graph),
#   process.md/json (whole processes, 1 and 10 epochs, cold and warm compilation cache, phases),
#   seeds.md/json (flax_impl's step for 1, 8 and 32 seeds, vmapped and one after another),
#   gpu_check.log (also: one epoch of torch_impl with --cuda-graph on and off, their metrics side by
#   side, the captured path's first check on a GPU; and parity_tests/test_numerics.py on the GPU with
#   PARITY_DEVICE=gpu). Each step has its own timeout, so one that hangs cannot take the rest with it.
# PYTHON picks the interpreter (default python3). BENCH_ARGS and PROCESS_ARGS shorten a trial run on
# a CPU, e.g. BENCH_ARGS="--steps 16 --warmup 4 --repeats 1 --devices 1" PROCESS_ARGS="--epochs 1 --rounds 1"
# SEEDS_ARGS="--counts 1,2 --k 4 --reps 1 --rounds 1" GRAPH_ARGS="--train-size 640 --test-size 128"
# PARITY_ARGS="-x" (on a CPU, PARITY_DEVICE=gpu fails at once: torch has no CUDA there).
set -uo pipefail
export PYTHONPATH=. PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
DEST=${OUT:-runs/gpu-check}
BENCH_ARGS=${BENCH_ARGS:---steps 512 --warmup 128 --repeats 2}
PROCESS_ARGS=${PROCESS_ARGS:---epochs 1,10 --rounds 1}
SEEDS_ARGS=${SEEDS_ARGS:---counts 1,8,32 --reps 4 --rounds 3}
GRAPH_ARGS=${GRAPH_ARGS:-}
PARITY_ARGS=${PARITY_ARGS:-}
mkdir -p "$DEST"
{
    nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
    timeout 30 "$PY" -c "import jax, torch; print('jax', jax.__version__, jax.devices()); print('torch', torch.__version__, torch.cuda.is_available())"
    # shellcheck disable=SC2086
    timeout 150 "$PY" -m benchmarks $BENCH_ARGS --out "$DEST/bench" || echo "step benchmark failed or timed out"
    # shellcheck disable=SC2086
    timeout 200 "$PY" -m benchmarks.process $PROCESS_ARGS --out "$DEST/process" || echo "process benchmark failed or timed out"
    # shellcheck disable=SC2086
    timeout 60 "$PY" -m benchmarks.seeds $SEEDS_ARGS --out "$DEST/seeds" || echo "seeds benchmark failed or timed out"
    # The captured torch step against eager, one epoch each: the same math up to capturable Adam's rounding.
    GRAPH_DIR=$(mktemp -d)
    for graph in on off; do
        # shellcheck disable=SC2086
        timeout 30 "$PY" -m torch_impl.train --epochs 1 $GRAPH_ARGS --cuda-graph "$graph" --quiet --overwrite \
            --out-dir "$GRAPH_DIR/$graph" && echo "cuda-graph $graph: $(cat "$GRAPH_DIR/$graph/metrics.jsonl")" \
            || echo "torch_impl --cuda-graph $graph failed or timed out"
    done
    # Parity on the GPU: the same converted weights give the same logits and gradients in both
    # frameworks at full float32 precision, every kernel size and variant, the CPU's tolerances.
    PARITY_DEVICE=gpu timeout 80 "$PY" -m pytest parity_tests/test_numerics.py -q -p no:cacheprovider \
        -k "logits or gradients_on_a_real_batch" $PARITY_ARGS || echo "GPU parity check failed or timed out"
} 2>&1 | tee "$DEST/gpu_check.log"
