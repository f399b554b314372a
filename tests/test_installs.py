"""Installs that reproduce: pinned versions, floors that hold them, XLA options a jaxlib may lack,
and a data cache that stays out of site-packages."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]


def pins() -> dict[str, str]:
    lines = (REPO / "constraints.txt").read_text().splitlines()
    return {m[1].lower().replace("_", "-"): m[2] for line in lines if (m := re.match(r"^([A-Za-z0-9_.-]+)==(\S+)$", line))}


def floors() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + project["optional-dependencies"]["dev"]
    return {m[1].lower(): m[2] for d in deps if (m := re.match(r"^([A-Za-z0-9_.-]+)>=(\S+)$", d))}


def test_every_dependency_has_a_floor_and_a_pin_that_meets_it():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert len(floors()) == len(project["dependencies"]) + len(project["optional-dependencies"]["dev"])
    pinned = pins()
    for name, floor in floors().items():
        assert name in pinned, f"{name} is not pinned in constraints.txt"
        assert Version(pinned[name]) >= Version(floor), f"{name}: pin {pinned[name]} below the floor {floor}"


def test_the_installed_versions_are_the_pinned_ones():
    """`make install` installs constraints.txt: what the tests run with is what the lock says."""
    pinned = pins()
    for name in floors():
        installed = metadata.version(name)
        assert Version(installed) == Version(pinned[name]), f"{name}: installed {installed}, pinned {pinned[name]}"


def test_a_compile_option_this_jaxlib_lacks_is_skipped_with_a_warning(monkeypatch):
    from flax_impl import training as flax_training

    options = {"xla_cpu_no_such_option_anywhere": "", **flax_training.COMPILER_OPTIONS["cpu"]}
    monkeypatch.setitem(flax_training.COMPILER_OPTIONS, "cpu", options)
    lowered = jax.jit(lambda x: x * 2).lower(jnp.ones(3))
    with pytest.warns(UserWarning, match="has no XLA option xla_cpu_no_such_option_anywhere"):
        compiled = flax_training.compile_with_options(lowered, "cpu")
    assert float(compiled(jnp.ones(3))[0]) == 2.0
    assert flax_training.COMPILER_OPTIONS["cpu"] is options  # the fallback is this compile's: nothing global changed
    assert list(options) == ["xla_cpu_no_such_option_anywhere", "xla_cpu_experimental_ynn_fusion_type"]


def test_the_data_cache_stays_out_of_an_installed_package(monkeypatch, tmp_path):
    from data.fashion_mnist import cache_dir

    checkout = tmp_path / "checkout"
    (checkout / "data").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text("")
    assert cache_dir(checkout / "data") == checkout / "data" / "fashion-mnist"
    site = tmp_path / "site-packages" / "data"
    site.mkdir(parents=True)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir(site) == tmp_path / "xdg" / "fashion-parity" / "data"
