"""--seeds on the PyTorch reference: the seeds one after another, each exactly its `--seed S` run.

Every seed keeps its own model and torch.optim.Adam; each epoch trains them in turn through
torch_impl.training's own train_epoch, so a seed's metrics are bit for bit its single run's (tested).
torch.func could stack the models, but it would replace torch.optim.Adam with a hand-written
update: the reference optimizer stays the reference here.
"""

from __future__ import annotations

import numpy as np
import torch

from common.config import TrainConfig
from common.phases import CLOCK
from common.runner import Run
from common.sweep import Sweep, seed_config, train_sweep
from data import FashionMNIST, num_batches
from torch_impl import training
from torch_impl.steps import evaluate, make_optimizer
from torch_impl.model import count_parameters


class SequentialEngine:
    """Each seed's model and optimizer, created as its `--seed S` run creates them."""

    mode = "sequential"

    def __init__(self, config: TrainConfig, device: torch.device):
        self.config = config
        self.graphed = training.uses_cuda_graph(config, device)  # each seed's step in its own CUDA graph
        self.models = [training.create_model(seed_config(config, s), device) for s in config.seeds]
        self.optimizers = [make_optimizer(m, config.lr, capturable=self.graphed) for m in self.models]
        self.static = [None] * len(self.models)  # captured on a seed's first epoch, after any --resume

    def load(self, dataset: FashionMNIST, device: torch.device) -> None:
        self.train_x, self.train_y = training.to_device(dataset.train_images, dataset.train_labels, device)
        self.test_x, self.test_y = training.to_device(dataset.test_images, dataset.test_labels, device)

    def restore(self, i: int, ckpt) -> None:
        training.restore(self.models[i], self.optimizers[i], ckpt)

    def train_epoch(self, epoch: int, active: list[int], bar, runs: list[Run]) -> dict[int, tuple[float, int]]:
        out = {}
        for i in active:
            if self.graphed and self.static[i] is None:
                self.static[i] = training.capture_step(self.models[i], self.optimizers[i], self.train_x, self.train_y,
                                                     self.config)
            out[i] = training.train_epoch(self.models[i], self.optimizers[i], self.train_x, self.train_y,
                                        runs[i].config, epoch, runs[i], bar, self.static[i])
        return out

    def evaluate(self) -> list[tuple[float, int, np.ndarray]]:
        return [evaluate(m, self.test_x, self.test_y) for m in self.models]

    def checkpoint(self, i: int) -> tuple[int, dict, dict, dict]:
        return training.checkpoint_arrays(self.models[i], self.optimizers[i])

    def weights(self, i: int) -> dict:
        return training.state_dict_numpy(self.models[i])


def train_seeds(config: TrainConfig, dataset: FashionMNIST, device: torch.device) -> dict:
    """--seeds: train every seed for config.epochs, one after another within each epoch."""
    with CLOCK("init"):
        engine = SequentialEngine(config, device)
    with CLOCK("write"):
        sweep = Sweep(config, "torch", training.versions(), str(device), training.environment(device))
    model = engine.models[0]
    sweep.describe(str(model), count_parameters(model), dataset, engine.mode, "torch.optim.Adam per seed")
    with CLOCK("data"):
        engine.load(dataset, device)
    return train_sweep(config, dataset, sweep, engine, num_batches(len(dataset.train_labels), config.batch_size))
