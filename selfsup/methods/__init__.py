"""Methods, found by name in one registry. Importing this package imports every module in it, and
each method module registers its methods (``register_method``): a method file dropped in is found,
and tests/methods/test_registry.py fails on one that defines a method without registering it."""
import importlib
import pkgutil

from .base import METHODS, ONE_PROCESS_ONLY, EpochContext, Method, Panel, Recipe, register_method

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["METHODS", "ONE_PROCESS_ONLY", "EpochContext", "Method", "Panel", "Recipe", "register_method"]
