"""Heads: MLP projection, prediction and classifier heads, and convolutional decoders."""
from .decoder import BottleneckDecoder, ConvDecoder
from .mlp import Block, MLPHead, classifier_head, projection_head

__all__ = ["Block", "BottleneckDecoder", "ConvDecoder", "MLPHead", "classifier_head", "projection_head"]
