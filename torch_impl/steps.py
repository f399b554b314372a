"""The training math of the PyTorch reference: loss, optimizer, one train step, evaluation.
Read it next to flax_impl/steps.py.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

EVAL_BATCH_SIZE = 128  # evaluation only; larger batches ran slower on a 2-core CPU (2.0 s at 1000, 0.9 s at 128)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample softmax cross-entropy on integer labels."""
    return F.cross_entropy(logits, labels, reduction="none")


def make_optimizer(model: torch.nn.Module, lr: float, capturable: bool = False) -> torch.optim.Adam:
    """Adam at its defaults (betas 0.9, 0.999, eps 1e-8, no weight decay), the reference's optimizer;
    capturable keeps its step count on the device, as a CUDA graph needs (torch_impl.cuda_graph)."""
    return torch.optim.Adam(model.parameters(), lr=lr, capturable=capturable)


def train_step(model, optimizer, images, labels, denominator: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One Adam step; returns the batch's summed loss and correct count as device tensors (no sync).

    The loss is the sum over this batch divided by `denominator` (default: its size, the mean). A
    data-parallel rank holding part of a global batch of n passes n / world_size: DDP averages the
    ranks' gradients, which then equal the gradient of the global batch's mean loss.
    """
    logits = model(images)
    loss_sum = cross_entropy(logits, labels).sum()
    loss = loss_sum / (labels.shape[0] if denominator is None else denominator)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    # Accuracy from the same forward pass as the loss: no second pass over the batch.
    return loss_sum.detach(), (logits.argmax(1) == labels).sum()


@torch.no_grad()
def evaluate(model, images, labels, batch_size: int = EVAL_BATCH_SIZE) -> tuple[float, int, np.ndarray]:
    """Mean loss, number correct and predictions over a split, in file order."""
    model.eval()
    loss_sum = torch.zeros((), device=images.device)
    predictions = []
    for start in range(0, images.shape[0], batch_size):
        logits = model(images[start : start + batch_size])
        loss_sum += cross_entropy(logits, labels[start : start + batch_size]).sum()
        predictions.append(logits.argmax(1))
    predictions = torch.cat(predictions)
    correct = int((predictions == labels).sum())
    return float(loss_sum) / images.shape[0], correct, predictions.cpu().numpy()
