"""The proof that jax_model.py is pytorch/examples' MNIST Net, ported: every check of the kit.

`pytest examples/mnist_net` runs it (on the real Fashion-MNIST); a failing check names the first
layer or step where the two sides split. What it caught while the port was written: README.md.
"""

from __future__ import annotations

from examples.mnist_net import jax_model, torch_model
from parity import JaxSide, Port, TorchSide, same_names
from parity.seeds import Sweep
from parity.testing import proof_tests

PORT = Port(
    name="mnist_net",
    torch=TorchSide(model=torch_model.model, loss=torch_model.loss, optimizer=torch_model.optimizer,
                    scheduler=torch_model.scheduler, scheduler_interval="epoch"),
    jax=JaxSide(api="nnx", model=jax_model.model, loss=jax_model.loss, optimizer=jax_model.optimizer,
                schedule=jax_model.schedule),
    weights=same_names({"conv1": "conv", "conv2": "conv", "fc1": "linear", "fc2": "linear"}),
    torch_inputs=torch_model.inputs,
    jax_inputs=jax_model.inputs,
)

# Seeds, epochs and samples for the accuracy check: see README.md for the spread they were sized on.
SWEEP = Sweep(seeds=6, epochs=1, train_size=4000, test_size=2000)

globals().update(proof_tests(PORT, SWEEP))
