"""Gradient descent with a learnable step size and optional heavy-ball momentum."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Scalar

from .._regularisers import inverse_softplus
from ._base import AbstractSolver, AbstractSolverState, check_solver_settings


class GradientDescentState(AbstractSolverState):
    y: Float[Array, " m"]
    value: Scalar
    grad: Float[Array, " m"]
    velocity: Float[Array, " m"]


class GradientDescent(AbstractSolver):
    """y_{t+1} = y_t - alpha * dE/dy(y_t) + beta * (y_t - y_{t-1}), from y_0.

    This is the solver of Equilibrium Aggregation as published (Bartunov et al., UAI 2022,
    eq. 4): a few steps, T = 5 to 15, started at zero and differentiated by backpropagating
    through the steps. The step size alpha = softplus(a) is learnable, so it stays positive.

    **Arguments:**

    - `max_steps`: T, the number of steps.
    - `step_size`: the initial alpha; must be positive.
    - `momentum`: the heavy-ball coefficient beta in [0, 1); 0 gives plain gradient descent.
    - `tolerance`: stop early once max |dE/dy| <= tolerance. The default 0 runs all T steps.
    - `learnable_step_size`: whether gradients reach alpha.
    """

    max_steps: int = eqx.field(static=True)
    tolerance: float = eqx.field(static=True)
    momentum: float = eqx.field(static=True)
    learnable_step_size: bool = eqx.field(static=True)
    raw_step_size: Array

    def __init__(
        self,
        max_steps: int = 10,
        step_size: float = 0.1,
        momentum: float = 0.0,
        tolerance: float = 0.0,
        learnable_step_size: bool = True,
    ):
        check_solver_settings("GradientDescent", max_steps, tolerance)
        if not step_size > 0:
            raise ValueError(f"GradientDescent needs step_size > 0, got {step_size!r}.")
        if not 0 <= momentum < 1:
            raise ValueError(f"GradientDescent needs momentum in [0, 1), got {momentum!r}.")
        self.max_steps = max_steps
        self.tolerance = tolerance
        self.momentum = momentum
        self.learnable_step_size = learnable_step_size
        self.raw_step_size = jnp.asarray(inverse_softplus(step_size))

    @property
    def step_size(self) -> Scalar:
        raw = self.raw_step_size if self.learnable_step_size else jax.lax.stop_gradient(self.raw_step_size)
        return jax.nn.softplus(raw)

    def init(self, problem, y0):
        value, grad = problem.value_and_grad(y0)
        return GradientDescentState(y=y0, value=value, grad=grad, velocity=jnp.zeros_like(y0))

    def step(self, problem, state):
        alpha = self.step_size.astype(state.y.dtype)
        velocity = self.momentum * state.velocity - alpha * state.grad
        y = state.y + velocity
        value, grad = problem.value_and_grad(y)
        return GradientDescentState(y=y, value=value, grad=grad, velocity=velocity)
