"""The interface every inner solver implements."""

import abc

import equinox as eqx
from jaxtyping import Array, Float, Scalar

from .._energy import EnergyProblem


class AbstractSolverState(eqx.Module):
    """The state a solver carries between steps. Subclasses add their own fields.

    The iteration driver reads `y`, `value` and `grad` to test convergence and to accumulate
    the auxiliary loss, so every state keeps them for its current iterate.
    """

    y: eqx.AbstractVar[Float[Array, " m"]]
    value: eqx.AbstractVar[Scalar]
    grad: eqx.AbstractVar[Float[Array, " m"]]


class AbstractSolver(eqx.Module):
    """A method for min_y E(y), written as `init` plus one `step` at a time.

    The iteration loop, the convergence test, per-set status and the choice between a
    differentiable `lax.scan` and a cheaper `lax.while_loop` live in the driver
    (`iterate.py`), so a new solver only describes its update. To add one, subclass this class,
    give it `max_steps` and `tolerance` fields, and implement `init` and `step` as pure functions
    of arrays, so that they work under `jit`, `vmap` and `grad`.

    A solver may have learnable parameters (such as a step size). They are trained with the
    rest of the layer when the differentiation mode backpropagates through the steps.
    """

    max_steps: eqx.AbstractVar[int]
    tolerance: eqx.AbstractVar[float]

    @abc.abstractmethod
    def init(self, problem: EnergyProblem, y0: Float[Array, " m"]) -> AbstractSolverState:
        """Return the state at the starting point `y0`."""

    @abc.abstractmethod
    def step(self, problem: EnergyProblem, state: AbstractSolverState) -> AbstractSolverState:
        """Return the state after one iteration."""

    @property
    def differentiable_steps(self) -> bool:
        """Whether reverse-mode autodiff can run through `step` (False for steps with inner while loops)."""
        return True

    @property
    def requires_least_squares(self) -> bool:
        """Whether the solver needs a sum-of-squares energy, as Gauss-Newton methods do."""
        return False


def check_solver_settings(solver_name: str, max_steps, tolerance) -> None:
    """Raise a `ValueError` for invalid settings shared by every solver."""
    if not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps <= 0:
        raise ValueError(f"{solver_name} needs max_steps to be a positive int, got {max_steps!r}.")
    if not tolerance >= 0:
        raise ValueError(f"{solver_name} needs tolerance >= 0, got {tolerance!r}.")
