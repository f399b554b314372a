"""The parity kit: describe a PyTorch model and its JAX port once (parity.Port), and every check of the
proof runs on it, each saying where the two sides first split when they do.

    from parity import JaxSide, Port, TorchSide, same_names
    from parity.testing import proof_tests
    PORT = Port(name=..., torch=TorchSide(...), jax=JaxSide(...), weights=same_names({...}), ...)
    globals().update(proof_tests(PORT))   # in a test file: one pytest test per check

This module is framework-neutral (it imports neither torch nor jax); parity.checks, parity.testing
and parity.loop bring them in. docs/your-model.md is the walk-through.
"""

from parity.port import (JaxSide, Layout, Port, Split, TorchSide, nchw_to_nhwc, nhwc_to_nchw, normalize,
                         same_layout, same_names)

__all__ = ["JaxSide", "Layout", "Port", "Split", "TorchSide", "nchw_to_nhwc", "nhwc_to_nchw", "normalize", "same_layout", "same_names"]
