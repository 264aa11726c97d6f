"""Heads: MLP projection (and, with later methods, prediction) heads on backbone features."""
from .mlp import Block, MLPHead, projection_head

__all__ = ["Block", "MLPHead", "projection_head"]
