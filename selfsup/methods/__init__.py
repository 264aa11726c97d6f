"""Methods, found by name in one registry. Importing this package registers them all."""
from . import (barlow_twins, byol, deepcluster, dino, directpred, moco, moco_v3, nnclr, pirl, simclr,  # noqa: F401
               simsiam, swav, triplet, vicreg)  # joint-embedding methods; each registers itself
from . import autoencoder, colorization, corruption, jigsaw, mae, relative_patch, rotation  # noqa: F401  pretext tasks
from . import masked_lm, next_token, sentence_order, word2vec  # noqa: F401  text
from . import clip_contrastive, frame_between, frame_order, next_frame, odd_one_out  # noqa: F401  video
from . import rotation3d, rubik_cube, simclr3d  # noqa: F401  3D volumes
from . import bigan, dcgan  # noqa: F401  generative adversarial
from .base import METHODS, ONE_PROCESS_ONLY, EpochContext, Method, Panel, Recipe, register_method

__all__ = ["METHODS", "ONE_PROCESS_ONLY", "EpochContext", "Method", "Panel", "Recipe", "register_method"]
