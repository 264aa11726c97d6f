"""The downstream model out of a run: saved and loaded (``model``), predicted with (``predict``), exported
(``export``)."""
from .model import Classifier, DownstreamModel, Preprocessing, load_model, save_model

__all__ = ["Classifier", "DownstreamModel", "Preprocessing", "load_model", "save_model"]
