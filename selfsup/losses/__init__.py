"""Losses: one a file, tensors in, scalar out, each naming its paper and equation."""
from .barlow_twins import BarlowTwinsLoss
from .byol import NegativeCosineSimilarity
from .ntxent import NTXentLoss
from .vicreg import VICRegLoss, covariance_term, variance_term

__all__ = ["BarlowTwinsLoss", "NegativeCosineSimilarity", "NTXentLoss", "VICRegLoss", "covariance_term",
           "variance_term"]
