"""The proof that jax_model.py is nanoGPT's GPT (model.py, karpathy/nanoGPT at 3adf61e1) with its train.py
recipe, ported: every check of the kit on character-level fortunes (Debian's `fortunes` package), the
schedule and its use over the whole 2,000-iteration run. README.md has what it found and what it costs."""

from __future__ import annotations

import functools

from examples.nanogpt import data, jax_model, torch_model
from parity import JaxSide, Port, TorchSide, same_layout, same_names
from parity.seeds import Sweep
from parity.testing import proof_tests

CONFIG = torch_model.CONFIG
BLOCKS = {f"transformer.h.{i}.{m}": kind for i in range(CONFIG.n_layer)
          for m, kind in (("ln_1", "layernorm"), ("attn.c_attn", "linear"), ("attn.c_proj", "linear"),
                          ("ln_2", "layernorm"), ("mlp.c_fc", "linear"), ("mlp.c_proj", "linear"))}

PORT = Port(
    name="nanogpt",
    torch=TorchSide(model=torch_model.model, loss=torch_model.loss, optimizer=torch_model.optimizer,
                    scheduler=torch_model.scheduler, scheduler_interval="step", before_step=torch_model.clip),
    jax=JaxSide(api="nnx", model=jax_model.model, loss=jax_model.loss, optimizer=jax_model.optimizer,
                schedule=jax_model.schedule),
    weights={**same_names({"transformer.wte": "embedding", "transformer.wpe": "embedding", **BLOCKS,
                           "transformer.ln_f": "layernorm"}),
             "lm_head.weight": ("params/transformer/wte/embedding", "same")},  # tied to wte, as in model.py
    # torch drops the attention weights inside F.scaled_dot_product_attention; the port in attn_dropout
    layers={f"transformer.h.{i}.attn.scaled_dot_product_attention.dropout": f"transformer.h.{i}.attn.attn_dropout"
            for i in range(CONFIG.n_layer)},
    torch_inputs=torch_model.inputs,
    jax_inputs=jax_model.inputs,
    to_jax_layout=same_layout,
    to_torch_layout=same_layout,
    batch_size=8,  # sequences of 32 characters a batch in the proof (the run's: 64)
    # train.py counts iterations, not epochs: the kit's "epochs" are its evaluations, every 250 (as
    # config/train_shakespeare_char.py's eval_interval), 8 of them the 2,000-iteration run
    epochs=torch_model.MAX_ITERS // torch_model.EVAL_INTERVAL,
    steps_per_epoch=torch_model.EVAL_INTERVAL,
    edge_batch=data.padded,  # targets of -1, which model.py's loss ignores and the text never holds
)

# the accuracy over seeds: 4 seeds a side, 500 iterations of 8 sequences (the proof's batch) on 4,000
# windows; next-character accuracy (chance: 1 in 128) above 20% on both; about 20 s on 2 cores
SWEEP = Sweep(seeds=4, epochs=1, train_size=4000, test_size=1000, min_accuracy=0.2)
DATA = functools.partial(data.load, CONFIG.block_size)  # python -m parity reads it too
globals().update(proof_tests(PORT, SWEEP, data=DATA))
