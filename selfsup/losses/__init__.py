"""Losses: one a file, tensors in, scalar out, each naming its paper and equation."""
from .barlow_twins import BarlowTwinsLoss
from .byol import NegativeCosineSimilarity
from .infonce import InfoNCELoss
from .ntxent import NTXentLoss
from .vicreg import VICRegLoss, covariance_term, variance_term

__all__ = ["BarlowTwinsLoss", "InfoNCELoss", "NegativeCosineSimilarity", "NTXentLoss", "VICRegLoss", "covariance_term",
           "variance_term"]
