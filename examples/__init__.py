"""Ports proven with the kit (parity/): each folder holds a torch model, its JAX port, and one proof file."""
