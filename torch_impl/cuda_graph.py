"""torch_impl's CUDA path: the whole train step (forward, backward, Adam) captured once in a CUDA
graph and replayed for every full batch, PyTorch's own answer for a small static model.

Why: on a GPU this model's eager step is bound by Python and kernel launches, not arithmetic
(issue #15, one H200: eager 2.1-2.8 ms per step; a whole-step graph with capturable Adam 0.397 ms).
The graph replays the same kernels on the same memory, so everything it touches is static: the
batch indices are copied into a fixed buffer and the batch is gathered on the device inside the
graph, and the epoch totals (loss, correct, first non-finite step) accumulate inside it too, so
the loop never waits for the host. Adam runs with capturable=True: its step count lives on the
device, and it computes its bias corrections as float32 device math instead of Python floats, so a
captured step and an eager one differ in the last bits (compare them with a tolerance, not
bitwise). The short last batch of an epoch runs eagerly on the same tensors. The calls are
torch_impl.steps.train_step's: on a CPU the same static step runs uncaptured (non-capturable
Adam), and tests/test_torch_impl.py checks it against the eager epoch bit for bit.

The default on one CUDA device since it was measured (issue #31, one H200, benchmarks/gpu_check.sh
stage "graph": 0.46 s an epoch against eager's 2.43 s, and over 4 seeds no metric differs, Welch);
`--cuda-graph off` trains eagerly. Capture follows PyTorch's
rules: on the tensors' own device (not whichever is current), warm-up and capture on one side
stream, the model in train mode.
"""

from __future__ import annotations

import torch

from torch_impl.steps import train_step

WARMUP_STEPS = 3  # PyTorch's capture recipe: a few eager steps on a side stream before capturing


class StaticStep:
    """One train step on static buffers; on CUDA captured into a graph (capture=True) and replayed."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, train_x: torch.Tensor,
                 train_y: torch.Tensor, batch_size: int, capture: bool):
        self.device = device = train_x.device
        self.model, self.optimizer, self.train_x, self.train_y = model, optimizer, train_x, train_y
        self.batch_size = batch_size
        self.idx = torch.zeros(batch_size, dtype=torch.int64, device=device)  # (B,) this step's samples
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=device)  # epoch step of the first NaN/inf
        self.step = torch.zeros((), dtype=torch.int64, device=device)  # steps so far this epoch
        self.graph = None
        if capture:
            self._capture()

    def reset(self) -> None:
        """Zero the epoch totals (in place: the graph holds their addresses)."""
        self.loss_sum.zero_()
        self.correct.zero_()
        self.first_bad.fill_(-1)
        self.step.zero_()

    def __call__(self, idx: torch.Tensor) -> None:
        """Train on the samples idx (on the device): replay the graph for a full batch, else run eagerly."""
        if len(idx) != self.batch_size:
            self._step(self.train_x[idx], self.train_y[idx])
            return
        self.idx.copy_(idx)
        if self.graph is None:
            self._body()
            return
        with torch.cuda.device(self.device):  # the graph's device, whichever is current
            self.graph.replay()

    def _body(self) -> None:
        """What the graph holds: gather the batch from the static indices, step, accumulate."""
        self._step(self.train_x[self.idx], self.train_y[self.idx])

    def _step(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        loss_sum, correct = train_step(self.model, self.optimizer, images, labels)
        self.loss_sum += loss_sum
        self.correct += correct
        bad = (self.first_bad < 0) & ~torch.isfinite(loss_sum)
        self.first_bad.copy_(torch.where(bad, self.step, self.first_bad))
        self.step += 1

    def _capture(self) -> None:
        """Warm up on a side stream, capture one step, then put back the weights and Adam state that
        the warm-up steps changed (in place: the graph holds their addresses)."""
        self.model.train()  # the mode is part of what is captured
        params = list(self.model.parameters())
        saved_params = [p.detach().clone() for p in params]
        saved_state = {p: {k: v.clone() for k, v in self.optimizer.state[p].items()} for p in params
                       if self.optimizer.state.get(p)}
        # On the tensors' device: with another one current (--device cuda:1), the stream and the
        # capture would be on device 0, and PyTorch would only warn "The CUDA Graph is empty".
        with torch.cuda.device(self.device):
            side = torch.cuda.Stream(device=self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(WARMUP_STEPS):
                    self._body()
            torch.cuda.current_stream(self.device).wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, stream=side):  # the stream that warmed up
                self._body()
        with torch.no_grad():
            for p, saved in zip(params, saved_params):
                p.copy_(saved)
            for p in params:  # Adam's state as before the warm-up: the saved one, or a fresh one (zeros)
                for k, v in self.optimizer.state[p].items():
                    v.copy_(saved_state[p][k]) if p in saved_state else v.zero_()
        self.reset()
