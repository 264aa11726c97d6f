"""Heads: projection, prediction and classifier heads on top of backbone features."""
from .mlp import Block, LinearClassifier, MLPHead, projection_head

__all__ = ["Block", "LinearClassifier", "MLPHead", "projection_head"]
