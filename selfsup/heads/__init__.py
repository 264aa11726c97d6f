"""Heads: MLP projection, prediction and classifier heads, and convolutional decoders."""
from .decoder import BottleneckDecoder, ConvDecoder
from .gan import DCGANGenerator, JointDiscriminator
from .mlp import Block, DenseProjection, MLPHead, classifier_head, projection_head

__all__ = ["Block", "BottleneckDecoder", "DenseProjection", "ConvDecoder", "DCGANGenerator", "JointDiscriminator", "MLPHead", "classifier_head", "projection_head"]
