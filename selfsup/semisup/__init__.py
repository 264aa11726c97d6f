"""Semi-supervised consistency training on labeled and unlabeled data together: UDA and FixMatch."""
from .methods import SEMISUP_METHODS, UDA, FixMatch
from .train import run_semisup, weak_view

__all__ = ["SEMISUP_METHODS", "UDA", "FixMatch", "run_semisup", "weak_view"]
