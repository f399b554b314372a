"""The torch side of a port: build, run with every layer recorded (and the kit's dropout masks), step."""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from parity.port import TorchSide
from parity.record import Recorder

ELEMENTWISE_DROPOUT = (torch.nn.Dropout,)
CHANNEL_DROPOUT = (torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d, torch.nn.AlphaDropout)


class TorchModel:
    """One TorchSide, on the CPU, in float32 or float64."""

    def __init__(self, side: TorchSide):
        self.side = side

    def build(self, seed: int, dtype=torch.float32) -> torch.nn.Module:
        model = self.side.model(seed)
        for name, module in model.named_modules():
            if isinstance(module, CHANNEL_DROPOUT):
                raise NotImplementedError(f"{name}: {type(module).__name__} drops whole channels; the kit injects "
                                          "element-wise masks only (torch.nn.Dropout)")
        return model.to(dtype)

    @staticmethod
    def state(model: torch.nn.Module) -> dict[str, np.ndarray]:
        """state_dict as NumPy copies: parameters and buffers (running statistics)."""
        return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}

    @staticmethod
    def load(model: torch.nn.Module, values: dict[str, np.ndarray]) -> None:
        """Set these tensors (a subset of the state_dict is fine: e.g. no num_batches_tracked)."""
        own = model.state_dict()
        with torch.no_grad():
            for name, value in values.items():
                own[name].copy_(torch.from_numpy(np.array(value)).to(own[name].dtype))

    @contextlib.contextmanager
    def hooked(self, model: torch.nn.Module, recorder: Recorder | None):
        """Within: every named submodule's output recorded, and dropout given the recorder's masks."""
        if recorder is None:
            yield
            return

        def hook(name):
            def record(module, inputs, output):
                if isinstance(module, ELEMENTWISE_DROPOUT) and module.training and module.p > 0 and recorder.masks:
                    x = inputs[0]
                    mask = recorder.masks.draw((name, recorder.next_call(name)), tuple(x.shape), module.p)
                    # torch's own convention: survivors scaled by 1 / (1 - p) (torch.nn.Dropout's docs).
                    output = x * torch.from_numpy(mask).to(x.dtype) * (1.0 / (1.0 - module.p))
                if isinstance(output, torch.Tensor):
                    # A copy: .numpy() shares the tensor's memory, and published models overwrite
                    # outputs in place (torchvision's ReLU(inplace=True), `out += identity`), which
                    # turned a recorded bn1 into its ReLU (issue #32: "first split at bn1: torch 0.0").
                    recorder.record(name, output.detach().cpu().numpy().copy())
                return output
            return record

        handles = [m.register_forward_hook(hook(name)) for name, m in model.named_modules() if name]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def run(self, model: torch.nn.Module, x: np.ndarray, train: bool, recorder: Recorder | None = None):
        model.train(train)
        with torch.no_grad(), self.hooked(model, recorder):
            return model(torch.from_numpy(x).to(next(model.parameters()).dtype)).numpy()

    def loss_and_grads(self, model, x: np.ndarray, y: np.ndarray, recorder: Recorder | None = None):
        """(loss, {parameter name: gradient}) in train mode."""
        model.train()
        model.zero_grad(set_to_none=True)
        with self.hooked(model, recorder):
            out = model(torch.from_numpy(x).to(next(model.parameters()).dtype))
        loss = self.side.loss(out, torch.from_numpy(y).long())
        loss.backward()
        grads = {n: (p.grad.numpy().copy() if p.grad is not None else np.zeros(tuple(p.shape), x.dtype))
                 for n, p in model.named_parameters()}
        return float(loss.detach()), grads

    def step(self, model, optimizer, x: np.ndarray, y: np.ndarray, recorder: Recorder | None = None) -> float:
        """One training step, as a training script does it: zero_grad, forward, loss, backward, the
        script's before_step (gradient clipping), step."""
        optimizer.zero_grad(set_to_none=True)
        loss, _ = self.loss_and_grads(model, x, y, recorder)
        self.side.optimizer_step(model, optimizer)
        return loss
