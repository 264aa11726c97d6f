"""Methods, found by name in one registry. Importing this package registers them all."""
from . import (barlow_twins, byol, deepcluster, dino, directpred, moco, moco_v3, nnclr, pirl, simclr,  # noqa: F401
               simsiam, swav, triplet, vicreg)  # each registers itself
from .base import METHODS, EpochContext, Method, Recipe, register_method

__all__ = ["METHODS", "EpochContext", "Method", "Recipe", "register_method"]
