#!/usr/bin/env bash
# Every GPU measurement the issues ask for, in one prepared run (for a lent device machine, where
# python3 already has torch, jax[cuda], flax, optax, safetensors, tqdm and matplotlib):
#   copy the four dataset files into data/fashion-mnist/ first and name that folder in `carry`;
#   then run: bash benchmarks/gpu_check.sh   (every stage; at most 13 minutes with every timeout
#   included, so on a device whose calls stop at 600 s run it as two calls:
#   STAGES="bench process" bash benchmarks/gpu_check.sh, then STAGES="seeds graph parity deterministic")
# Results go to $OUT (the device tool brings back at most 8 files) or runs/gpu-check/:
#   bench.md/json (the training step: both flax variants under --api linen and --api nnx, the NNX
#   reader's nnx.jit loop, torch eager / compile / reduce-overhead / the whole step in one CUDA graph),
#   process.md/json (whole processes, 1 and 10 epochs, cold and warm compilation cache, --api nnx warm,
#   phases),
#   seeds.md/json (flax_impl's step for 1, 8 and 32 seeds, vmapped and one after another),
#   gpu_check.log (also: one epoch of torch_impl with --cuda-graph on and off, their metrics side by
#   side, the captured path's first check on a GPU, which decides whether it becomes the CUDA default
#   (torch_impl/training.py CUDA_GRAPH_BY_DEFAULT); and parity_tests/test_numerics.py on the GPU with
#   PARITY_DEVICE=gpu, Linen and NNX; and --deterministic: two runs per trainer (flax under both APIs),
#   their metrics.jsonl compared byte for byte, and their epoch seconds against a run without it). Each step has its own timeout, so one that hangs cannot take the rest with it.
# PYTHON picks the interpreter (default python3). BENCH_ARGS and PROCESS_ARGS shorten a trial run on
# a CPU, e.g. BENCH_ARGS="--steps 16 --warmup 4 --repeats 1 --devices 1" PROCESS_ARGS="--epochs 1 --rounds 1"
# SEEDS_ARGS="--counts 1,2 --k 4 --reps 1 --rounds 1" RUN_ARGS="--train-size 640 --test-size 128"
# PARITY_ARGS="-x" (on a CPU, PARITY_DEVICE=gpu fails at once: torch has no CUDA there).
set -uo pipefail
export PYTHONPATH=. PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
DEST=${OUT:-runs/gpu-check}
STAGES=${STAGES:-bench process seeds graph parity deterministic}
BENCH_ARGS=${BENCH_ARGS:---steps 512 --warmup 128 --repeats 2}
PROCESS_ARGS=${PROCESS_ARGS:---epochs 1,10 --rounds 1}
SEEDS_ARGS=${SEEDS_ARGS:---counts 1,8,32 --reps 4 --rounds 3}
GRAPH_ARGS=${GRAPH_ARGS:-}
PARITY_ARGS=${PARITY_ARGS:-}
RUN_ARGS=${RUN_ARGS:-}  # extra trainer flags for the graph and deterministic stages (a CPU trial: --train-size 640)
WORK=$(mktemp -d)
mkdir -p "$DEST"

bench() {  # the training step: every row, both frameworks
    # shellcheck disable=SC2086
    timeout 150 "$PY" -m benchmarks $BENCH_ARGS --out "$DEST/bench" || echo "step benchmark failed or timed out"
}

process() {  # whole processes, 1 and 10 epochs, with each run's test accuracy
    # 280 s: the original example alone trains ~65 s for 10 epochs on a GPU (9,196 samples/s); the
    # report is rewritten after every run, so a timeout keeps the rows measured so far.
    # shellcheck disable=SC2086
    timeout 280 "$PY" -m benchmarks.process $PROCESS_ARGS --out "$DEST/process" || echo "process benchmark cut short (see process.md) or failed"
}

seeds() {  # flax_impl's step for N seeds, vmapped and one after another
    # shellcheck disable=SC2086
    timeout 60 "$PY" -m benchmarks.seeds $SEEDS_ARGS --out "$DEST/seeds" || echo "seeds benchmark failed or timed out"
}

train() {  # one epoch of a trainer into $WORK/NAME; prints its metrics and epoch seconds
    local name=$1 framework=$2
    shift 2
    # shellcheck disable=SC2086
    if timeout 30 "$PY" -m "${framework}_impl.train" --epochs 1 $RUN_ARGS $GRAPH_ARGS "$@" --quiet --overwrite \
            --out-dir "$WORK/$name" > /dev/null; then
        echo "$name: $(cat "$WORK/$name/metrics.jsonl") epoch seconds $(cat "$WORK/$name/timings.json" | tr -d ' \n')"
    else
        echo "$name: failed or timed out"
    fi
}

graph() {  # the captured torch step against eager: the same math up to capturable Adam's rounding
    train cuda-graph-on torch --cuda-graph on
    train cuda-graph-off torch --cuda-graph off
}

parity() {  # the same converted weights give the same logits and gradients on the GPU, CPU tolerances
    # shellcheck disable=SC2086
    PARITY_DEVICE=gpu timeout 80 "$PY" -m pytest parity_tests/test_numerics.py -q -p no:cacheprovider \
        -k "logits or gradients_on_a_real_batch" $PARITY_ARGS || echo "GPU parity check failed or timed out"
}

deterministic() {  # --deterministic: byte-identical metrics run after run, and what it costs
    for name in flax nnx torch; do
        local framework=$name api=()
        [ "$name" = nnx ] && framework=flax api=(--api nnx)
        train "$name-det-1" "$framework" "${api[@]}" --deterministic
        train "$name-det-2" "$framework" "${api[@]}" --deterministic
        train "$name-default" "$framework" "${api[@]}"
        if cmp -s "$WORK/$name-det-1/metrics.jsonl" "$WORK/$name-det-2/metrics.jsonl"; then
            echo "$name --deterministic: metrics.jsonl byte-identical over two runs"
        else
            echo "$name --deterministic: metrics.jsonl DIFFERS between two runs"
        fi
    done
}

{
    nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
    timeout 30 "$PY" -c "import jax, torch; print('jax', jax.__version__, jax.devices()); print('torch', torch.__version__, torch.cuda.is_available())"
    for stage in $STAGES; do
        echo "== $stage ($(date -u +%H:%M:%S))"
        "$stage"
    done
    echo "== done ($(date -u +%H:%M:%S))"
} 2>&1 | tee "$DEST/gpu_check.log"
rm -rf "$WORK"
