"""Losses: one a file, tensors in, scalar out, each naming its paper and equation."""
from .ntxent import NTXentLoss

__all__ = ["NTXentLoss"]
