"""Differentiation modes for the equilibrium layer, one class per file."""

from ._base import AbstractAdjoint, AdjointOutput
from .implicit import ImplicitAdjoint
from .jacobian_free import JacobianFreeAdjoint
from .truncated import TruncatedAdjoint
from .unrolled import UnrolledAdjoint

__all__ = ["AbstractAdjoint", "AdjointOutput", "ImplicitAdjoint", "JacobianFreeAdjoint", "TruncatedAdjoint", "UnrolledAdjoint"]
