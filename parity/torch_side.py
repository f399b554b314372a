"""The torch side of a port: build, run with every layer recorded (and the kit's dropout masks), step."""

from __future__ import annotations

import contextlib
import inspect
import math

import numpy as np
import torch
import torch.nn.functional as F

from parity.port import TorchSide
from parity.record import Recorder

ELEMENTWISE_DROPOUT = (torch.nn.Dropout,)
CHANNEL_DROPOUT = (torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d, torch.nn.AlphaDropout)


def as_args(x, dtype) -> tuple:
    """The model's positional arguments: each array a tensor, floating point ones in the model's dtype
    (token ids stay integers); a tuple inside stays a tuple of tensors (an LSTM's hidden state (h, c))."""
    return tuple(_as_tensors(a, dtype) for a in (x if isinstance(x, tuple) else (x,)))


def _as_tensors(a, dtype):
    if isinstance(a, tuple):
        return tuple(_as_tensors(b, dtype) for b in a)
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t.to(dtype) if t.is_floating_point() else t


def to_numpy(out):
    """A model's output as NumPy copies, nested as it is (tuples, lists, dicts; None kept)."""
    if isinstance(out, torch.Tensor):
        return out.detach().cpu().numpy().copy()
    if isinstance(out, (tuple, list)):
        return type(out)(to_numpy(o) for o in out)
    if isinstance(out, dict):
        return {k: to_numpy(v) for k, v in out.items()}
    return out


# The dropout inside F.scaled_dot_product_attention(dropout_p=p) is no module the kit can hook: in train
# mode (p > 0, masks given) the kit computes that call by the formula torch documents for it (softmax of
# q k^T * scale plus the causal or given mask, dropout on those weights, times v) with its own mask on
# the weights, recorded under "<calling module>.scaled_dot_product_attention.dropout" (nanoGPT's flash
# path: "transformer.h.0.attn.scaled_dot_product_attention.dropout"; Port.layers names the JAX dropout
# that drops the same weights). What the injection hides is proven apart: check_dropout measures the
# rate torch's own SDPA drops at and the JAX layer's, and a JAX dropout on a tensor of another shape
# (the attention's output instead of its weights) is a split at that layer.
SDPA_DROPOUT = "scaled_dot_product_attention.dropout"
CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_: max_norm / (total_norm + 1e-6)


_SDPA = F.scaled_dot_product_attention  # torch's own


class _AttentionDropout(torch.overrides.TorchFunctionMode):
    """While recording with masks: every call of F.scaled_dot_product_attention goes to `attention`, by
    either road. The mode sees a call through a reference to torch's function (`from torch.nn.functional
    import scaled_dot_product_attention`). But a mode is off while it handles a torch function, and
    nn.MultiheadAttention's F.multi_head_attention_forward is one: the SDPA call inside it, by the
    module's global name, reached torch's own with its own random mask (the train-mode forward of a
    correct nn.MultiheadAttention(dropout=0.1) port split at its first layer after the attention). So the
    name F.scaled_dot_product_attention is this mode's `attention` while it is entered, too."""

    def __init__(self, recorder: Recorder, calling: list[str]):
        super().__init__()
        self.recorder, self.calling = recorder, calling
        self.before: list = []

    def attention(self, *args, **kwargs):
        bound = inspect.signature(_sdpa_reference).bind(*args, **kwargs)
        name = ".".join([*self.calling[-1:], SDPA_DROPOUT])
        self.recorder.rates[name] = float(bound.arguments.get("dropout_p", 0.0))  # the model's choice, per mode
        if not self.recorder.rates[name]:
            return _SDPA(*args, **kwargs)
        return _sdpa_reference(*bound.args, **bound.kwargs, recorder=self.recorder, name=name)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is _SDPA:
            return self.attention(*args, **kwargs)
        return func(*args, **kwargs)

    def __enter__(self):
        self.before.append(F.scaled_dot_product_attention)
        F.scaled_dot_product_attention = self.attention
        return super().__enter__()

    def __exit__(self, *exc):
        F.scaled_dot_product_attention = self.before.pop()
        return super().__exit__(*exc)


def _sdpa_reference(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                    enable_gqa=False, *, recorder: Recorder | None = None, name: str = SDPA_DROPOUT):
    """F.scaled_dot_product_attention as its documentation writes it, dropout by the recorder's mask."""
    L, S = query.size(-2), key.size(-2)
    scale = 1 / math.sqrt(query.size(-1)) if scale is None else scale
    bias = torch.zeros(L, S, dtype=query.dtype)
    if is_causal:
        bias = bias.masked_fill(~torch.ones(L, S, dtype=torch.bool).tril(diagonal=0), float("-inf"))
    if attn_mask is not None:
        bias = bias.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else attn_mask + bias
    if enable_gqa:
        key = key.repeat_interleave(query.size(-3) // key.size(-3), -3)
        value = value.repeat_interleave(query.size(-3) // value.size(-3), -3)
    weights = torch.softmax(query @ key.transpose(-2, -1) * scale + bias, dim=-1)
    mask = recorder.masks.draw((name, recorder.next_call(name)), tuple(weights.shape), dropout_p)
    weights = weights * torch.from_numpy(mask).to(weights.dtype) * (1.0 / (1.0 - dropout_p))
    recorder.record(name, weights.detach().cpu().numpy().copy())
    return weights @ value


# The dropout torch's recurrent modules (nn.LSTM, nn.GRU, nn.RNN with num_layers > 1 and dropout=p) apply
# between their layers is inside one op: no module, no Python function to hook. In train mode with the
# kit's masks, such a module runs as its documentation writes it ("a Dropout layer on the outputs of each
# layer except the last layer"): torch's own single-layer module of the same kind on each layer's weights
# (torch.func.functional_call), the kit's mask between them, recorded as "<the recurrent module>.dropout"
# ("rnn.dropout" for word_language_model's nn.LSTM), a call per layer boundary. check_dropout measures
# torch's own dropout between the layers apart (recurrent_dropout_probe).
RNN_DROPOUT = "dropout"


def _recurrent_kind(module: torch.nn.RNNBase) -> tuple[type, dict]:
    """The single-layer module of the same kind, and its keyword arguments (nn.RNN's nonlinearity)."""
    if isinstance(module, torch.nn.LSTM):
        return torch.nn.LSTM, {}
    if isinstance(module, torch.nn.GRU):
        return torch.nn.GRU, {}
    return torch.nn.RNN, {"nonlinearity": "relu" if module.mode == "RNN_RELU" else "tanh"}


def recurrent_layers(module: torch.nn.RNNBase, recorder: Recorder, name: str):
    """module's forward as one layer at a time, the recorder's masks between them (see RNN_DROPOUT)."""
    if module.bidirectional or getattr(module, "proj_size", 0):
        raise NotImplementedError(f"{name}: the kit gives masks to the dropout between the layers of a "
                                  f"unidirectional {type(module).__name__} without proj_size only")
    kind, extra = _recurrent_kind(module)
    lstm = kind is torch.nn.LSTM
    single = [kind(module.input_size if k == 0 else module.hidden_size, module.hidden_size, num_layers=1,
                   bias=module.bias, batch_first=module.batch_first, **extra) for k in range(min(module.num_layers, 2))]
    p = module.dropout
    key = f"{name}.{RNN_DROPOUT}"

    def forward(x, hx=None):
        if isinstance(x, torch.nn.utils.rnn.PackedSequence):
            raise NotImplementedError(f"{name}: a PackedSequence through the dropout between the layers")
        hs, cs = [], []
        for k in range(module.num_layers):
            if k > 0:
                recorder.rates[key] = p
                mask = recorder.masks.draw((key, recorder.next_call(key)), tuple(x.shape), p)
                x = x * torch.from_numpy(mask).to(x.dtype) * (1.0 / (1.0 - p))
                recorder.record(key, x.detach().cpu().numpy().copy())
            weights = {f"{w}_l0": getattr(module, f"{w}_l{k}") for w in ("weight_ih", "weight_hh")
                       + (("bias_ih", "bias_hh") if module.bias else ())}
            state = None if hx is None else ((hx[0][k : k + 1], hx[1][k : k + 1]) if lstm else hx[k : k + 1])
            x, out = torch.func.functional_call(single[min(k, 1)], weights, (x, state))
            hs.append(out[0][0] if lstm else out[0])
            if lstm:
                cs.append(out[1][0])
        return x, ((torch.stack(hs), torch.stack(cs)) if lstm else torch.stack(hs))

    return forward


def recurrent_dropout_probe(module: torch.nn.RNNBase, p: float, n: int) -> np.ndarray:
    """torch's own dropout between the layers of a two-layer module of module's kind in train mode, on
    n sequences of one step, float64: the factor each of layer 1's inputs was multiplied by (0, or the
    survivors' 1 / (1 - p)), recovered exactly from the output. Every weight is 0 but for a gate
    saturated at 1 (bias 40) or 0 (bias -40) and one input weight of 1, so that each layer is one
    invertible function of its input, the same in both: LSTM tanh(tanh(x)), GRU and RNN tanh(x),
    RNN(nonlinearity="relu") x; layer 0's output is that function of 1."""
    kind, extra = _recurrent_kind(module)
    rnn = kind(1, 1, num_layers=2, dropout=p, **extra).double().train()
    with torch.no_grad():
        for value in rnn.parameters():
            value.zero_()
        for k in (0, 1):
            w, b = getattr(rnn, f"weight_ih_l{k}"), getattr(rnn, f"bias_ih_l{k}")
            if kind is torch.nn.LSTM:  # gates i, f, g, o: i = o = 1, c = tanh(x), h = tanh(c)
                b[0], b[3], w[2, 0] = 40.0, 40.0, 1.0
            elif kind is torch.nn.GRU:  # gates r, z, n: z = 0, so h = n = tanh(x)
                b[1], w[2, 0] = -40.0, 1.0
            else:
                w[0, 0] = 1.0
        out = rnn(torch.ones(1, n, 1, dtype=torch.float64))[0].reshape(-1)
    if kind is torch.nn.LSTM:
        f, inverse = (lambda v: math.tanh(math.tanh(v))), (lambda h: torch.atanh(torch.atanh(h)))
    elif extra.get("nonlinearity") == "relu":
        f, inverse = (lambda v: v), (lambda h: h)
    else:
        f, inverse = math.tanh, torch.atanh
    return (inverse(out) / f(1.0)).numpy()


def first_tensor(output):
    """What a module's output records as: a tensor, or the first of a tuple that starts with one
    (nn.MultiheadAttention returns (output, weights or None): unrecorded, a split after the attention
    was first seen at the next layer); else None."""
    if isinstance(output, tuple) and output:
        output = output[0]
    return output if isinstance(output, torch.Tensor) else None


def sdpa_dropout_probe(p: float, n: int) -> np.ndarray:
    """torch's own F.scaled_dot_product_attention(dropout_p=p) on weights it makes uniform (q = k = 0,
    over L keys) times v = the identity: each of about n outputs is one dropped, rescaled weight, times L."""
    L = int(math.ceil(math.sqrt(n)))
    q = torch.zeros(1, 1, L, 1)
    out = _SDPA(q, q.clone(), torch.eye(L)[None, None], dropout_p=p)
    return (out * L).reshape(-1).numpy()


def clip_slack(before: dict, eps_free: bool = False) -> float:
    """before: {parameter: its gradient before clipping, float64}. Where every gradient now is that
    times one factor below 1 (a global-norm clip), the relative slack torch's clip_grad_norm_ leaves a
    port: 1e-6 / the norm (torch divides by norm + 1e-6, optax.clip_by_global_norm by the norm); 0
    otherwise. eps_free: rescale the gradients to the clip without the 1e-6 (factor times 1 + slack)."""
    pairs = [(p, g) for p, g in before.items() if p.grad is not None]
    norm = float(torch.sqrt(sum((g * g).sum() for _, g in pairs))) if pairs else 0.0
    if norm == 0:
        return 0.0
    factors = [float((p.grad.detach().to(torch.float64) * g).sum() / (g * g).sum()) for p, g in pairs
               if (g * g).sum() > 0]
    if not factors or factors[0] >= 1 or any(abs(f - factors[0]) > 1e-6 * factors[0] for f in factors):
        return 0.0
    if not all(torch.allclose(p.grad.to(torch.float64), g * factors[0], rtol=1e-6, atol=0) for p, g in pairs):
        return 0.0
    slack = CLIP_EPS / norm
    if eps_free:
        with torch.no_grad():
            for p, _ in pairs:
                p.grad.mul_(1 + slack)
    return slack


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
    def tied(model: torch.nn.Module) -> list[set[str]]:
        """Groups of state_dict names that are one tensor (weight tying), by storage."""
        groups: dict[tuple, set[str]] = {}
        for name, tensor in model.state_dict(keep_vars=True).items():
            if tensor.numel():  # empty tensors share no storage, whatever their pointer says
                groups.setdefault((tensor.data_ptr(), tuple(tensor.shape), tensor.stride()), set()).add(name)
        return [names for names in groups.values() if len(names) > 1]

    @staticmethod
    def load(model: torch.nn.Module, values: dict[str, np.ndarray]) -> None:
        """Set these tensors (a subset of the state_dict is fine: e.g. no num_batches_tracked)."""
        own = model.state_dict()
        with torch.no_grad():
            for name, value in values.items():
                own[name].copy_(torch.from_numpy(np.array(value)).to(own[name].dtype))

    @contextlib.contextmanager
    def hooked(self, model: torch.nn.Module, recorder: Recorder | None):
        """Within: every named submodule's output recorded, and dropout given the recorder's masks: each
        torch.nn.Dropout's, and the dropout inside F.scaled_dot_product_attention (see SDPA_DROPOUT)."""
        if recorder is None:
            yield
            return
        calling: list[str] = []  # the named modules whose forward is running, innermost last

        def enter(name):
            def push(module, inputs):
                calling.append(name)
            return push

        def hook(name):
            def record(module, inputs, output):
                calling.pop()
                if isinstance(module, ELEMENTWISE_DROPOUT) and module.training and module.p > 0 and recorder.masks:
                    x = inputs[0]
                    mask = recorder.masks.draw((name, recorder.next_call(name)), tuple(x.shape), module.p)
                    # torch's own convention: survivors scaled by 1 / (1 - p) (torch.nn.Dropout's docs).
                    output = x * torch.from_numpy(mask).to(x.dtype) * (1.0 / (1.0 - module.p))
                value = first_tensor(output)
                if value is not None:
                    # A copy: .numpy() shares the tensor's memory, and published models overwrite
                    # outputs in place (torchvision's ReLU(inplace=True), `out += identity`), which
                    # turned a recorded bn1 into its ReLU (issue #32: "first split at bn1: torch 0.0").
                    recorder.record(name, value.detach().cpu().numpy().copy())
                return output
            return record

        modules = [(name, m) for name, m in model.named_modules() if name]
        handles = [m.register_forward_pre_hook(enter(name)) for name, m in modules]
        handles += [m.register_forward_hook(hook(name)) for name, m in modules]
        recurrent = [(name, m) for name, m in modules if isinstance(m, torch.nn.RNNBase) and m.training
                     and m.dropout > 0 and m.num_layers > 1 and recorder.masks]
        for name, m in recurrent:  # an instance attribute: the module's hooks still run around it
            m.forward = recurrent_layers(m, recorder, name)
        mode = _AttentionDropout(recorder, calling) if recorder.masks else contextlib.nullcontext()
        try:
            with mode:
                yield
        finally:
            for handle in handles:
                handle.remove()
            for _, m in recurrent:
                del m.forward  # the class's own again

    def forward(self, model: torch.nn.Module, x, train: bool, recorder: Recorder | None = None):
        """The model's own output (a tensor, or a tuple of them: nanoGPT's (logits, loss)) on x, one
        array or a tuple of arrays given to the model as its arguments (model(idx, targets))."""
        model.train(train)
        with self.hooked(model, recorder):
            return model(*as_args(x, next(model.parameters()).dtype))

    def run(self, model: torch.nn.Module, x, train: bool, recorder: Recorder | None = None):
        """The output as NumPy (the same nesting: a tuple stays a tuple), without gradients."""
        with torch.no_grad():
            return to_numpy(self.forward(model, x, train, recorder))

    def loss_and_grads(self, model, x: np.ndarray, y: np.ndarray, recorder: Recorder | None = None):
        """(loss, {parameter name: gradient}) in train mode."""
        model.zero_grad(set_to_none=True)
        out = self.forward(model, x, True, recorder)
        loss = self.side.loss(out, torch.from_numpy(y).long())
        loss.backward()
        grads = {n: (p.grad.numpy().copy() if p.grad is not None else np.zeros(tuple(p.shape), p.detach().numpy().dtype))
                 for n, p in model.named_parameters()}
        return float(loss.detach()), grads

    def optimizer_step(self, model, optimizer, eps_free: bool = False) -> float:
        """The script's before_step (clipping), then optimizer.step(); returns the slack torch's
        clip_grad_norm_ leaves a port: where before_step scaled every gradient by one factor below 1 (a
        global-norm clip), torch divided by the norm plus 1e-6 (its documented formula) and a port may
        divide by the norm alone (optax.clip_by_global_norm): 1e-6 / norm relative (0 where nothing was
        clipped). eps_free: clip as such a port does (torch's factor times 1 + 1e-6 / norm), the kit's
        measure of torch's own sensitivity to that choice."""
        if self.side.before_step is None:
            optimizer.step()
            return 0.0
        params = [p for p in model.parameters() if p.grad is not None]
        before = {p: p.grad.detach().to(torch.float64).clone() for p in params}
        self.side.before_step(model)
        slack = clip_slack(before, eps_free)
        optimizer.step()
        return slack

    def step(self, model, optimizer, x: np.ndarray, y: np.ndarray, recorder: Recorder | None = None,
             eps_free: bool = False) -> float:
        """One training step, as a training script does it: zero_grad, forward, loss, backward, the
        script's before_step (gradient clipping), step; or the script's own step (TorchSide.step)."""
        if self.side.step is not None:  # the script's own step (its clipping, scaler, autocast)
            model.train()
            args = as_args(x, next(model.parameters()).dtype)
            # The gradients as backward left them (before the step's own clipping), so that a nudged run
            # can clip as a port without torch's 1e-6 does (clip_slack) just before optimizer.step().
            before: dict = {}
            handles = [p.register_post_accumulate_grad_hook(
                lambda p: before.__setitem__(p, p.grad.detach().to(torch.float64).clone()))
                for p in model.parameters() if p.requires_grad] if eps_free else []
            real_step = optimizer.step

            def step(*args, **kwargs):
                clip_slack(before, eps_free=True)
                return real_step(*args, **kwargs)

            if eps_free:
                optimizer.step = step
            try:
                with self.hooked(model, recorder):
                    loss = self.side.step(model, optimizer, args if isinstance(x, tuple) else args[0],
                                          torch.from_numpy(y).long())
            finally:
                if eps_free:
                    del optimizer.step  # the class's own again
                for handle in handles:
                    handle.remove()
            return float(loss)
        optimizer.zero_grad(set_to_none=True)
        loss, _ = self.loss_and_grads(model, x, y, recorder)
        self.optimizer_step(model, optimizer, eps_free)
        return loss
