"""Methods, found by name in one registry. Importing this package registers them all."""
from . import barlow_twins, byol, moco, simclr, simsiam, vicreg  # noqa: F401  (each registers itself)
from .base import METHODS, Method, Recipe, register_method

__all__ = ["METHODS", "Method", "Recipe", "register_method"]
