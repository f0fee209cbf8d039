"""The interface every differentiation mode implements."""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from .._energy import EnergyProblem
from ..solvers._base import AbstractSolver, AbstractSolverState
from ..solvers.iterate import IterationStats


class AdjointOutput(eqx.Module):
    """The output of a differentiation mode: the differentiable aggregate and diagnostics.

    `state` and `stats` describe the solve; only `y` (and, for backpropagated iterations,
    `stats.sum_squared_grad_norm`) carries gradients.
    """

    y: Float[Array, " m"]
    state: AbstractSolverState
    stats: IterationStats
    backward_residual: Float[Array, ""]
    backward_fallback: Bool[Array, ""]


class AbstractAdjoint(eqx.Module):
    """A rule for the gradients from the aggregate y* back to the potential, the regulariser and the set.

    A differentiation mode is chosen independently of the solver: `solve` runs `solver` on
    `problem` in whatever way its gradient rule needs and returns an `AdjointOutput` whose `y`
    has that rule attached. To add one, subclass this class and implement `solve`.
    """

    @abc.abstractmethod
    def solve(self, solver: AbstractSolver, problem: EnergyProblem, y0: Float[Array, " m"]) -> AdjointOutput:
        """Minimise the energy of `problem` from `y0` and return y* with this mode's gradients."""


def stop_gradient_tree(tree):
    """Stop gradients through every inexact array leaf of `tree`, keeping other leaves as they are."""
    dynamic, static = eqx.partition(tree, eqx.is_inexact_array)
    return eqx.combine(jax.lax.stop_gradient(dynamic), static)


def no_backward_diagnostics(dtype) -> tuple[Float[Array, ""], Bool[Array, ""]]:
    """Return the `backward_residual` and `backward_fallback` of a mode with no linear solve."""
    return jnp.zeros((), dtype), jnp.zeros((), bool)
