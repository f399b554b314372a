"""Weights across the two sides: torch's state_dict <-> JAX's variables, through the port's weight map,
checked by name and shape both ways (NumPy only)."""

from __future__ import annotations

import numpy as np

from parity.port import Port

TO_JAX = {"conv": lambda a: a.transpose(2, 3, 1, 0), "linear": lambda a: a.T, "same": lambda a: a}  # OIHW -> HWIO
TO_TORCH = {"conv": lambda a: a.transpose(3, 2, 0, 1), "linear": lambda a: a.T, "same": lambda a: a}
SKIPPED = ("num_batches_tracked",)  # torch's BatchNorm step counter: JAX's BatchNorm keeps none


def flat(variables: dict, prefix: str = "") -> dict[str, np.ndarray]:
    """{"params": {"conv1": {"kernel": a}}} -> {"params/conv1/kernel": a}."""
    out = {}
    for key, value in variables.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat(value, path + "/"))
        else:
            out[path] = np.asarray(value)
    return out


def nested(flat_tree: dict[str, np.ndarray]) -> dict:
    out: dict = {}
    for path, value in flat_tree.items():
        node = out
        *parents, leaf = path.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def mapped(name: str) -> bool:
    return not name.endswith(SKIPPED)


def map_problems(port: Port, torch_state: dict[str, np.ndarray], variables: dict,
                 tied: list[set[str]] = ()) -> list[str]:
    """Every way the weight map fails to cover both sides one to one, with matching shapes. tied: the
    groups of torch names that are one tensor (nanoGPT's lm_head.weight and transformer.wte.weight):
    each group goes to one JAX path, and two names go to one path only if torch ties them."""
    jax_flat = flat(variables)
    problems = []
    for group in tied:
        paths = {port.weights[n][0] for n in group if n in port.weights}
        if len(paths) > 1:
            problems.append(f"torch ties {' and '.join(sorted(group))} (one tensor); the weight map sends them to "
                            f"{len(paths)} JAX tensors ({', '.join(sorted(paths))}): the JAX model does not tie them")
    sharing: dict[str, list[str]] = {}
    for name, (path, _) in port.weights.items():
        sharing.setdefault(path, []).append(name)
    for path, names in sharing.items():
        if len(names) > 1 and not any(set(names) <= group for group in tied):
            problems.append(f"the weight map sends {' and '.join(names)} to one JAX tensor, {path}, but torch does "
                            "not tie them (two tensors there)")
    for name in sorted(n for n in torch_state if mapped(n) and n not in port.weights):
        problems.append(f"torch's {name} {tuple(torch_state[name].shape)} is not in the weight map")
    for name, (path, layout) in port.weights.items():
        if name not in torch_state:
            problems.append(f"the weight map names torch's {name}, which the torch model does not have")
        elif path not in jax_flat:
            problems.append(f"the weight map sends {name} to {path}, which the JAX model does not have")
        else:
            shape = TO_JAX[layout](np.asarray(torch_state[name])).shape
            if shape != jax_flat[path].shape:
                problems.append(f"{name} {tuple(torch_state[name].shape)} as {layout} is {shape}, "
                                f"but {path} is {jax_flat[path].shape}")
    targets = {path for path, _ in port.weights.values()}
    for path in sorted(set(jax_flat) - targets):
        problems.append(f"JAX's {path} {jax_flat[path].shape} is not in the weight map")
    return problems


def torch_to_jax(port: Port, torch_state: dict[str, np.ndarray], dtype=None) -> dict:
    """JAX variables holding torch's values (every mapped tensor given, in the JAX layout: the
    parameters' gradients alone give a params collection alone)."""
    out = {}
    for name, (path, layout) in port.weights.items():
        if name not in torch_state:
            continue
        a = TO_JAX[layout](np.asarray(torch_state[name]))
        out[path] = np.ascontiguousarray(a if dtype is None else a.astype(dtype))
    return nested(out)


def jax_to_torch(port: Port, variables: dict) -> dict[str, np.ndarray]:
    """torch's state_dict names and layouts for the JAX variables (the mapped tensors of the collections
    given: {"params": grads} gives the parameters' names only)."""
    jax_flat = flat(variables)
    return {name: np.ascontiguousarray(TO_TORCH[layout](jax_flat[path]))
            for name, (path, layout) in port.weights.items() if path.split("/")[0] in variables}
