"""The dropout between the layers of torch's nn.LSTM / nn.GRU / nn.RNN (num_layers > 1, dropout=p) is
inside one op, no module to hook: pytorch/examples' word_language_model (examples/word_language_model)
could not be proven in train mode, its correct port failing the dropout check ("JAX's rnn.dropout drops
where the torch forward calls no dropout of that name") and every train-mode check after it. The kit now
runs such a module a layer at a time, torch's own single-layer module on each layer's weights with its
mask between them (parity.torch_side.recurrent_layers), and measures torch's own dropout between the
layers apart (recurrent_dropout_probe). Here: that set-up is torch's own forward, and the porting traps
of an LSTM are named where they are."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from examples.word_language_model import data, jax_model, test_proof, torch_model
from parity import Layout
from parity.checks import (Proof, check_dropout, check_forward_eval, check_forward_train, check_loss_and_gradients,
                           first_failure)
from parity.compare import Split
from parity.record import Masks, Recorder
from parity.torch_side import recurrent_dropout_probe, recurrent_layers

KINDS = [(torch.nn.LSTM, {}), (torch.nn.GRU, {}), (torch.nn.RNN, {}), (torch.nn.RNN, {"nonlinearity": "relu"})]


@pytest.mark.parametrize("kind, extra", KINDS, ids=["LSTM", "GRU", "RNN-tanh", "RNN-relu"])
@pytest.mark.parametrize("layers", [2, 3])
@pytest.mark.parametrize("batch_first, given_state", [(False, True), (True, False)])
def test_one_layer_at_a_time_is_torchs_own_forward(kind, extra, layers, batch_first, given_state):
    """With every mask keeping all, the layers run one at a time equal torch's own module in eval mode
    whose input weights past layer 0 carry the survivors' scale 1 / (1 - p) (W (s x) = (s W) x), in
    float64 to rounding; the state too."""
    p = 0.3
    torch.manual_seed(0)
    rnn = kind(5, 4, num_layers=layers, dropout=p, batch_first=batch_first, **extra).double()
    x = torch.randn(3, 6, 5, dtype=torch.float64)
    state = torch.randn(layers, 6 if not batch_first else 3, 4, dtype=torch.float64)
    hx = ((state, state.flip(0)) if kind is torch.nn.LSTM else state) if given_state else None

    class KeepAll(Masks):
        def draw(self, key, shape, drop):
            return super().draw(key, shape, 0.0)

    recorder = Recorder(KeepAll(0))
    out, h = recurrent_layers(rnn.train(), recorder, "rnn")(x, hx)
    assert [name for name, _ in recorder.order] == ["rnn.dropout"] * (layers - 1)
    assert recorder.rates == {"rnn.dropout": p}
    scaled = kind(5, 4, num_layers=layers, batch_first=batch_first, **extra).double().eval()
    with torch.no_grad():
        for name, value in rnn.named_parameters():
            factor = 1 / (1 - p) if name.startswith("weight_ih") and not name.endswith("_l0") else 1.0
            getattr(scaled, name).copy_(value * factor)
        want, want_h = scaled(x, hx)
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-13)
    for a, b in zip(h if isinstance(h, tuple) else (h,), want_h if isinstance(want_h, tuple) else (want_h,)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("kind, extra", KINDS, ids=["LSTM", "GRU", "RNN-tanh", "RNN-relu"])
def test_the_probe_reads_torchs_own_dropout_between_the_layers(kind, extra):
    """torch's own two-layer module drops its rate between the layers and scales survivors by 1 / (1 - p),
    recovered exactly from its output."""
    factors = recurrent_dropout_probe(kind(1, 1, **extra), 0.2, 100_000)
    kept = factors != 0
    assert abs((1 - kept.mean()) - 0.2) < 5 * np.sqrt(0.2 * 0.8 / factors.size)
    np.testing.assert_allclose(factors[kept], 1.25, rtol=1e-12)


@pytest.fixture(scope="module")
def text():
    try:
        return data.load(torch_model.BPTT)
    except OSError as e:
        pytest.skip(f"fortunes not installed: {e}")


def proof_with(text, model):
    return Proof(dataclasses.replace(test_proof.PORT, jax=dataclasses.replace(test_proof.PORT.jax, model=model)), text)


def test_the_correct_port_gets_torchs_masks_between_the_layers(text, monkeypatch):
    """The published model's correct port passes dropout and the train-mode forward, layer by layer,
    rnn.dropout among them; the dropout check measures torch's own nn.LSTM for it, and the model is left
    with its own forward."""
    import parity.checks

    probed = []
    real = parity.checks.recurrent_dropout_probe
    monkeypatch.setattr(parity.checks, "recurrent_dropout_probe",
                        lambda m, p, n: probed.append(type(m)) or real(m, p, n))
    proof = Proof(test_proof.PORT, text)
    assert any(line.startswith("rnn.dropout (train)") for line in check_dropout(proof))
    assert probed == [torch.nn.LSTM]
    check_forward_train(proof)
    model = proof.torch.build(0)
    proof.torch.run(model, proof.inputs(proof.batch(0)[0])[0], True, Recorder(Masks(0)))
    assert "forward" not in vars(model.rnn)  # torch's own nn.LSTM.forward again, with its own dropout


def test_no_dropout_between_the_layers_is_named_by_the_dropout_check(text):
    def model(seed):
        m = jax_model.model(seed)
        m.rnn.dropout.rate = 0.0  # nn.LSTM's `dropout` argument forgotten
        return m

    with pytest.raises(Split, match=r"first split at rnn\.dropout: JAX drops 0\.0000"):
        check_dropout(proof_with(text, model))


def tensorflow_rows(w):
    """torch's (4h, ...) gate rows i, f, g, o put where a port written from TensorFlow 1's BasicLSTMCell
    (i, j, f, o, j the candidate) reads them: f's rows as the candidate and g's as the forget gate (its own
    inverse)."""
    i, f, g, o = np.split(w, 4)
    return np.concatenate([i, g, f, o])


def test_gates_in_another_order_split_at_the_lstm(text):
    weight = Layout("tf1-linear", lambda w: tensorflow_rows(w).T, lambda k: tensorflow_rows(k.T))
    bias = Layout("tf1-bias", tensorflow_rows, tensorflow_rows)
    gates = {name: (path, weight if layout == "linear" else bias)
             for name, (path, layout) in test_proof.LSTM_WEIGHTS.items()}
    port = dataclasses.replace(test_proof.PORT, weights={**test_proof.PORT.weights, **gates})
    with pytest.raises(Split, match=r"forward in eval mode.*first split at rnn:.*agreeing before it: encoder"):
        check_forward_eval(Proof(port, text))


def lstm(carry: str = "h, c", drop: str = "between"):
    """jax_model.LSTM.__call__ with torch's state read as (h, c) or as Flax's carry (c, h), and the dropout
    between the layers or after every layer."""
    def call(self, x, hidden):
        h0, c0 = hidden
        hs, cs = [], []
        for k, layer in enumerate(self.layers):
            if drop == "between" and k > 0:
                x = self.dropout(x)
            (h, c), x = layer(x, (h0[k], c0[k]) if carry == "h, c" else (c0[k], h0[k]))
            if drop == "after every layer":
                x = self.dropout(x)
            hs.append(h)
            cs.append(c)
        return x, (jnp.stack(hs), jnp.stack(cs))

    return call


def test_dropout_after_the_last_layer_too_is_named(text, monkeypatch):
    """torch drops every layer's output but the last; a port that drops after the last as well."""
    monkeypatch.setattr(jax_model.LSTM, "__call__", lstm(drop="after every layer"))
    failed = first_failure(proof_with(text, jax_model.model))
    assert failed is not None and failed[0] == "forward_train", failed
    assert "rnn.dropout" in failed[1] and "found no torch mask" in failed[1], failed


def test_the_state_in_flaxs_carry_order_is_caught_on_the_carried_batch(text, monkeypatch):
    """torch's state is (h, c), Flax's LSTM carry (c, h): a port that reads torch's state in Flax's order
    computes the same from init_hidden's zeros, where every proof batch starts, and passes there; the
    port's edge batch (data.carried: a state as a previous chunk leaves it) names it."""
    monkeypatch.setattr(jax_model.LSTM, "__call__", lstm(carry="c, h"))
    without = dataclasses.replace(test_proof.PORT, edge_batch=None)
    check_loss_and_gradients(Proof(without, text))
    with pytest.raises(Split, match=r"on the port's edge_batch.*first split at the loss"):
        check_loss_and_gradients(proof_with(text, jax_model.model))
