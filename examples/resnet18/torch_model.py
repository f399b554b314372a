"""torchvision's ResNet-18 as published (torchvision 0.29.1, torchvision/models/resnet.py), for
1-channel 28x28 Fashion-MNIST: the stem's Conv2d(3, 64, 7, 2, 3) becomes Conv2d(1, 64, 7, 2, 3), the
only change. Its own init (kaiming_normal_ fan_out for convs), its in-place ReLU and `out += identity`
kept. The recipe: SGD, momentum 0.9, coupled weight decay 5e-4, lr 0.1, a linear warmup then a cosine
decay, stepped per batch (a LambdaLR)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from parity.port import normalize

LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 5e-4
EPOCHS, STEPS_PER_EPOCH = 30, 938  # the run the schedule describes: 30 epochs of 60,000 / 64
WARMUP_EPOCHS = 2
inputs = normalize(0.2860, 0.3530, "NCHW")


def model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = torchvision.models.resnet18(num_classes=10)
    net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")  # as resnet18 inits its stem
    return net


def loss(output, target):
    return F.cross_entropy(output, target)


def optimizer(net):
    return torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)


def lr_factor(step: int, steps_per_epoch: int = STEPS_PER_EPOCH) -> float:
    """The factor LambdaLR multiplies LR by after `step` scheduler steps: a linear warmup over
    WARMUP_EPOCHS, then a cosine to 0 at the end of EPOCHS, sized by the loader (len(loader))."""
    warmup, total = WARMUP_EPOCHS * steps_per_epoch, EPOCHS * steps_per_epoch
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


def scheduler(opt, steps_per_epoch: int = STEPS_PER_EPOCH):
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, steps_per_epoch))
