"""Methods, found by name in one registry. Importing this package registers them all."""
from . import simclr  # noqa: F401  (registers)
from .base import METHODS, Method, Recipe, register_method

__all__ = ["METHODS", "Method", "Recipe", "register_method"]
