"""Where the JAX twin runs: one device, or a 1-D mesh over which every batch is split (data-parallel).

Parameters, optimizer state and the dataset are replicated; each global batch's index array is
sharded along the batch axis, so every device gathers and trains on its slice and XLA inserts the
gradient all-reduce. The same jitted step serves one device, several, and several hosts
(`jax.distributed.initialize`), where every process holds the same data and computes the same order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DEVICES_HELP = "auto (JAX's default backend), cpu, gpu or tpu, optionally with an index (gpu:1)"


@dataclass(frozen=True)
class Placement:
    mesh: Mesh

    @property
    def devices(self) -> list:
        return list(self.mesh.devices.flat)

    @property
    def local_device(self):
        """This process's first device of the mesh (where host-side values are built)."""
        return next(d for d in self.devices if d.process_index == jax.process_index())

    @property
    def platform(self) -> str:
        return self.devices[0].platform

    @property
    def size(self) -> int:
        return self.mesh.devices.size

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())

    @property
    def batch(self) -> NamedSharding:
        """(steps, batch) index arrays: the batch axis split across devices."""
        return NamedSharding(self.mesh, P(None, "data"))

    def put(self, x: np.ndarray, sharding: NamedSharding) -> jax.Array:
        if jax.process_count() == 1:
            return jax.device_put(x, sharding)
        # Several hosts: every process holds the same array and contributes its devices' parts.
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    def replicate(self, tree):
        """Every array leaf of a pytree (host or device) on all devices."""
        return jax.tree.map(lambda a: self.put(np.asarray(jax.device_get(a)), self.replicated), tree)

    def put_batch(self, idx: np.ndarray) -> jax.Array:
        return self.put(idx, self.batch)

    def describe(self) -> str:
        d = self.devices[0]
        text = f"{d.platform}:{d.id} ({d.device_kind})"
        if self.size > 1:
            hosts = f" on {jax.process_count()} hosts" if jax.process_count() > 1 else ""
            text = f"{self.size} x {d.platform} ({d.device_kind}){hosts}, data-parallel over devices " + \
                   ",".join(str(x.id) for x in self.devices)
        return text


def as_placement(where: jax.Device | Placement) -> Placement:
    """A Placement as it is, or one device as a one-device mesh (what tests and callers hand in)."""
    return where if isinstance(where, Placement) else Placement(Mesh(np.array([where]), ("data",)))


def enough_host_threads() -> None:
    """With forced host devices (XLA_FLAGS=--xla_force_host_platform_device_count=N), a thread pool
    big enough for all of them; call before JAX's CPU backend starts (make_placement does).

    XLA:CPU runs every host device's program on one thread pool sized by the core count; on a
    2-core machine, one device can wait at an all-reduce while the other cannot get a thread (a
    deadlock seen here with 2 devices).
    """
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        os.environ.setdefault("PJRT_NPROC", str(max(8, 2 * (os.cpu_count() or 1))))


def make_placement(device: str = "auto", num_devices: int = 0) -> Placement:
    """auto: JAX's default platform; `platform:N` pins one device; otherwise the first `num_devices`
    devices of the platform (0: all of them, across hosts when initialised for several)."""
    enough_host_threads()
    if device == "auto":
        platform, index = jax.default_backend(), ""
    else:
        platform, _, index = device.partition(":")
    try:
        devices = jax.devices(platform)
    except RuntimeError:
        raise ValueError(f"argument --device: {platform!r} is not available here (JAX backend: "
                         f"{jax.default_backend()}); use {DEVICES_HELP}") from None
    if index:
        if not index.isdigit() or int(index) >= len(devices):
            raise ValueError(f"argument --device: {device!r}: JAX sees {len(devices)} {platform} device(s)")
        devices = [devices[int(index)]]
    elif num_devices:
        if num_devices > len(devices):
            raise ValueError(f"argument --num-devices: {num_devices} requested, JAX sees {len(devices)} {platform} "
                             "device(s)")
        devices = devices[:num_devices]
    return Placement(Mesh(np.array(devices), ("data",)))


def initialize_distributed(coordinator: str | None, num_processes: int | None, process_id: int | None) -> None:
    """Several hosts: connect to the coordinator before any JAX computation (CPU collectives via gloo)."""
    if coordinator is None:
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
