"""pytorch/examples' MNIST `Net` and its recipe, as written in mnist/main.py (commit 77f55b9, 2025-08-25):
the model unchanged, trained on Fashion-MNIST through data/ with the script's Normalize((0.1307,), (0.3081,)),
F.nll_loss on its log_softmax output, Adadelta(lr=1.0) and StepLR(step_size=1, gamma=0.7) stepped per epoch."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torch.optim.lr_scheduler import StepLR

from parity.port import normalize

LR, GAMMA = 1.0, 0.7  # the script's --lr and --gamma defaults
inputs = normalize(0.1307, 0.3081, "NCHW")


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.conv1(x)
        x = F.relu(x)
        x = self.conv2(x)
        x = F.relu(x)
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = self.fc1(x)
        x = F.relu(x)
        x = self.dropout2(x)
        x = self.fc2(x)
        output = F.log_softmax(x, dim=1)
        return output


def model(seed: int) -> Net:
    torch.manual_seed(seed)
    return Net()


def loss(output, target):
    return F.nll_loss(output, target)


def optimizer(model):
    return optim.Adadelta(model.parameters(), lr=LR)


def scheduler(opt):
    return StepLR(opt, step_size=1, gamma=GAMMA)
