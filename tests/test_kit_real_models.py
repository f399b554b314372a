"""The kit on models written the way published ones are (issue #32): torchvision's BasicBlock style
(ReLU(inplace=True), `out += identity`, blocks in nn.Sequential, convs without bias, nested names),
ported to NNX with its containers (nnx.List, nnx.Sequential). A correct port must pass; the
findings of the issue's trial and review each have a test here that failed before the fix."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import nnx
from torch import nn

from examples.bn_net.jax_model import BatchNorm, torch_init
from parity import JaxSide, Port, TorchSide, same_names
from parity.checks import Proof, check_forward_eval, check_forward_train, first_failure
from parity.port import normalize

WIDTH = 8


class TorchBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock's forward, as published (stride 1, no downsample)."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        out += identity
        out = self.relu(out)
        return out


class TorchTinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, WIDTH, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(WIDTH)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(TorchBlock(WIDTH), TorchBlock(WIDTH))
        self.layer2 = nn.Sequential(TorchBlock(WIDTH))
        self.fc = nn.Linear(WIDTH, 10)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def conv(cin, cout, rngs, stride=1):  # torch's default init for a bias-free conv
    return nnx.Conv(cin, cout, (3, 3), strides=stride, padding=1, use_bias=False, rngs=rngs,
                    kernel_init=torch_init(cin * 9)["kernel_init"])


class JaxBlock(nnx.Module):
    def __init__(self, c: int, rngs: nnx.Rngs):
        self.conv1, self.bn1 = conv(c, c, rngs), BatchNorm(c)
        self.conv2, self.bn2 = conv(c, c, rngs), BatchNorm(c)

    def __call__(self, x):
        out = nnx.relu(self.bn1(self.conv1(x)))
        return nnx.relu(self.bn2(self.conv2(out)) + x)


class JaxTinyResNet(nnx.Module):
    """layer1 as an nnx.List of blocks, layer2 as nnx.Sequential: both containers a port uses."""

    def __init__(self, rngs: nnx.Rngs):
        self.conv1, self.bn1 = conv(1, WIDTH, rngs, stride=2), BatchNorm(WIDTH)
        self.layer1 = nnx.List([JaxBlock(WIDTH, rngs), JaxBlock(WIDTH, rngs)])
        self.layer2 = nnx.Sequential(JaxBlock(WIDTH, rngs))
        self.fc = nnx.Linear(WIDTH, 10, rngs=rngs, **torch_init(WIDTH))

    def __call__(self, x):
        x = nnx.relu(self.bn1(self.conv1(x)))
        for block in self.layer1:
            x = block(x)
        x = self.layer2(x)
        return self.fc(x.mean((1, 2)))


def torch_model(seed):
    torch.manual_seed(seed)
    return TorchTinyResNet()


def blocks(prefix):
    return {f"{prefix}.conv1": "conv-no-bias", f"{prefix}.bn1": "batchnorm",
            f"{prefix}.conv2": "conv-no-bias", f"{prefix}.bn2": "batchnorm"}


PORT = Port(
    name="tiny_resnet",
    torch=TorchSide(model=torch_model, loss=nn.functional.cross_entropy,
                    optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)),
    jax=JaxSide(api="nnx", model=lambda seed: JaxTinyResNet(nnx.Rngs(seed)),
                loss=lambda out, y: optax.softmax_cross_entropy_with_integer_labels(out, y).mean(),
                optimizer=lambda spe: optax.sgd(0.05, momentum=0.9)),
    weights={**same_names({"conv1": "conv-no-bias", "bn1": "batchnorm", "fc": "linear", **blocks("layer1.0"),
                           **blocks("layer1.1")}),
             # nnx.Sequential keeps its modules in .layers: layer2.0 is layer2/layers/0 on the JAX side
             **{name: (path.replace("layer2/0/", "layer2/layers/0/"), kind) for name, (path, kind) in
                same_names(blocks("layer2.0")).items()}},
    layers={"layer2.0": "layer2.layers.0", **{f"layer2.0.{m}": f"layer2.layers.0.{m}"
                                              for m in ("conv1", "bn1", "conv2", "bn2")}},
    torch_inputs=normalize(0.2860, 0.3530, "NCHW"),
    jax_inputs=normalize(0.2860, 0.3530, "NHWC"),
)


def test_same_names_takes_nested_names_and_convs_without_a_bias():
    """Finding 5: torchvision's names (layer1.0.conv1) and bias=False convs."""
    weights = same_names({"layer1.0.conv1": "conv-no-bias", "layer1.0.bn1": "batchnorm", "fc": "linear"})
    assert weights["layer1.0.conv1.weight"] == ("params/layer1/0/conv1/kernel", "conv")
    assert "layer1.0.conv1.bias" not in weights
    assert weights["layer1.0.bn1.running_var"] == ("batch_stats/layer1/0/bn1/var", "same")
    assert weights["fc.bias"] == ("params/fc/bias", "same")


@pytest.mark.realdata
@pytest.mark.parametrize("check", [check_forward_eval, check_forward_train])
def test_a_correct_port_with_inplace_ops_and_nnx_containers_passes_the_forward_checks(real_data, check):
    """Findings 1 and 2: the kit swapped nnx.List and Sequential's inner list for its taps ("'_Tap'
    object is not iterable"), and recorded torch's outputs as views, which ReLU(inplace=True) and
    `out += identity` then overwrote ("first split at bn1")."""
    lines = check(Proof(PORT, real_data))
    assert any(line.startswith("layer1.0.bn1") for line in lines), lines
    assert any(line.startswith("layer2.0.conv2") for line in lines), lines


@pytest.mark.realdata
def test_a_correct_port_with_inplace_ops_and_nnx_containers_passes_every_check_to_the_trajectory(real_data):
    names = ["weight_map", "parameter_counts", "init", "forward_eval", "forward_train", "float32_forward",
             "loss_and_gradients", "running_statistics", "optimizer", "trajectory_float64"]
    assert first_failure(Proof(PORT, real_data), names) is None


@pytest.mark.realdata
def test_a_wrong_block_is_caught_inside_the_container(real_data):
    """And a real difference inside a block still shows there: the residual added before bn2."""
    class Wrong(JaxBlock):
        def __call__(self, x):
            out = nnx.relu(self.bn1(self.conv1(x)))
            return nnx.relu(self.bn2(self.conv2(out) + x))

    def model(seed):
        m = JaxTinyResNet(nnx.Rngs(seed))
        rngs = nnx.Rngs(seed + 1)
        wrong = Wrong(WIDTH, rngs)
        m.layer1[1] = wrong
        return m

    port = dataclasses.replace(PORT, jax=dataclasses.replace(PORT.jax, model=model))
    failure = first_failure(Proof(port, real_data), ["forward_eval"])
    assert failure is not None and "first split at layer1.1.bn2" in failure[1], failure
