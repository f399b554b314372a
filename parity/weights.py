"""Weights across the two sides: torch's state_dict <-> JAX's variables, through the port's weight map,
checked by name and shape both ways (NumPy only)."""

from __future__ import annotations

import numpy as np

from parity.port import Layout, Port, Split

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


def parts(port: Port, name: str) -> tuple[list[tuple[str, object]], int | None]:
    """(the (JAX path, layout) pairs torch's `name` is held as, the axis it is cut along: None where it
    is one tensor, as most are; a Split's axis where it is several)."""
    entry = port.weights[name]
    return (list(entry.parts), entry.axis) if isinstance(entry, Split) else ([entry], None)


def paths(port: Port, name: str) -> list[str]:
    return [path for path, _ in parts(port, name)[0]]


def collection(port: Port, name: str) -> str:
    """The JAX collection torch's `name` lives in: "params" or "batch_stats"."""
    return paths(port, name)[0].split("/")[0]


def layout_name(layout) -> str:
    return layout.name if isinstance(layout, Layout) else layout


def _functions(layout):
    return (layout.to_jax, layout.to_torch) if isinstance(layout, Layout) else (TO_JAX[layout], TO_TORCH[layout])


def to_jax_values(port: Port, name: str, value: np.ndarray) -> dict[str, np.ndarray]:
    """{JAX path: array} for one torch tensor."""
    pairs, axis = parts(port, name)
    value = np.asarray(value)
    pieces = [value] if axis is None else np.split(value, len(pairs), axis=axis)
    return {path: _functions(layout)[0](piece) for (path, layout), piece in zip(pairs, pieces)}


def to_torch_value(port: Port, name: str, jax_flat: dict[str, np.ndarray]) -> np.ndarray:
    """One torch tensor from the JAX tensors that hold it (flat paths), in torch's layout."""
    pairs, axis = parts(port, name)
    pieces = [_functions(layout)[1](np.asarray(jax_flat[path])) for path, layout in pairs]
    return np.ascontiguousarray(pieces[0] if axis is None else np.concatenate(pieces, axis=axis))


def map_problems(port: Port, torch_state: dict[str, np.ndarray], variables: dict,
                 tied: list[set[str]] = ()) -> list[str]:
    """Every way the weight map fails to cover both sides one to one, with matching shapes. tied: the
    groups of torch names that are one tensor (nanoGPT's lm_head.weight and transformer.wte.weight):
    each group goes to one JAX path, and two names go to one path only if torch ties them."""
    jax_flat = flat(variables)
    problems = []
    for group in tied:
        targets = {tuple(paths(port, n)) for n in group if n in port.weights}
        if len(targets) > 1:
            where = ", ".join(sorted("+".join(t) for t in targets))
            problems.append(f"torch ties {' and '.join(sorted(group))} (one tensor); the weight map sends them to "
                            f"{len(targets)} JAX tensors ({where}): the JAX model does not tie them")
    sharing: dict[str, list[str]] = {}
    for name in port.weights:
        for path in paths(port, name):
            sharing.setdefault(path, []).append(name)
    for path, names in sharing.items():
        if len(names) > 1 and not any(set(names) <= group for group in tied):
            problems.append(f"the weight map sends {' and '.join(names)} to one JAX tensor, {path}, but torch does "
                            "not tie them (two tensors there)")
    for name in sorted(n for n in torch_state if mapped(n) and n not in port.weights):
        problems.append(f"torch's {name} {tuple(torch_state[name].shape)} is not in the weight map")
    for name in port.weights:
        pairs, axis = parts(port, name)
        if name not in torch_state:
            problems.append(f"the weight map names torch's {name}, which the torch model does not have")
            continue
        value = np.asarray(torch_state[name])
        if axis is not None and (value.ndim <= axis or value.shape[axis] % len(pairs)):
            problems.append(f"{name} {value.shape} cannot be cut into {len(pairs)} equal parts along axis {axis}")
            continue
        for path, piece in zip(paths(port, name), to_jax_values(port, name, value).values()):
            layout = layout_name(dict(pairs)[path])
            if path not in jax_flat:
                problems.append(f"the weight map sends {name} to {path}, which the JAX model does not have")
            elif piece.shape != jax_flat[path].shape:
                problems.append(f"{name} {value.shape}{' (a part)' if axis is not None else ''} as {layout} is "
                                f"{piece.shape}, but {path} is {jax_flat[path].shape}")
    for path in sorted(set(jax_flat) - set(sharing)):
        problems.append(f"JAX's {path} {jax_flat[path].shape} is not in the weight map")
    return problems


def torch_to_jax(port: Port, torch_state: dict[str, np.ndarray], dtype=None) -> dict:
    """JAX variables holding torch's values (every mapped tensor given, in the JAX layout: the
    parameters' gradients alone give a params collection alone)."""
    out = {}
    for name in port.weights:
        if name not in torch_state:
            continue
        for path, a in to_jax_values(port, name, torch_state[name]).items():
            out[path] = np.ascontiguousarray(a if dtype is None else a.astype(dtype))
    return nested(out)


def jax_to_torch(port: Port, variables: dict) -> dict[str, np.ndarray]:
    """torch's state_dict names and layouts for the JAX variables (the mapped tensors of the collections
    given: {"params": grads} gives the parameters' names only)."""
    jax_flat = flat(variables)
    return {name: to_torch_value(port, name, jax_flat) for name in port.weights if collection(port, name) in variables}
