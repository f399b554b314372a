#!/usr/bin/env bash
# Every GPU measurement the issues ask for, in ONE device call of at most 8 minutes (issue #31 part 7:
# a lease is 15 minutes of device time in all, the machine's start included, 10 minutes a call).
# For a lent device machine, where python3 already has torch, jax[cuda], flax, optax, safetensors,
# tqdm, matplotlib, pytest and scipy: copy the four dataset files into data/fashion-mnist/ first, name
# that folder in `carry`, then run
#     bash benchmarks/gpu_check.sh          (device tool: timeout_s 540)
#
# What matters most runs first, and a global deadline (DEADLINE seconds, default 470) cuts every
# stage's timeout to the time left, so the call ends inside its limit with the most important answers:
#   smoke          torch_impl trains one epoch on CUDA (issue #31 part 1), flax and NNX too
#   seeds          vmapped against sequential seeds at 1 and 32, the vmapped step with its convolutions
#                  as batched matmuls and as grouped ones, a vmapped conv2 alone both ways, the op
#                  census of the vmapped step (part 5)
#   deterministic  --deterministic: which flax program gives other bits, in one process or across two
#                  compilations (benchmarks.determinism); byte-identical metrics, its cost per trainer
#                  and per flax variant; the op census of the step with and without it (part 6)
#   process        time to result, whole processes at 1 and 10 epochs, warm and cold cache (part 3)
#   cold           a first run's compile time with XLA's GPU autotuning as it is, off, and without Triton
#                  GEMMs, each on an empty cache: what the cold run's 16 s are (part 3)
#   correctness    no timings, so side by side: GPU parity tests (Linen and NNX), the kit's proofs
#                  (examples/, parity_tests/test_kit_convnet.py) with JAX on the GPU
#   profile        cProfile of a warm 10-epoch flax run: where init and the per-epoch overhead go (part 3)
#   graph          --cuda-graph on against off: several seeds, several epochs, Welch (part 2's decision)
#   nnx_loop       the NNX reader's loop ladder, with torch eager as the bar (part 4)
# Every stage appends its report to $DEST/gpu_check.log as it ends (the log alone holds every
# answer, so a call cut short still brings them back); the reports are also packed into
# $DEST/gpu-check.tgz at the end. DEST is $OUT on the device tool (at most 8 files come back), else
# runs/gpu-check/.
#
# A trial on a CPU with tiny settings (PARITY_DEVICE=gpu fails at once there: torch has no CUDA):
#   DEVICE=cpu TINY=1 STAGES="smoke graph process profile deterministic seeds nnx_loop" \
#   bash benchmarks/gpu_check.sh
set -uo pipefail
export PYTHONPATH=. PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
PY=${PYTHON:-python3}
DEST=${OUT:-runs/gpu-check}
# The order: what no lease has measured yet first (seeds, --deterministic's byte-identical runs, time to
# result after its changes, the GPU correctness stages), then what 6437f49's lease settled (graph, nnx_loop).
STAGES=${STAGES:-smoke seeds deterministic process cold correctness profile graph nnx_loop}
DEADLINE=${DEADLINE:-470}
TINY=${TINY:-}
DEVICE=${DEVICE:-auto}  # trainers' --device; cpu for a trial
if [ -n "$TINY" ]; then  # a CPU trial: every stage, in seconds
    RUN_ARGS="--train-size 640 --test-size 128"; GRAPH_SEEDS=0-1; GRAPH_EPOCHS=1; PROCESS_EPOCHS=1
    PROCESS_ARGS=(--trainer-args "--train-size 640 --test-size 128"); LOOP_ARGS="--steps 8 --warmup 2 --rounds 1"
    SEEDS_ARGS="--counts 1,2 --k 2 --reps 1 --rounds 1"; HLO_SEEDS=2; PROFILE_EPOCHS=2; DETERMINISM_ARGS="--k 2 --repeats 2"
else
    RUN_ARGS=""; GRAPH_SEEDS=0-3; GRAPH_EPOCHS=3; PROCESS_EPOCHS=1,10; PROCESS_ARGS=()
    LOOP_ARGS="--steps 512 --warmup 64 --rounds 1"; SEEDS_ARGS="--counts 1,32 --reps 2 --rounds 2"; HLO_SEEDS=32
    PROFILE_EPOCHS=10; DETERMINISM_ARGS="--k 64 --repeats 3"
fi
JAX_DEVICE=$([ "$DEVICE" = cpu ] && echo cpu || echo auto)
START=$(date +%s)
WORK=$(mktemp -d)
REPORTS="$WORK/reports"
mkdir -p "$DEST" "$REPORTS"
LOG="$DEST/gpu_check.log"
: > "$LOG"

left() {  # seconds left before the deadline, at most $1
    local rest=$((DEADLINE - ($(date +%s) - START)))
    [ "$rest" -lt "$1" ] && echo $((rest > 1 ? rest : 1)) || echo "$1"
}

limited() {  # limited SECONDS COMMAND...: the command with a timeout cut to the time left
    local t
    t=$(left "$1")
    shift
    timeout "$t" "$@"
}

show() {  # a stage's report file, into the log
    [ -f "$1" ] && { echo "--- $(basename "$1")"; cat "$1"; }
}

train() {  # train NAME FRAMEWORK SECONDS FLAGS...: a run into $WORK/NAME; its metrics and timings
    local name=$1 framework=$2 seconds=$3
    shift 3
    # shellcheck disable=SC2086
    if limited "$seconds" "$PY" -m "${framework}_impl.train" --device "$DEVICE" $RUN_ARGS "$@" --quiet --overwrite \
            --out-dir "$WORK/$name" > "$WORK/$name.out" 2>&1; then
        echo "$name: $(tail -n 1 "$WORK/$name/metrics.jsonl" 2>/dev/null) timings $(tr -d ' \n' < "$WORK/$name/timings.json")"
    else
        echo "$name: failed or timed out: $(tail -n 3 "$WORK/$name.out")"
    fi
}

smoke() {  # the PyTorch reference on CUDA (issue #31 part 1), then both JAX APIs, one epoch each
    train smoke-torch torch 60 --epochs 1
    grep -h '"device"' "$WORK/smoke-torch/config.json" 2>/dev/null | head -n 1
    train smoke-flax flax 60 --epochs 1
    train smoke-nnx flax 60 --epochs 1 --api nnx
}

graph() {  # torch's captured step against eager over seeds: does --cuda-graph change the result?
    train graph-on torch 120 --seeds "$GRAPH_SEEDS" --epochs "$GRAPH_EPOCHS" --cuda-graph on
    train graph-off torch 120 --seeds "$GRAPH_SEEDS" --epochs "$GRAPH_EPOCHS" --cuda-graph off
    limited 30 "$PY" -m common.compare "$WORK/graph-on" "$WORK/graph-off" --out "$REPORTS/graph-compare" \
        > /dev/null 2>&1 || echo "graph comparison failed"
    show "$REPORTS/graph-compare.md"
    for side in on off; do  # each sweep's whole-process phases: the epoch seconds the graph saves
        echo "graph-$side seconds per phase: $(tr -d ' \n' < "$WORK/graph-$side/timings.json" 2>/dev/null)"
    done
}

cold() {  # a first run's compilation (part 3's cold run <= 8 s; 16.1 s for custom-vjp on 6437f49's lease):
    # what XLA's GPU autotuning costs, each flax run with an empty cache of its own, 2 epochs (the second's
    # seconds say whether the step got slower); on a CPU the flags change nothing
    local i=0
    for flags in "" "--xla_gpu_autotune_level=0" "--xla_gpu_enable_triton_gemm=false"; do
        i=$((i + 1))
        echo "cold-$i: XLA_FLAGS=${flags:-(none)}"
        XLA_FLAGS="$flags" train "cold-$i" flax 60 --epochs 2 --compilation-cache "$WORK/cold-cache-$i"
    done
}

process() {  # whole processes, 1 and 10 epochs: the time a user waits for a result
    limited 150 "$PY" -m benchmarks.process --device "$([ "$DEVICE" = cpu ] && echo cpu || echo auto)" \
        --epochs "$PROCESS_EPOCHS" --rounds 1 --rows flax-warm,flax-cold,nnx-warm,torch "${PROCESS_ARGS[@]}" \
        --out "$REPORTS/process" > "$WORK/process.out" 2>&1 || echo "process benchmark cut short or failed"
    show "$REPORTS/process.md"
}

profile() {  # where a warm run's time goes, host side: cProfile's top functions by cumulative and own time
    local cache="$WORK/profile-cache"
    # shellcheck disable=SC2086
    FASHION_PARITY_JAX_CACHE=$cache limited 60 "$PY" -m flax_impl.train --device "$DEVICE" --epochs 1 $RUN_ARGS \
        --quiet --overwrite --out-dir "$WORK/profile-warmup" > /dev/null 2>&1
    # shellcheck disable=SC2086
    FASHION_PARITY_JAX_CACHE=$cache limited 60 "$PY" -m cProfile -o "$WORK/flax.prof" -m flax_impl.train \
        --device "$DEVICE" --epochs "$PROFILE_EPOCHS" $RUN_ARGS --quiet --overwrite --out-dir "$WORK/profile" \
        > /dev/null 2>&1 || echo "profiled run failed or timed out"
    echo "profiled run's phases: $(tr -d ' \n' < "$WORK/profile/timings.json" 2>/dev/null)"
    limited 30 "$PY" - "$WORK/flax.prof" > "$REPORTS/profile.txt" 2>&1 <<'EOF'
import pstats, sys
stats = pstats.Stats(sys.argv[1])
# The project's own functions and jax's dispatch and compile entry points, by cumulative time; then
# every function by its own time (where a host-side per-epoch cost would show).
stats.sort_stats("cumulative").print_stats(r"(flax_impl|common|data)/|jax/_src/(pjit|dispatch|compiler|api)\.py", 40)
stats.sort_stats("tottime").print_stats(25)
EOF
    show "$REPORTS/profile.txt" | sed -e 's/^ *//' | cut -c1-220
}

deterministic() {  # --deterministic: byte-identical metrics, its cost, and the operations that pay it
    # Which program or piece gives other bits, in one process or across two compilations (6437f49's lease:
    # flax's runs differed, cause not found); where only the compilations differ, again without autotuning.
    limited 90 "$PY" -m benchmarks.determinism --device "$JAX_DEVICE" $DETERMINISM_ARGS \
        --out "$REPORTS/determinism" > "$WORK/determinism.out" 2>&1 || tail -n 3 "$WORK/determinism.out"
    show "$REPORTS/determinism.md"
    if grep -q "^| compilation.*DIFFERS" "$REPORTS/determinism.md" 2>/dev/null; then
        limited 90 "$PY" -m benchmarks.determinism --device "$JAX_DEVICE" $DETERMINISM_ARGS \
            --xla-flags=--xla_gpu_autotune_level=0 --out "$REPORTS/determinism-no-autotune" > /dev/null 2>&1
        show "$REPORTS/determinism-no-autotune.md"
    fi
    for name in flax flax-idiomatic nnx torch; do
        local framework=flax flags=()
        case $name in
            torch) framework=torch ;;
            nnx) flags=(--api nnx) ;;
            flax-idiomatic) flags=(--variant idiomatic) ;;
        esac
        train "$name-det-1" "$framework" 60 --epochs 2 "${flags[@]}" --deterministic
        train "$name-det-2" "$framework" 60 --epochs 2 "${flags[@]}" --deterministic
        train "$name-default" "$framework" 60 --epochs 2 "${flags[@]}"
        if [ -s "$WORK/$name-det-1/metrics.jsonl" ] && \
                cmp -s "$WORK/$name-det-1/metrics.jsonl" "$WORK/$name-det-2/metrics.jsonl"; then
            echo "$name --deterministic: metrics.jsonl byte-identical over two runs"
        else
            echo "$name --deterministic: metrics.jsonl DIFFERS between two runs (or a run failed); first difference:"
            diff "$WORK/$name-det-1/metrics.jsonl" "$WORK/$name-det-2/metrics.jsonl" | head -n 4
        fi
    done
    for variant in idiomatic custom-vjp; do  # what the step lowers to, with and without the flag
        limited 60 "$PY" -m benchmarks.hlo --device "$JAX_DEVICE" --variant $variant \
            --out "$REPORTS/hlo-$variant" > /dev/null 2>&1
        XLA_FLAGS=--xla_gpu_deterministic_ops=true limited 60 "$PY" -m benchmarks.hlo --device "$JAX_DEVICE" \
            --variant $variant --out "$REPORTS/hlo-$variant-deterministic" > /dev/null 2>&1
        show "$REPORTS/hlo-$variant.md"
        show "$REPORTS/hlo-$variant-deterministic.md"
    done
}

seeds() {  # N seeds vmapped against one after another; a vmapped conv two ways; the vmapped step's ops
    # shellcheck disable=SC2086
    # 1 and 32 seeds (part 5's target): each vmapped form and the sequential step compile cold, ~16 s each
    # for the custom-vjp model on an H200, which spent the 90 s stage of 6437f49's lease before any timing.
    limited 180 "$PY" -m benchmarks.seeds --device "$JAX_DEVICE" $SEEDS_ARGS --formulations --out "$REPORTS/seeds" \
        > "$WORK/seeds.out" 2>&1 || echo "seeds benchmark failed or timed out: $(tail -n 2 "$WORK/seeds.out")"
    show "$REPORTS/seeds.md"
    for variant in idiomatic custom-vjp; do
        limited 60 "$PY" -m benchmarks.hlo --device "$JAX_DEVICE" --variant $variant --seeds "$HLO_SEEDS" \
            --out "$REPORTS/hlo-$variant-seeds" > /dev/null 2>&1
        show "$REPORTS/hlo-$variant-seeds.md"
    done
}

nnx_loop() {  # the NNX reader's loop, one change at a time, and torch eager's step as the bar
    # shellcheck disable=SC2086
    limited 120 "$PY" -m benchmarks.nnx_loop --device "$([ "$DEVICE" = cpu ] && echo cpu || echo gpu)" $LOOP_ARGS \
        --out "$REPORTS/nnx_loop" > "$WORK/nnx_loop.out" 2>&1 || echo "nnx_loop failed or timed out"
    show "$REPORTS/nnx_loop.md"
}

correctness() {  # no timings: side by side
    PARITY_DEVICE=gpu limited 200 "$PY" -m pytest parity_tests/test_numerics.py -q -p no:cacheprovider \
        -k "logits or gradients_on_a_real_batch" > "$REPORTS/parity-gpu.txt" 2>&1 &
    local a=$!
    PARITY_DEVICE=gpu limited 200 "$PY" -m pytest examples parity_tests/test_kit_convnet.py -q -p no:cacheprovider \
        > "$REPORTS/kit-gpu.txt" 2>&1 &
    local b=$!
    wait $a $b
    echo "--- parity tests on the GPU"; tail -n 5 "$REPORTS/parity-gpu.txt"
    echo "--- the kit's proofs with JAX on the GPU"; tail -n 8 "$REPORTS/kit-gpu.txt"
}

{
    nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
    limited 60 "$PY" -c "import jax, torch; print('jax', jax.__version__, jax.devices()); print('torch', torch.__version__, torch.cuda.is_available())"
    echo "git: $(git rev-parse --short HEAD 2>/dev/null) $(git status --porcelain 2>/dev/null | wc -l) changed files"
    for stage in $STAGES; do
        if [ "$(left 9999)" -le 5 ]; then
            echo "== $stage skipped: the deadline ($DEADLINE s) has passed"
            continue
        fi
        echo "== $stage (at $(( $(date +%s) - START )) s)"
        "$stage"
    done
    echo "== done (at $(( $(date +%s) - START )) s)"
} 2>&1 | tee -a "$LOG"
tar czf "$DEST/gpu-check.tgz" -C "$REPORTS" . 2>/dev/null
rm -rf "$WORK"
