"""(9) Both trainers receive identical batches, in the same order, for a given seed."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch

from common.config import TrainConfig
from data import train_batches
from flax_impl import train as flax_train
from flax_impl import training as flax_training
from tests.helpers import decode_indices, synthetic_dataset
from torch_impl import steps as torch_steps
from torch_impl import training as torch_training
from torch_impl import train as torch_train

N, BATCH, EPOCHS = 300, 64, 2  # 300 = 4 x 64 + 44: the short last batch is in play
REAL_TRAIN_STEP = torch_steps.train_step
REAL_COMPILE_ALL = flax_training.compile_all


def torch_batches(monkeypatch, tmp_path, seed):
    seen = []
    def spy(model, optimizer, images, labels, **kwargs):
        seen.append(decode_indices(images.cpu().numpy()))
        return REAL_TRAIN_STEP(model, optimizer, images, labels, **kwargs)

    monkeypatch.setattr(torch_training, "train_step", spy)  # where train_epoch finds it
    config = TrainConfig("torch", epochs=EPOCHS, batch_size=BATCH, seed=seed, out_dir=str(tmp_path), quiet=True)
    torch_train.train_and_evaluate(config, synthetic_dataset(N, 20), torch.device("cpu"))
    return seen


def flax_batches(monkeypatch, tmp_path, seed, k, api):
    """Record each dispatch's index array and decode which samples the device gathers with it."""
    seen = []
    def spy_compile_all(state, images, labels, *args):
        compiled = REAL_COMPILE_ALL(state, images, labels, *args)
        host_images = np.asarray(images)

        def wrap(fn):
            def call(state, totals, images_, labels_, idx):
                seen.extend(decode_indices(host_images[row]) for row in np.asarray(idx))
                return fn(state, totals, images_, labels_, idx)
            return call

        return {shape: (fn if shape == "eval" else wrap(fn)) for shape, fn in compiled.items()}

    monkeypatch.setattr(flax_train, "compile_all", spy_compile_all)
    config = TrainConfig("flax", epochs=EPOCHS, batch_size=BATCH, seed=seed, out_dir=str(tmp_path), quiet=True,
                         steps_per_dispatch=k, api=api)
    flax_train.train_and_evaluate(config, synthetic_dataset(N, 20), jax.devices("cpu")[0])
    return seen


@pytest.mark.parametrize("api", ["linen", "nnx"])
@pytest.mark.parametrize("k", [1, 3])
def test_identical_batches_for_a_seed(monkeypatch, tmp_path, k, api):
    seen_t = torch_batches(monkeypatch, tmp_path / "t", seed=5)
    seen_f = flax_batches(monkeypatch, tmp_path / "f", seed=5, k=k, api=api)
    expected = [b for e in range(1, EPOCHS + 1) for b in train_batches(N, BATCH, seed=5, epoch=e)]
    assert [len(b) for b in seen_t] == [64, 64, 64, 64, 44] * EPOCHS
    assert len(seen_t) == len(seen_f) == len(expected)
    for t, f, e in zip(seen_t, seen_f, expected):
        np.testing.assert_array_equal(t, e)
        np.testing.assert_array_equal(f, e)
    # A different seed gives a different order in both trainers (so the check above is not vacuous).
    other_t = torch_batches(monkeypatch, tmp_path / "t2", seed=6)
    other_f = flax_batches(monkeypatch, tmp_path / "f2", seed=6, k=k, api=api)
    for other, seen in ((other_t, seen_t), (other_f, seen_f)):
        assert not any(np.array_equal(a, b) for a, b in zip(other, seen))
