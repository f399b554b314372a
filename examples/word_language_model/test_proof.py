"""The proof that jax_model.py is pytorch/examples' word_language_model (model.py's RNNModel('LSTM'),
at 77f55b91) with its main.py recipe, ported: every check of the kit on character-level fortunes
(Debian's `fortunes` package). README.md has what it found and what it costs."""

from __future__ import annotations

import functools

from examples.word_language_model import data, jax_model, torch_model
from parity import JaxSide, Port, TorchSide, same_layout, same_names
from parity.seeds import Sweep
from parity.testing import proof_tests

LSTM_WEIGHTS = {f"rnn.{kind}_{side}_l{k}": (f"params/rnn/layers/{k}/{side}/{'kernel' if kind == 'weight' else 'bias'}",
                                            "linear" if kind == "weight" else "same")
                for k in range(torch_model.NLAYERS) for side in ("ih", "hh") for kind in ("weight", "bias")}

PORT = Port(
    name="word_language_model",
    torch=TorchSide(model=torch_model.model, loss=torch_model.loss, optimizer=torch_model.optimizer,
                    before_step=torch_model.clip, scores=torch_model.scores),
    jax=JaxSide(api="nnx", model=jax_model.model, loss=jax_model.loss, optimizer=jax_model.optimizer,
                scores=jax_model.scores),
    weights={**same_names({"encoder": "embedding", "decoder": "linear"}), **LSTM_WEIGHTS},
    torch_inputs=torch_model.inputs,
    jax_inputs=jax_model.inputs,
    to_jax_layout=same_layout,
    to_torch_layout=same_layout,
    batch_size=torch_model.BATCH_SIZE,
    epochs=torch_model.EPOCHS,  # main.py's --epochs: the optimizer's constant rate is probed across all 40
    # a batch that carries a state in, as main.py's every chunk after the first: (h, c) read as (c, h) shows there
    edge_batch=functools.partial(data.carried, torch_model.NLAYERS, torch_model.NHID),
)

# the accuracy over seeds: 4 seeds a side, 400 steps of 20 sequences (8,000 windows, 1 epoch), next-character
# accuracy (chance: 1 in 128; the commonest character, a space, about 1 in 6) above 20% on both; ~13 s
SWEEP = Sweep(seeds=4, epochs=1, train_size=8000, test_size=500, min_accuracy=0.2)
DATA = functools.partial(data.load, torch_model.BPTT)  # python -m parity reads it too
globals().update(proof_tests(PORT, SWEEP, data=DATA))
