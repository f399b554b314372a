"""The proof that jax_model.py is bn_net/torch_model.py, ported, torch's BatchNorm semantics included.

`pytest examples/bn_net` runs every check of the kit on the real Fashion-MNIST. The running-statistics
check is where BatchNorm's traps show (momentum's convention, the unbiased variance); eps shows in the
forward pass; the biases before each BatchNorm have a true gradient of zero, which the gradient check
judges against the float64 reference. README.md has what each trap measured.
"""

from __future__ import annotations

from examples.bn_net import jax_model, torch_model
from parity import JaxSide, Port, TorchSide, same_names
from parity.seeds import Sweep
from parity.testing import proof_tests

PORT = Port(
    name="bn_net",
    torch=TorchSide(model=torch_model.model, loss=torch_model.loss, optimizer=torch_model.optimizer),
    jax=JaxSide(api="nnx", model=jax_model.model, loss=jax_model.loss, optimizer=jax_model.optimizer),
    weights=same_names({"conv1": "conv", "bn1": "batchnorm", "conv2": "conv", "bn2": "batchnorm",
                        "fc1": "linear", "bn3": "batchnorm", "fc2": "linear"}),
    torch_inputs=torch_model.inputs,
    jax_inputs=jax_model.inputs,
)

SWEEP = Sweep(seeds=6, epochs=1, train_size=4000, test_size=2000)

globals().update(proof_tests(PORT, SWEEP))
