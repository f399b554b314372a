"""The proof that jax_model.py is torchvision's ResNet-18 (torch_model.py), ported: every check of the
kit on the real Fashion-MNIST, the schedule and its use over the whole 30-epoch run. README.md has
what it found and what it costs."""

from __future__ import annotations

from examples.resnet18 import jax_model, torch_model
from parity import JaxSide, Port, TorchSide, same_names
from parity.testing import proof_tests

BLOCKS = {f"layer{i}.{b}.{m}": kind for i in range(1, 5) for b in range(2)
          for m, kind in (("conv1", "conv-no-bias"), ("bn1", "batchnorm"), ("conv2", "conv-no-bias"), ("bn2", "batchnorm"))}
DOWNSAMPLE = {f"layer{i}.0.downsample.{j}": kind for i in range(2, 5)
              for j, kind in ((0, "conv-no-bias"), (1, "batchnorm"))}

PORT = Port(
    name="resnet18",
    torch=TorchSide(model=torch_model.model, loss=torch_model.loss, optimizer=torch_model.optimizer,
                    scheduler=torch_model.scheduler, scheduler_interval="step"),
    jax=JaxSide(api="nnx", model=jax_model.model, loss=jax_model.loss, optimizer=jax_model.optimizer,
                schedule=jax_model.schedule),
    weights=same_names({"conv1": "conv-no-bias", "bn1": "batchnorm", **BLOCKS, **DOWNSAMPLE, "fc": "linear"}),
    torch_inputs=torch_model.inputs,
    jax_inputs=jax_model.inputs,
    batch_size=8,  # the proof's batches (the run trains at 64): ResNet-18 in float64 on 2 cores, in CI
    epochs=torch_model.EPOCHS,
    steps_per_epoch=torch_model.STEPS_PER_EPOCH,
)

# The accuracy over seeds at a size a 2-core CI can afford is not run here (README: its command).
globals().update(proof_tests(PORT, sweep=None))
