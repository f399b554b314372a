"""Hyperparameters and the command line both trainers share, with the reference's defaults."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass

from common.arch import VALID_KERNEL_SIZES
from common.checkpoint import checkpoint_kernel_size

FRAMEWORKS = ("torch", "flax")
# Float32 matmuls and convolutions: exact float32 ("highest", the default in both, for parity), or
# TF32-class tensor cores ("tf32": faster on NVIDIA GPUs since Ampere, ~1e-3 relative error).
PRECISIONS = ("highest", "tf32")


@dataclass
class TrainConfig:
    """Everything a run depends on; written to config.json."""

    framework: str
    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 64
    kernel_size: int = 3
    seed: int = 0
    device: str = "auto"
    out_dir: str = ""
    data_dir: str | None = None
    quiet: bool = False
    train_size: int | None = None
    test_size: int | None = None
    eval_only: bool = False
    checkpoint: str | None = None
    init_weights: str | None = None
    precision: str = "highest"
    deterministic: bool = False
    resume: bool = False
    overwrite: bool = False
    # Seed sweeps: --seeds, and how flax_impl trains them (--sweep auto|vmap|sequential); in_sweep is
    # set by common.sweep on each seed's own config: {"seeds": [...], "out_dir": the sweep's folder}.
    seeds: list[int] | None = None
    sweep: str = "auto"
    in_sweep: dict | None = None
    # flax_impl's flags (torch_impl leaves them at their defaults).
    api: str = "linen"  # the Flax API of the model and its step: linen (functional) or nnx
    init: str = "torch"
    variant: str = "auto"
    steps_per_dispatch: int = 0  # 0: the backend's default
    num_devices: int = 0  # 0: every device of the platform
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    compilation_cache: str | None = None  # the flag, then the folder in use (None: off)
    # torch_impl's flags.
    cuda_graph: str = "auto"
    # Set when the run starts, never by a flag: this process's rank, the processes, the command line.
    rank: int = 0
    world_size: int = 1
    argv: list[str] | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


SEED_MAX = 2**32 - 1  # NumPy's and torch's seeds are unsigned 32-bit


def _seed(text: str) -> int:
    value = _int(text)
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be between 0 and {SEED_MAX}, got {value}")
    return value


def parse_seeds(text: str) -> list[int]:
    """A seed list: "0-7", "0,3,5" or both ("0-3,9"); each seed once, in the order given."""
    seeds: list[int] = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        try:
            span = range(_seed(first), _seed(last) + 1) if dash else [_seed(first)]
        except argparse.ArgumentTypeError as e:
            raise argparse.ArgumentTypeError(f"{e} in {text!r} (write seeds as 0-7, 0,3,5 or 0-3,9)") from None
        if dash and not span:
            raise argparse.ArgumentTypeError(f"empty range {part.strip()!r} in {text!r}: write the smaller seed first")
        seeds += span
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise argparse.ArgumentTypeError(f"seed {repeated[0]} is listed twice in {text!r}")
    return seeds


def _kernel_size(text: str) -> int:
    value = _int(text)
    if value not in VALID_KERNEL_SIZES:
        raise argparse.ArgumentTypeError(
            f"must be odd and leave spatial extent after both conv+pool stages: one of "
            f"{', '.join(map(str, VALID_KERNEL_SIZES))}; got {value}"
        )
    return value


def build_parser(framework: str, devices_help: str) -> argparse.ArgumentParser:
    """The shared CLI; `--help` states every default."""
    assert framework in FRAMEWORKS
    name = {"torch": "PyTorch reference", "flax": "JAX/Flax twin"}[framework]
    parser = argparse.ArgumentParser(
        prog=f"python -m {framework}_impl.train",
        description=f"Train the Fashion-MNIST convnet ({name}) and write metrics, plots and a safetensors checkpoint.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    d = TrainConfig(framework)
    parser.add_argument("--epochs", type=_positive_int, default=d.epochs, help="passes over the training set")
    parser.add_argument("--lr", type=_positive_float, default=d.lr, help="Adam learning rate")
    parser.add_argument("--batch-size", type=_positive_int, default=d.batch_size, help="samples per step")
    parser.add_argument("--kernel-size", type=_kernel_size, default=argparse.SUPPRESS,
                        help=f"conv kernel size, one of {VALID_KERNEL_SIZES}; --eval-only reads it from the "
                             f"checkpoint (default: {d.kernel_size})")
    parser.add_argument("--seed", type=_seed, default=d.seed, help="seeds the initialisation and the batch order")
    parser.add_argument("--seeds", type=parse_seeds, default=None, metavar="LIST",
                        help="a seed sweep instead of --seed: e.g. 0-7 or 0,3,5; each seed trains exactly the model "
                             "--seed S trains and writes that run's files in OUT/seed-S/, plus OUT/seeds.json "
                             "(mean, std, min, max over the seeds)")
    parser.add_argument("--device", default=d.device, help=devices_help)
    parser.add_argument("--out-dir", default=f"runs/{framework}", help="where config, metrics, plots and weights go")
    parser.add_argument("--data-dir", default=None,
                        help="folder with the four Fashion-MNIST IDX files (default: $FASHION_MNIST_DIR, "
                             "data/fashion-mnist/, /usr/share/datasets/fashion-mnist/, else download)")
    parser.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                        help="every float32 matmul and convolution in the framework: highest (exact float32, as "
                             "on a CPU) or tf32 (TF32 tensor cores on NVIDIA GPUs); no effect on a CPU")
    parser.add_argument("--deterministic", action="store_true",
                        help="deterministic GPU kernels (torch's deterministic algorithms; XLA's "
                             "--xla_gpu_deterministic_ops): the same seed gives the same metrics.jsonl, run after "
                             "run, at some cost in speed; CPU runs are deterministic anyway")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no per-epoch lines")
    parser.add_argument("--train-size", type=_positive_int, default=None,
                        help="train on the first N training samples only (quick runs); default: all 60,000")
    parser.add_argument("--test-size", type=_positive_int, default=None,
                        help="evaluate on the first N test samples only; default: all 10,000")
    restart = parser.add_mutually_exclusive_group()
    restart.add_argument("--resume", action="store_true",
                         help="continue the run in --out-dir from its last complete epoch; --epochs (to extend it) "
                              "and --lr may change, the rest must match")
    restart.add_argument("--overwrite", action="store_true",
                         help="replace the run in --out-dir (kept aside until the new run's first checkpoint)")
    parser.add_argument("--eval-only", action="store_true",
                        help="evaluate --checkpoint on the test set instead of training")
    parser.add_argument("--checkpoint", default=None,
                        help="for --eval-only: a model.safetensors (either framework) or a run's "
                             "checkpoint.safetensors")
    parser.add_argument("--init-weights", default=None, metavar="PATH",
                        help="start training from these weights (a model.safetensors from either framework) instead "
                             "of the seeded initialisation; --seed still sets the batch order")
    return parser


def parse_config(parser: argparse.ArgumentParser, framework: str, argv: list[str] | None = None) -> TrainConfig:
    """Parse and cross-check flags; every error exits 2 with a one-line message in argparse's style."""
    args = vars(parser.parse_args(argv))
    if args["eval_only"] and not args["checkpoint"]:
        parser.error("--eval-only needs --checkpoint PATH")
    if args["checkpoint"] and not args["eval_only"]:
        parser.error("--checkpoint is read by --eval-only only; to train from saved weights use --init-weights PATH")
    if args["eval_only"] and args["init_weights"]:
        parser.error("--init-weights starts a training run; --eval-only evaluates --checkpoint instead")
    if args["seeds"] is not None:
        given = [a for a in argv or [] if a == "--seed" or a.startswith("--seed=")]
        if given:
            parser.error("--seed and --seeds exclude each other: a sweep takes its seeds from --seeds")
        if args["eval_only"]:
            parser.error("--seeds trains a sweep; --eval-only evaluates one --checkpoint")
        args["seed"] = args["seeds"][0]
    if "kernel_size" not in args:  # not given: the checkpoint's own for --eval-only, else the reference's
        recorded = checkpoint_kernel_size(args["checkpoint"]) if args["eval_only"] else None
        args["kernel_size"] = recorded or TrainConfig.kernel_size
    return TrainConfig(framework=framework, **args)  # a flag without a field is a TypeError here
