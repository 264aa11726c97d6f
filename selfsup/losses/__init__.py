"""Losses: one a file, tensors in, scalar out, each naming its paper and equation."""
from .barlow_twins import BarlowTwinsLoss
from .byol import NegativeCosineSimilarity
from .crossview import CrossViewInfoNCELoss
from .dino import DINOLoss
from .infonce import InfoNCELoss
from .nce import NCELoss
from .ntxent import NTXentLoss
from .swav import SwAVLoss, sinkhorn
from .triplet import TripletMarginLoss
from .vicreg import VICRegLoss, covariance_term, variance_term

__all__ = ["BarlowTwinsLoss", "CrossViewInfoNCELoss", "DINOLoss", "InfoNCELoss", "NCELoss", "NegativeCosineSimilarity",
           "NTXentLoss", "SwAVLoss", "TripletMarginLoss", "VICRegLoss", "covariance_term", "sinkhorn", "variance_term"]
