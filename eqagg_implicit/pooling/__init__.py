"""Baseline set poolings with the call signature of `EquilibriumAggregation`."""

from .attention import AttentionPooling
from .pna import PNAPooling, average_log_size
from .simple import MaxPooling, MeanPooling, SumPooling

__all__ = ["AttentionPooling", "MaxPooling", "MeanPooling", "PNAPooling", "SumPooling", "average_log_size"]
