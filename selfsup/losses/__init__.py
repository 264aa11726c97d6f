"""Losses: one a file, tensors in, scalar out, each naming its paper and equation."""
from .adversarial import discriminator_loss, generator_loss, r1_penalty
from .barlow_twins import BarlowTwinsLoss
from .byol import NegativeCosineSimilarity
from .colorization import rebalanced_colour_loss
from .consistency import (confidence_mask, kl_consistency, pseudo_label_loss, sharpen, tsa_cross_entropy,
                          tsa_threshold)
from .crossview import CrossViewInfoNCELoss
from .dense_contrastive import matched_keys, matched_locations
from .dino import DINOLoss
from .infonce import InfoNCELoss
from .language import negative_sampling_loss, token_cross_entropy
from .nce import NCELoss
from .ntxent import NTXentLoss
from .reconstruction import masked_mse, normalized_patch_mse
from .swav import SwAVLoss, sinkhorn
from .triplet import TripletMarginLoss
from .vicreg import VICRegLoss, covariance_term, variance_term

__all__ = ["BarlowTwinsLoss", "CrossViewInfoNCELoss", "DINOLoss", "InfoNCELoss", "NCELoss", "NegativeCosineSimilarity",
           "NTXentLoss", "SwAVLoss", "TripletMarginLoss", "VICRegLoss", "covariance_term",
           "masked_mse", "matched_keys", "matched_locations", "normalized_patch_mse", "rebalanced_colour_loss", "sinkhorn", "variance_term",
           "confidence_mask", "discriminator_loss", "generator_loss", "r1_penalty", "kl_consistency", "negative_sampling_loss", "token_cross_entropy", "pseudo_label_loss", "sharpen", "tsa_cross_entropy", "tsa_threshold"]
