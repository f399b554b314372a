"""The reference model: the classic Fashion-MNIST convnet in PyTorch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.arch import CONV1_CHANNELS, CONV2_CHANNELS, HIDDEN, IMAGE_SIZE, NUM_CLASSES, spatial_sizes


class Convnet(nn.Module):
    """Conv(1->32,k) ReLU MaxPool2, Conv(32->64,k) ReLU MaxPool2, Flatten, Lazy Dense->128 ReLU, Dense 128->10."""

    def __init__(self, conv2d_kernel_size: int = 3):
        super().__init__()
        spatial_sizes(conv2d_kernel_size)  # a clear ValueError for a kernel that leaves no spatial extent
        self.kernel_size = conv2d_kernel_size
        self.conv1 = nn.Conv2d(1, CONV1_CHANNELS, conv2d_kernel_size)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(CONV1_CHANNELS, CONV2_CHANNELS, conv2d_kernel_size)
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.dense1 = nn.LazyLinear(HIDDEN)
        self.dense2 = nn.Linear(HIDDEN, NUM_CLASSES)
        # Materialise the lazy layer now, so parameters can be counted, loaded and optimised.
        with torch.no_grad():
            self(torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE))

    def layer_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every layer's output, by name, for an input batch x of shape (N, 1, 28, 28)."""
        out = {}
        x = out["conv1"] = F.relu(self.conv1(x))  # (N, 32, 26, 26) at k = 3
        x = out["pool1"] = self.pool1(x)  # (N, 32, 13, 13)
        x = out["conv2"] = F.relu(self.conv2(x))  # (N, 64, 11, 11)
        x = out["pool2"] = self.pool2(x)  # (N, 64, 5, 5)
        x = out["flatten"] = self.flatten(x)  # (N, 1600), channel-major
        x = out["dense1"] = F.relu(self.dense1(x))  # (N, 128)
        out["dense2"] = self.dense2(x)  # (N, 10) logits
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(F.relu(self.conv1(x)))
        x = self.pool2(F.relu(self.conv2(x)))
        x = F.relu(self.dense1(self.flatten(x)))
        return self.dense2(x)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
