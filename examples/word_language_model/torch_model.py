"""pytorch/examples' word_language_model as published: model.py is its model.py at commit
77f55b912142e11fcfdf5b530231fb9c52f181e8, byte for byte (BSD 3-Clause, LICENSE-pytorch-examples). This
file is the rest of its main.py, at a small size: the seeded build of RNNModel('LSTM', ...), the
criterion (nn.NLLLoss on the model's log_softmax), gradient clipping at --clip 0.25 and the update
`p.data.add_(p.grad, alpha=-lr)` at --lr 20.

main.py updates by hand, not through torch.optim: torch.optim.SGD(lr) without momentum or decay does
exactly `param.add_(grad, alpha=-lr)` (its documented algorithm), which lets the kit step and inspect it.
main.py's other schedule, lr /= 4 when the validation loss did not improve, depends on the data's
validation losses and is not part of this proof (the kit's runs are a few steps long).

The size is main.py's defaults made smaller so that the proof's float64 passes fit a 2-core CI: a
2-layer LSTM with dropout 0.2 (main.py's --nlayers and --dropout), 32 wide (--emsize, --nhid: 200),
sequences of --bptt 35, batches of --batch_size 20, untied; the vocabulary is 128 ASCII characters
(main.py's corpus is WikiText-2's words, which do not install offline)."""

from __future__ import annotations

import torch
import torch.nn as nn

from examples.nanogpt.data import VOCAB_SIZE
from examples.word_language_model.model import RNNModel

EMSIZE, NHID, NLAYERS, DROPOUT, TIED = 32, 32, 2, 0.2, False
LR, CLIP, BPTT, BATCH_SIZE, EPOCHS = 20.0, 0.25, 35, 20, 40

criterion = nn.NLLLoss()


def model(seed: int) -> RNNModel:
    torch.manual_seed(seed)
    return RNNModel("LSTM", VOCAB_SIZE, EMSIZE, NHID, NLAYERS, DROPOUT, TIED)


def inputs(raw):
    """model(data, hidden) as main.py's train() calls it: data (bptt, batch) int64, time first (get_batch's
    rows), and hidden (h, c), each (nlayers, batch, nhid): init_hidden's zeros on a batch's first chunk,
    or the state a previous chunk left where the batch carries one (raw = (windows, (h, c)): data.carried)."""
    windows, state = raw if isinstance(raw, tuple) else (raw, None)
    if state is None:
        zeros = torch.zeros(NLAYERS, windows.shape[0], NHID).numpy()
        state = (zeros, zeros.copy())
    return windows.T.astype("int64"), state


def targets(labels):
    """get_batch's target: the next tokens, time first, flattened (`.view(-1)`), as the output's rows."""
    return labels.t().reshape(-1)


def loss(output, labels):
    log_probs, _ = output
    return criterion(log_probs, targets(labels))


def scores(output):
    """The log-probabilities in the labels' layout, (batch, bptt, ntoken): the model's rows are time
    first, (bptt * batch, ntoken), and its hidden state says the batch."""
    log_probs, (h, _) = output
    return log_probs.reshape(-1, h.shape[1], log_probs.shape[-1]).swapaxes(0, 1)


def optimizer(net: RNNModel):
    return torch.optim.SGD(net.parameters(), lr=LR)


def clip(net: RNNModel) -> None:
    """main.py, between backward() and the update."""
    torch.nn.utils.clip_grad_norm_(net.parameters(), CLIP)
