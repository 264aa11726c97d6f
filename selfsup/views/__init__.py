"""Views: batched augmentation kernels, their random parameters, and the papers' presets."""
from .clips import ClipViews
from .pipeline import VIEW_PRESETS, Normalization, Views, ViewSettings, estimate_normalization, eval_transform
from .volume import VolumeViews

# The view pipeline of each data modality (text has none: token ids are fed as they are).
VIEW_CLASSES = {"image": Views, "video": ClipViews, "volume": VolumeViews}

__all__ = ["VIEW_CLASSES", "VIEW_PRESETS", "ClipViews", "Normalization", "Views", "ViewSettings", "VolumeViews",
           "estimate_normalization", "eval_transform"]
