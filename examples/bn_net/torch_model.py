"""A small BatchNorm convnet in PyTorch, the pattern of countless Fashion-MNIST tutorials: conv-BatchNorm2d-
ReLU-pool twice, linear-BatchNorm1d-ReLU, linear; cross-entropy, SGD with momentum 0.9. The convolutions and
fc1 keep their biases (PyTorch's default), though a BatchNorm follows each: their true gradient is zero,
which is one of the traps the proof has to judge soundly."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from parity.port import normalize

LR, MOMENTUM = 0.05, 0.9
inputs = normalize(0.2860, 0.3530, "NCHW")  # Fashion-MNIST's pixel mean and std


class BnNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(64)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.bn3 = nn.BatchNorm1d(128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):  # (N, 1, 28, 28)
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)  # (N, 32, 14, 14)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)  # (N, 64, 7, 7)
        x = torch.flatten(x, 1)  # (N, 3136)
        x = F.relu(self.bn3(self.fc1(x)))  # (N, 128)
        return self.fc2(x)  # (N, 10) logits


def model(seed: int) -> BnNet:
    torch.manual_seed(seed)
    return BnNet()


def loss(output, target):
    return F.cross_entropy(output, target)


def optimizer(model):
    return torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
