"""flax_impl: shapes and counts, one step, a tiny run, weight conversion, eval-only."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.arch import layer_shapes, param_counts, state_dict_shapes
from common.checkpoint import save_weights
from common.config import TrainConfig
from flax_impl import steps as flax_steps
from flax_impl import train as flax_train
from flax_impl import training as flax_training
from flax_impl.convert import flax_to_torch, torch_to_flax
from flax_impl.model import Convnet, count_parameters
from flax_impl.variants import layer_outputs
from tests.helpers import read_run_files, synthetic_dataset, tiny_run

CPU = jax.devices("cpu")[0]


def nchw(shape):
    """NHWC activations compared with torch's NCHW closed form."""
    return (shape[0], shape[3], shape[1], shape[2]) if len(shape) == 4 else tuple(shape)


@pytest.mark.parametrize("k", [1, 3, 5, 7, 9])
def test_layer_shapes_and_parameter_count(k):
    model = Convnet(k)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    outs = layer_outputs(model, variables, jnp.zeros((2, 28, 28, 1)))
    assert {name: nchw(a.shape) for name, a in outs.items()} == layer_shapes(k, batch=2)
    assert count_parameters(variables["params"]) == param_counts(k)["total"]


def test_kernel_without_spatial_extent_is_a_clear_error():
    with pytest.raises(ValueError, match="spatial extent"):
        Convnet(11).init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))


def test_one_step_changes_every_parameter_and_lowers_loss():
    config = TrainConfig("flax", lr=1e-3)
    state = flax_training.create_train_state(config, CPU)
    ds = synthetic_dataset(64, 1)
    x, y = flax_training.device_arrays(ds.train_images, ds.train_labels, CPU)
    batch = {"images": x, "labels": y}

    def loss(params):
        return flax_steps.cross_entropy(state.apply_fn({"params": params}, x), y).mean()

    loss0 = float(loss(state.params))
    new_state, metrics = jax.jit(flax_steps.train_step)(state, batch)
    assert float(metrics["loss_sum"]) == pytest.approx(64 * loss0, rel=1e-5)
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.params, new_state.params)
    assert all(jax.tree.leaves(changed)), changed
    assert float(loss(new_state.params)) < loss0


def test_conversion_round_trip_is_bitwise():
    rng = np.random.default_rng(0)
    sd = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in state_dict_shapes(5).items()}
    params = torch_to_flax(sd)
    assert params["params"]["conv2"]["kernel"].shape == (5, 5, 32, 64)
    assert params["params"]["dense1"]["kernel"].shape == (1024, 128)
    back = flax_to_torch(params)
    assert set(back) == set(sd)
    for name in sd:
        assert back[name].dtype == sd[name].dtype and back[name].tobytes() == sd[name].tobytes(), name


def test_forward_mode_autodiff_through_the_idiomatic_model_matches_finite_differences():
    """jax.jvp works through the idiomatic model (custom VJPs would refuse it): the directional
    derivative of the logits along a random weight direction, against a central difference in float64."""
    model = Convnet(3)
    # Continuous random pixels: no exact ties in a pool window, where the model has no derivative.
    x = np.random.default_rng(0).random((8, 28, 28, 1))
    with jax.enable_x64(True):
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64),
                                        model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))["params"])
        keys = iter(jax.random.split(jax.random.key(1), 8))
        direction = jax.tree.map(lambda a: jax.random.normal(next(keys), a.shape, a.dtype), params)
        x = jnp.asarray(x, jnp.float64)

        def logits(p):
            return model.apply({"params": p}, x)

        _, tangent = jax.jvp(logits, (params,), (direction,))
        h = 1e-6
        shifted = [jax.tree.map(lambda p, d: p + s * h * d, params, direction) for s in (1, -1)]
        central = (logits(shifted[0]) - logits(shifted[1])) / (2 * h)
        assert float(jnp.abs(tangent).max()) > 1e-3  # a real derivative, not zeros
        np.testing.assert_allclose(np.asarray(tangent), np.asarray(central), rtol=1e-5, atol=1e-7)
        # Hessian-vector products (forward over reverse) work too.
        grad = jax.grad(lambda p: logits(p).sum())
        _, hvp = jax.jvp(grad, (params,), (direction,))
        assert all(np.all(np.isfinite(np.asarray(a))) for a in jax.tree.leaves(hvp))


def test_the_custom_vjp_variant_is_reverse_mode_only():
    """Documented in --help and flax_impl/custom_vjp.py: forward-mode AD needs the idiomatic model."""
    from flax_impl.custom_vjp import CustomVjpConvnet

    model = CustomVjpConvnet(3)
    params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))["params"]
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(lambda p: model.apply({"params": p}, jnp.zeros((1, 28, 28, 1))), (params,), (params,))


@pytest.mark.parametrize("as_matmuls", [True, False], ids=["as-matmuls", "grouped"])
def test_a_vmapped_seed_sweeps_convolutions_and_their_gradients_are_each_seeds_own(as_matmuls):
    """--sweep vmap's convolutions (flax_impl/custom_vjp.py), in either form a backend may use: batched
    matmuls (the CPU's) or JAX's grouped convolution. Each seed's output and gradients, its data and its
    kernel vmapped together or one of them shared, are those of the seed alone (float64, to rounding);
    and the form is what the compiled step runs."""
    from flax_impl import custom_vjp

    with custom_vjp.seeds_formulation("cpu", as_matmuls):
        jax.clear_caches()  # the form is chosen when a function is traced
        rng = np.random.default_rng(0)
        with jax.enable_x64(True):
            xs, kernels = jnp.asarray(rng.normal(size=(3, 4, 9, 9, 5))), jnp.asarray(rng.normal(size=(3, 3, 3, 5, 6)))
            biases, cotangents = jnp.asarray(rng.normal(size=(3, 6))), jnp.asarray(rng.normal(size=(3, 4, 7, 7, 6)))

            def seed(x, kernel, bias, cotangent):  # output, and the gradients of <output, cotangent>
                out, vjp = jax.vjp(custom_vjp.conv2d, x, kernel, bias)
                return out, *vjp(cotangent)

            for count, in_axes in [(3, (0, 0, 0, 0)), (3, (0, None, None, 0)), (3, (None, 0, 0, 0)), (1, (0, 0, 0, 0))]:
                args = [a[:count] if axis == 0 else a[0] for a, axis in zip((xs, kernels, biases, cotangents), in_axes)]
                swept = jax.jit(jax.vmap(seed, in_axes=in_axes))
                alone = [seed(*[a[i] if axis == 0 else a for a, axis in zip(args, in_axes)]) for i in range(count)]
                for name, got, want in zip(["output", "dx", "dkernel", "dbias"], swept(*args), zip(*alone)):
                    want = np.stack(want)
                    assert np.abs(np.asarray(got) - want).max() <= 1e-13 * np.abs(want).max(), (name, count, in_axes)
            compiled = jax.jit(jax.vmap(seed)).lower(xs, kernels, biases, cotangents).compile().as_text()
    assert ("feature_group_count=3" in compiled) is not as_matmuls


def test_a_seed_formulation_is_set_by_the_names_a_platform_lowers_as_and_restored():
    """benchmarks.seeds traces both forms through custom_vjp.seeds_formulation: jax's "gpu" is cuda or rocm
    to lax.platform_dependent, and the measured defaults come back after."""
    from flax_impl import custom_vjp

    before = dict(custom_vjp.SEEDS_AS_MATMULS)
    assert custom_vjp.seeds_as_matmuls("cpu") and not custom_vjp.seeds_as_matmuls("gpu")
    with custom_vjp.seeds_formulation("gpu", True):
        assert custom_vjp.seeds_as_matmuls("gpu") and custom_vjp.SEEDS_AS_MATMULS["cuda"] is True
        assert custom_vjp.SEEDS_AS_MATMULS["rocm"] is True
    with pytest.raises(KeyError), custom_vjp.seeds_formulation("cpu", False):
        assert not custom_vjp.seeds_as_matmuls("cpu")
        raise KeyError("a failed trace")
    assert custom_vjp.SEEDS_AS_MATMULS == before


def test_flax_init_params_convert_to_torch_shapes():
    variables = Convnet(3).init(jax.random.key(1), jnp.zeros((1, 28, 28, 1)))
    sd = flax_to_torch(jax.device_get(variables))
    assert {k: v.shape for k, v in sd.items()} == state_dict_shapes(3)


def test_epoch_dispatches_cover_every_sample_once_in_order():
    order = np.random.default_rng(0).permutation(1000)
    for k in (1, 4, 7):
        chunks = list(flax_training.epoch_dispatches(order, 64, k))
        np.testing.assert_array_equal(np.concatenate([c.reshape(-1) for c in chunks]), order)
        shapes = {c.shape for c in chunks}
        assert shapes == set(flax_training.epoch_plan(1000, 64, k))
        assert chunks[-1].shape == (1, 1000 % 64)


def test_train_and_evaluate_on_synthetic_data_learns(tmp_path):
    config = TrainConfig("flax", epochs=3, out_dir=str(tmp_path), quiet=True, seed=1)
    summary = flax_train.train_and_evaluate(config, synthetic_dataset(512, 256), CPU)
    assert summary["test_accuracy"] > 0.5  # 10 classes: chance is 0.1
    assert summary["compile_seconds"] > 0


def test_scan_chunks_give_the_same_training_as_single_steps(tmp_path):
    """The accelerator path (K steps per dispatch) is the same math as the CPU path."""
    ds = synthetic_dataset(300, 50)
    runs = {}
    for k in (1, 4):
        config = TrainConfig("flax", epochs=2, out_dir=str(tmp_path / str(k)), quiet=True,
                             steps_per_dispatch=k)
        flax_train.train_and_evaluate(config, ds, CPU)
        runs[k] = read_run_files(tmp_path / str(k))
    for a, b in zip(runs[1]["metrics"], runs[4]["metrics"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["test_correct"] == b["test_correct"]


def run_main(tmp_path, *flags):
    return tiny_run(flax_train.main, tmp_path, *flags)


@pytest.mark.realdata
def test_tiny_end_to_end_run_writes_every_file(real_data, tmp_path, capsys):
    out = run_main(tmp_path)
    files = read_run_files(out)
    assert len(files["metrics"]) == 1
    assert {k: v.shape for k, v in files["weights"].items()} == state_dict_shapes(3)
    assert files["config"]["framework"] == "flax" and files["config"]["versions"]["jax"] == jax.__version__
    assert files["timings"]["compile_seconds"] > 0
    assert "final test accuracy" in capsys.readouterr().out


@pytest.mark.realdata
def test_same_seed_gives_identical_metrics(real_data, tmp_path):
    a = run_main(tmp_path / "a", "--epochs", "2", "--seed", "7")
    b = run_main(tmp_path / "b", "--epochs", "2", "--seed", "7")
    assert (a / "metrics.jsonl").read_bytes() == (b / "metrics.jsonl").read_bytes()


@pytest.mark.realdata
def test_eval_only_reproduces_the_trained_accuracy(real_data, tmp_path, capsys):
    out = run_main(tmp_path)
    summary = read_run_files(out)["summary"]
    capsys.readouterr()
    flax_train.main(["--eval-only", "--checkpoint", str(out / "model.safetensors"), "--test-size", "128"])
    line = capsys.readouterr().out
    assert f"({summary['test_correct']}/128)" in line


@pytest.mark.realdata
def test_eval_only_refuses_a_foreign_checkpoint(real_data, tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    save_weights(bad, {"conv1.weight": np.zeros((32, 1, 3, 3), np.float32)}, {})
    with pytest.raises(SystemExit) as e:
        flax_train.main(["--eval-only", "--checkpoint", str(bad), "--test-size", "10"])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing tensors" in err[0] and "conv2.weight" in err[0]


@pytest.mark.parametrize("variant,k", [("custom-vjp", flax_training.STEPS_PER_DISPATCH["cpu"]), ("idiomatic", 1)])
def test_default_steps_per_dispatch_on_the_cpu_follow_the_variant(variant, k):
    """A scan for the custom-vjp model; one step per dispatch for the idiomatic one, which XLA:CPU
    runs ~10x slower inside a scan. An explicit --steps-per-dispatch always wins."""
    assert flax_training.steps_per_dispatch(TrainConfig("flax", variant=variant), "cpu") == k
    explicit = TrainConfig("flax", variant=variant, steps_per_dispatch=4)
    assert flax_training.steps_per_dispatch(explicit, "cpu") == 4


@pytest.mark.parametrize("platform, expected", [("cpu", "custom-vjp"), ("gpu", "custom-vjp"), ("tpu", "idiomatic")])
def test_each_backend_defaults_to_its_measured_variant(platform, expected):
    """Issue #31: on an H200 the custom-VJP step ran 1.53x the idiomatic one (Linen; NNX 1.51x), yet
    GPU runs took the idiomatic model; TPU is unmeasured and keeps the model a reader learns from."""
    from flax_impl.variants import resolve_variant

    assert resolve_variant("auto", platform) == expected
    assert resolve_variant("idiomatic", platform) == "idiomatic"  # the reader's model: one flag away
    assert resolve_variant("cpu-tuned", platform) == "custom-vjp"  # the earlier name still works
    with pytest.raises(ValueError, match="unknown model variant 'fast'; use one of auto, idiomatic, custom-vjp"):
        resolve_variant("fast", platform)
