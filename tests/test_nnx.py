"""The NNX twin (--api nnx): its model, its step as a reader writes it and as the trainer runs it, and
every run feature through the command line (the parity proof is in parity_tests/)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from safetensors.numpy import load_file

from common.arch import param_counts
from common.config import TrainConfig
from flax_impl import nnx_steps
from flax_impl import training as flax_training
from flax_impl.custom_vjp import NnxCustomVjpConvnet
from flax_impl.model import Convnet as LinenConvnet
from flax_impl.nnx_model import Convnet
from tests.helpers import synthetic_dataset
from tests.test_data_parallel import assert_same_training
from tests.test_reliability import REPO, kill_after_first_epoch, one_line_error

NNX = ["--api", "nnx"]
TINY = ["--train-size", "640", "--test-size", "256", "--epochs", "2", "--seed", "1", "--quiet"]


def flax_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flax_impl.train", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=env)


def run_files(out: Path) -> tuple[bytes, dict]:
    return (out / "metrics.jsonl").read_bytes(), load_file(out / "model.safetensors")


@pytest.mark.parametrize("k", [3, 5])
def test_the_nnx_model_has_the_linen_twins_parameters(k):
    params = nnx.to_pure_dict(nnx.state(Convnet(k, rngs=nnx.Rngs(0)), nnx.Param))
    linen = LinenConvnet(k).init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))["params"]
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, linen)  # names and shapes, layer by layer
    assert sum(int(a.size) for a in jax.tree.leaves(params)) == param_counts(k)["total"]


def test_the_nnx_variants_draw_the_same_weights_and_compute_the_same():
    idiomatic, tuned = Convnet(rngs=nnx.Rngs(4)), NnxCustomVjpConvnet(rngs=nnx.Rngs(4))
    a, b = (nnx.to_pure_dict(nnx.state(m, nnx.Param)) for m in (idiomatic, tuned))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    images = jax.random.uniform(jax.random.key(1), (8, 28, 28, 1))
    assert float(jnp.abs(idiomatic(images) - tuned(images)).max()) <= 1e-5


def test_the_trainers_seeded_state_is_nnx_rngs_of_the_seed():
    """A reader's `Convnet(rngs=nnx.Rngs(seed))` is the model --api nnx --seed S starts from."""
    state = flax_training.create_train_state(TrainConfig("flax", api="nnx", seed=7, variant="idiomatic"),
                                             jax.devices("cpu")[0])
    mine = nnx.to_pure_dict(nnx.state(Convnet(rngs=nnx.Rngs(7)), nnx.Param))
    for x, y in zip(jax.tree.leaves(mine), jax.tree.leaves(state.params)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("variant", ["idiomatic", "custom-vjp"])
def test_the_readers_nnx_jit_step_and_the_trainers_fused_steps_train_the_same(variant):
    """The step a reader copies (nnx.jit, one call a batch) and the trainer's hot loop (the same step
    merged and split inside one jax.jit; a lax.scan of 3 for the custom-vjp variant, one step per
    dispatch for the idiomatic one, as the trainer runs them on a CPU): bit for bit, and so does the
    reader's loop through nnx.cached_partial."""
    ds = synthetic_dataset(192, 10)
    cpu = jax.devices("cpu")[0]
    images, labels = flax_training.device_arrays(ds.train_images, ds.train_labels, cpu)
    config = TrainConfig("flax", api="nnx", seed=2, variant=variant)
    k = min(3, flax_training.steps_per_dispatch(config, "cpu"))
    idx = np.arange(192, dtype=np.int32).reshape(3, 64)
    state, totals = flax_training.create_train_state(config, cpu), flax_training.zero_totals(cpu)
    for start in range(0, 3, k):
        state, totals = nnx_steps.train_steps(state, totals, images, labels, jnp.asarray(idx[start : start + k]))

    # The reader's loop, as written and with Flax's cached_partial (the graph traversal cached).
    for cached in (False, True):
        model = nnx_steps.build_nnx_model(variant, nnx.Rngs(2))
        optimizer = nnx.Optimizer(model, optax.adam(1e-3, b1=0.9, b2=0.999, eps=1e-8), wrt=nnx.Param)
        step = (nnx.cached_partial(nnx_steps.jit_train_step, model, optimizer) if cached
                else lambda batch: nnx_steps.jit_train_step(model, optimizer, batch))
        loss_sum = 0.0
        for rows in idx:
            loss_sum += float(step({"images": images[rows], "labels": labels[rows]})["loss_sum"])
        for x, y in zip(jax.tree.leaves(nnx.to_pure_dict(nnx.state(model, nnx.Param))),
                        jax.tree.leaves(state.params)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        assert int(state.step) == int(optimizer.step[...]) == 3
        assert float(totals["loss_sum"]) == pytest.approx(loss_sum, rel=1e-6)


@pytest.mark.realdata
def test_from_the_same_weights_nnx_trains_as_linen(real_data, tmp_path):
    """The same math in both APIs: from the same --init-weights, the same epochs, number for number."""
    assert flax_cli(*TINY, "--out-dir", str(tmp_path / "start")).returncode == 0
    start = str(tmp_path / "start" / "model.safetensors")
    runs = {}
    for api in ("linen", "nnx"):
        proc = flax_cli(*TINY, "--api", api, "--init-weights", start, "--out-dir", str(tmp_path / api))
        assert proc.returncode == 0, proc.stderr
        runs[api] = [json.loads(line) for line in (tmp_path / api / "metrics.jsonl").read_text().splitlines()]
    for a, b in zip(runs["linen"], runs["nnx"]):
        assert a["test_correct"] == b["test_correct"]
        for key in ("train_loss", "test_loss"):
            assert abs(a[key] - b[key]) <= 1e-6 * abs(a[key]), (key, a, b)


@pytest.mark.realdata
def test_nnx_config_records_the_api_and_the_console_names_the_model(real_data, tmp_path):
    proc = flax_cli(*NNX, *TINY[:-1], "--epochs", "1", "--out-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "config.json").read_text())["api"] == "nnx"
    assert "flax_impl.custom_vjp.NnxCustomVjpConvnet" in proc.stdout and "Flax nnx" in proc.stdout


@pytest.mark.realdata
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_nnx_killed_and_resumed_equals_uninterrupted(real_data, tmp_path, sig):
    reference = tmp_path / "reference"
    assert flax_cli(*NNX, *TINY, "--epochs", "3", "--train-size", "4000", "--out-dir", str(reference)).returncode == 0
    out = tmp_path / "killed"
    flags = [*NNX, *TINY, "--epochs", "3", "--train-size", "4000"]
    killed = kill_after_first_epoch("flax", out, sig, *flags)
    assert killed.returncode != 0, "the run finished before it could be interrupted"
    resumed = flax_cli(*flags, "--out-dir", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    (metrics_a, weights_a), (metrics_b, weights_b) = run_files(reference), run_files(out)
    assert metrics_a == metrics_b
    for name in weights_a:
        np.testing.assert_array_equal(weights_a[name], weights_b[name])


@pytest.mark.realdata
def test_nnx_sweeps_train_each_seed_as_its_single_run(real_data, tmp_path):
    single = tmp_path / "single"
    assert flax_cli(*NNX, *TINY, "--seed", "4", "--out-dir", str(single)).returncode == 0
    for mode in ("sequential", "vmap"):
        out = tmp_path / mode
        proc = flax_cli(*NNX, *[a for a in TINY if a not in ("--seed", "1")], "--seeds", "1,4", "--sweep", mode,
                        "--out-dir", str(out))
        assert proc.returncode == 0, proc.stderr
        if mode == "sequential":  # the single run's compiled step: bit for bit
            assert run_files(out / "seed-4")[0] == run_files(single)[0]
        else:  # vmapped: float32 rounding of a batched program
            assert_same_training(single, out / "seed-4")
        assert json.loads((out / "seeds.json").read_text())["complete"]


@pytest.mark.realdata
def test_nnx_data_parallel_over_host_devices_matches_one_device(real_data, tmp_path):
    flags = [*NNX, "--train-size", "98", "--test-size", "500", "--epochs", "2", "--seed", "2", "--quiet"]
    assert flax_cli(*flags, "--out-dir", str(tmp_path / "one")).returncode == 0
    env = {**__import__("os").environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=3"}
    proc = flax_cli(*flags, "--out-dir", str(tmp_path / "three"), env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "three" / "config.json").read_text())["device"].startswith("3 x cpu")
    assert_same_training(tmp_path / "one", tmp_path / "three")


@pytest.mark.realdata
def test_nnx_eval_only_and_a_diverging_run(real_data, tmp_path):
    assert flax_cli(*TINY, "--out-dir", str(tmp_path / "linen")).returncode == 0  # weights from the Linen twin
    proc = flax_cli(*NNX, "--eval-only", "--checkpoint", str(tmp_path / "linen" / "model.safetensors"),
                    "--test-size", "256")
    linen = json.loads((tmp_path / "linen" / "summary.json").read_text())
    assert f"({linen['test_correct']}/256)" in proc.stdout, proc.stdout + proc.stderr
    msg = one_line_error(flax_cli(*NNX, *TINY, "--lr", "1e30", "--out-dir", str(tmp_path / "nan")))
    assert "non-finite at epoch 1, step" in msg and "--lr" in msg


@pytest.mark.parametrize("api", ["linen", "nnx"])
def test_a_partial_weight_tree_is_refused_in_the_same_words_by_both_apis(api):
    """nnx.replace_by_pure_dict alone keeps the old values of a layer the new tree lacks: refused, named."""
    state = flax_training.create_train_state(TrainConfig("flax", api=api, variant="idiomatic"), jax.devices("cpu")[0])
    params = dict(jax.device_get(state.params))
    params.pop("dense2")
    with pytest.raises(ValueError,
                       match=r"^parameters do not match the model's: missing dense2\.bias, dense2\.kernel$"):
        flax_training.with_params(state, params)
    params["dense2"] = {"kernel": np.zeros((128, 11), np.float32), "bias": np.zeros(11, np.float32)}
    with pytest.raises(ValueError, match=r"dense2\.bias has shape \(11,\), expected \(10,\)"):
        flax_training.with_params(state, params)


def test_the_parity_adapter_refuses_gradients_for_only_some_layers():
    """A layer missing from the gradients would otherwise step with whatever seeded the tree."""
    from parity_tests.jax_impls import NnxImpl

    impl = NnxImpl("idiomatic")
    params = jax.device_get(impl.train_state().params)
    grads = {name: jax.tree.map(np.zeros_like, layer) for name, layer in params.items() if name != "conv2"}
    with pytest.raises(ValueError, match=r"^gradients do not match the model's: missing conv2\.bias, conv2\.kernel\b"):
        impl.apply_gradients(impl.from_weights(params), grads)
