"""One benchmark row per subprocess: `python -m benchmarks.rows NAME --steps N --repeats R`.

Each row prints one JSON object: median seconds per step (after warm-up), the warm-up/compile
time, and peak memory. Run in a subprocess each, so peak memory and threads are the row's own.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np

from data import load_fashion_mnist, train_batches

BATCH = 64


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_steps(run_step, batches, warmup: int, steps: int, repeats: int, sync):
    """First call (compile/warm-up) timed alone, then `repeats` timings of `steps` steps; median s/step."""
    it = iter(batches)
    start = time.perf_counter()
    run_step(next(it))
    sync()
    first = time.perf_counter() - start
    for _ in range(warmup - 1):
        run_step(next(it))
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            run_step(next(it))
        sync()
        times.append((time.perf_counter() - start) / steps)
    return first, times


def endless_batches(n: int, seed: int = 0):
    epoch = 1
    while True:
        for idx in train_batches(n, BATCH, seed, epoch):
            if len(idx) == BATCH:  # the benchmark measures full batches only
                yield idx
        epoch += 1


# ------------------------------------------------------------------------------------------ torch rows


def torch_rows(name: str, device_name: str, args):
    import torch

    from common.config import TrainConfig
    from torch_impl import steps as torch_steps
    from torch_impl import train as torch_train
    from torch_impl import training as torch_training

    config = TrainConfig("torch", device=device_name)
    device = torch_train.setup_device(config)  # joins the process group under torchrun
    rank, world = config.rank, config.world_size
    sync = (lambda: torch.cuda.synchronize()) if device.type == "cuda" else (lambda: None)
    if name == "torch-original":  # the original example's own step: benchmarks/original_example.py
        from benchmarks import original_example as original

        model, loss_fn, optimizer = original.setup(device)
        loader = torch.utils.data.DataLoader(original.datasets()[0], batch_size=BATCH, shuffle=True)

        def loader_batches():
            while True:
                for x, y in loader:
                    if len(y) == BATCH:
                        yield x, y

        def run_original(batch):
            original.train_batch(*batch, model, loss_fn, optimizer, device)

        return time_steps(run_original, loader_batches(), args.warmup, args.steps, args.repeats, sync), device

    torch.manual_seed(0)
    nchw = name == "torch-nchw"
    model = torch_training.build_model(3, device, torch.contiguous_format if nchw else None)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    net = model if world == 1 else torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)

    ds = load_fashion_mnist()
    x_all, y_all = torch_training.to_device(ds.train_images, ds.train_labels, device)
    if name == "torch-graph":  # the trainer's own captured step (torch_impl/cuda_graph.py)
        optimizer = torch_steps.make_optimizer(model, TrainConfig.lr, capturable=True)
        static = torch_training.capture_step(model, optimizer, x_all, y_all, TrainConfig("torch"))

        def run_graph(idx):
            static(torch.from_numpy(idx).to(device, non_blocking=True))

        return time_steps(run_graph, endless_batches(len(ds.train_labels)), args.warmup, args.steps, args.repeats,
                          sync), device
    step = torch_steps.train_step
    if name == "torch-compile":
        step = torch.compile(torch_steps.train_step)
    if name == "torch-compile-cudagraphs":
        step = torch.compile(torch_steps.train_step, mode="reduce-overhead")
    totals = [torch.zeros((), device=device)]

    def run_step(idx):
        idx_t = torch_training.rank_slice(torch.from_numpy(idx).to(device, non_blocking=True), rank, world)
        loss_sum, _ = step(net, optimizer, x_all[idx_t], y_all[idx_t], denominator=len(idx) / world)
        totals[0] += loss_sum

    return time_steps(run_step, endless_batches(len(ds.train_labels)), args.warmup, args.steps, args.repeats,
                      sync), device


def torch_memory(device) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


# ------------------------------------------------------------------------------------------ flax rows


def flax_rows(name: str, device_name: str, args):
    import jax

    from common.config import TrainConfig
    from flax_impl import training as flax_training
    from flax_impl.placement import make_placement

    placement = make_placement(device_name, args.devices)
    ds = load_fashion_mnist()
    x_all, y_all = flax_training.device_arrays(ds.train_images, ds.train_labels, placement)
    # Every variant through the trainer's own state, compiled step and compiler options.
    config = TrainConfig("flax", variant=args.variant, api="nnx" if name == "nnx-jit" else args.api)
    state = flax_training.create_train_state(config, placement)
    if name == "nnx-jit":  # the NNX step as a reader writes it: nnx.jit, one call per batch, objects in place
        return nnx_reader_loop(state, x_all, y_all, len(ds.train_labels), args), placement
    k = args.k or flax_training.steps_per_dispatch(config, placement.platform)
    holder = {"state": state, "totals": flax_training.zero_totals(placement)}
    step = None

    def run_step(idx):  # idx (k, 64): k steps in one dispatch
        nonlocal step
        if step is None:
            step = flax_training.compile_train_steps(holder["state"], x_all, y_all, idx.shape, placement)
        holder["state"], holder["totals"] = step(holder["state"], holder["totals"], x_all, y_all,
                                                 placement.put_batch(idx))

    def grouped():
        batches = endless_batches(len(ds.train_labels))
        while True:
            yield np.stack([next(batches) for _ in range(k)]).astype(np.int32)

    first, times = time_steps(run_step, grouped(), max(1, args.warmup // k), max(1, args.steps // k), args.repeats,
                              lambda: jax.block_until_ready(holder["totals"]))
    return (first, [t / k for t in times]), placement


def nnx_reader_loop(state, x_all, y_all, n: int, args):
    """The reader's loop: one `nnx.jit` call per batch on the model and optimizer in place. --gather
    eager indexes the batch outside the step (x_all[idx], as a reader writes it), inside passes the
    indices; --cached calls the step through nnx.cached_partial (Flax's performance guide: the graph
    traversal of model and optimizer cached instead of redone every call). XLA's options come from
    the environment (benchmarks.nnx_loop sets XLA_FLAGS), as nnx.jit takes no compiler options."""
    import jax
    from flax import nnx

    from flax_impl import nnx_steps
    from flax_impl.steps import gather

    @nnx.jit
    def gathering_step(model, optimizer, images, labels, idx):
        return nnx_steps.train_step(model, optimizer, gather(images, labels, idx))

    if args.gather == "eager":
        step, inputs = nnx_steps.jit_train_step, lambda idx: ({"images": x_all[idx], "labels": y_all[idx]},)
    else:
        step, inputs = gathering_step, lambda idx: (x_all, y_all, idx)
    model, optimizer = state.merge()
    if args.cached:
        cached = nnx.cached_partial(step, model, optimizer)

        def run(idx):
            return cached(*inputs(idx))
    else:
        def run(idx):
            return step(model, optimizer, *inputs(idx))

    sink = []

    def run_step(idx):
        sink[:] = [run(jax.numpy.asarray(idx))]

    return time_steps(run_step, endless_batches(n), args.warmup, args.steps, args.repeats,
                      lambda: jax.block_until_ready(sink))


def flax_memory(placement) -> float | None:
    device = placement.devices[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    return stats["peak_bytes_in_use"] / 2**20 if stats and "peak_bytes_in_use" in stats else None


# ------------------------------------------------------------------------------------------ ceiling


def matmul_ceiling(framework: str, device_name: str, size: int, repeats: int) -> float:
    """float32 GFLOP/s of a large square matmul: the machine's practical ceiling."""
    flops = 2 * size**3
    if framework == "torch":
        import torch

        from torch_impl.train import resolve_device

        device = resolve_device(device_name)
        a = torch.rand(size, size, device=device)
        b = torch.rand(size, size, device=device)
        sync = (lambda: torch.cuda.synchronize()) if device.type == "cuda" else (lambda: None)
        mm = torch.mm
    else:
        import jax

        from flax_impl.placement import make_placement

        device = make_placement(device_name, 1).devices[0]
        a = jax.device_put(np.random.rand(size, size).astype(np.float32), device)
        b = jax.device_put(np.random.rand(size, size).astype(np.float32), device)
        mm = jax.jit(lambda x, y: jax.lax.dot(x, y, precision="highest"))
        sync = None
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        c = mm(a, b)
        if sync:
            sync()
        else:
            c.block_until_ready()
        times.append(time.perf_counter() - start)
    return flops / float(np.median(times[1:])) / 1e9


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rows")
    parser.add_argument("row")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--k", type=int, default=0, help="flax: steps per dispatch (0 = per backend)")
    parser.add_argument("--devices", type=int, default=1, help="flax: data-parallel over this many devices")
    parser.add_argument("--variant", default="auto", help="flax: model variant (auto, idiomatic, custom-vjp)")
    parser.add_argument("--api", default="linen", help="flax: linen or nnx")
    parser.add_argument("--size", type=int, default=2048, help="ceiling: matmul size")
    parser.add_argument("--gather", choices=("eager", "inside"), default="eager",
                        help="nnx-jit: index the batch outside the step (eager) or inside it")
    parser.add_argument("--cached", action="store_true", help="nnx-jit: call the step through nnx.cached_partial")
    args = parser.parse_args(argv)
    if args.row.startswith("ceiling-"):
        gflops = matmul_ceiling(args.row.removeprefix("ceiling-"), args.device, args.size, args.repeats)
        print(json.dumps({"row": args.row, "gflops": gflops}))
        return 0
    if args.row.startswith("torch"):
        import torch.distributed as dist

        (first, times), device = torch_rows(args.row, args.device, args)
        memory = torch_memory(device)
        device_str = str(device)
        if dist.is_initialized():
            device_str += f" x {dist.get_world_size()} processes (DDP, {dist.get_backend()})"
            if dist.get_rank() != 0:
                dist.destroy_process_group()
                return 0  # rank 0 alone reports
            dist.destroy_process_group()
    else:
        (first, times), placement = flax_rows(args.row, args.device, args)
        memory = flax_memory(placement)
        device_str = placement.describe()
    print(json.dumps({
        "row": args.row,
        "device": device_str,
        "first_step_seconds": first,
        "seconds_per_step": times,
        "peak_device_mib": memory,
        "peak_rss_mib": peak_rss_mib(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
