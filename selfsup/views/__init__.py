"""Views: batched augmentation kernels, their random parameters, and the papers' presets."""
from .pipeline import VIEW_PRESETS, Normalization, Views, ViewSettings, estimate_normalization, eval_transform

__all__ = ["VIEW_PRESETS", "Normalization", "Views", "ViewSettings", "estimate_normalization", "eval_transform"]
