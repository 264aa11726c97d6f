"""The label-efficiency study: pretrain, evaluate at several label budgets, compare with scratch, report."""
from .results import labels_needed, label_multipliers, summarize

__all__ = ["labels_needed", "label_multipliers", "summarize"]
