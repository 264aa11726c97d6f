"""selfsup: self-supervised pretraining, transfer and comparison on your own data.

    encoder, preprocess = selfsup.load_encoder("runs/simclr")   # a pretrained encoder
    model = selfsup.load_model("runs/train")                      # a trained classifier
    names, probabilities = model.predict(["scan1.png", "scan2.png"])

Parts usable on their own: ``selfsup.losses`` (e.g. NTXentLoss), ``selfsup.heads``
(projection heads), ``selfsup.views`` (batched view pipelines), ``selfsup.backbones``.
"""
from .backbones.io import load_encoder
from .downstream.model import load_model
from .utils.errors import ConfigError, NonFiniteLossError, SelfSupError

__version__ = "0.1.0"
__all__ = ["load_encoder", "load_model", "ConfigError", "NonFiniteLossError", "SelfSupError", "__version__"]
