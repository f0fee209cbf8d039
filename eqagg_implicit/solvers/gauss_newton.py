"""Damped Gauss-Newton with a step-length safeguard, for least-squares energies."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Scalar

from ._base import AbstractSolver, AbstractSolverState, check_solver_settings
from ._least_squares import (
    check_linear_solver_settings,
    damped_gauss_newton_step,
    require_least_squares,
    within_rounding_and_flatter,
)

# Armijo constant: a step t d is accepted when E(y + t d) <= E(y) + c t dE/dy . d.
_SUFFICIENT_DECREASE = 1e-4


class GaussNewtonState(AbstractSolverState):
    y: Float[Array, " m"]
    value: Scalar
    grad: Float[Array, " m"]
    step_length: Scalar


class GaussNewton(AbstractSolver):
    """Gauss-Newton for E(y) = ||r(y)||^2: y_new = y + t d with (J^T J + mu I) d = -J^T r.

    Every step linearises the residual at y, solves for the direction d with a fixed small
    damping mu, and evaluates E and dE/dy at one trial point y + t d. The trial is accepted when
    it is finite and satisfies the Armijo condition E(y + t d) <= E(y) + 1e-4 t dE/dy . d, or
    when it changes E by no more than rounding error (4 eps |E|) and lowers max |dE/dy|. Then
    the step length t resets to 1 for the next step. Otherwise the iterate stays and t halves.
    So the energy never increases beyond rounding error. Each step costs the same (no inner
    loop), which keeps the steps reverse-mode differentiable and cheap under `jax.vmap`. A
    rejected trial still counts as a step.

    Needs a least-squares energy: a sum-of-squares potential (`SumOfSquaresResNetPotential`,
    `MeanPotential`) with `L2Regulariser` or `ZeroRegulariser`. `init` raises a `ValueError`
    for any other energy.

    **Arguments:**

    - `max_steps`: the maximum number of steps.
    - `tolerance`: stop once max |dE/dy| <= tolerance.
    - `damping`: mu > 0, which keeps J^T J + mu I positive definite when J is rank deficient.
    - `linear_solver`: `"auto"` (default: `"dense"` for M <= 128, else `"cg"`), `"dense"` (form
      J^T J with M forward-mode products and factorise it) or `"cg"` (matrix-free conjugate
      gradients through Jacobian-vector products).
    - `cg_rtol`: the relative residual at which CG stops.
    - `cg_max_steps`: CG's iteration limit; `None` gives M.
    """

    max_steps: int = eqx.field(static=True)
    tolerance: float = eqx.field(static=True)
    damping: float = eqx.field(static=True)
    linear_solver: str = eqx.field(static=True)
    cg_rtol: float = eqx.field(static=True)
    cg_max_steps: int | None = eqx.field(static=True)

    def __init__(
        self,
        max_steps: int = 50,
        tolerance: float = 1e-5,
        damping: float = 1e-6,
        linear_solver: str = "auto",
        cg_rtol: float = 1e-6,
        cg_max_steps: int | None = None,
    ):
        check_solver_settings("GaussNewton", max_steps, tolerance)
        if not damping > 0:
            raise ValueError(f"GaussNewton needs damping > 0, got {damping!r}.")
        check_linear_solver_settings("GaussNewton", linear_solver, cg_rtol, cg_max_steps)
        self.max_steps = max_steps
        self.tolerance = tolerance
        self.damping = damping
        self.linear_solver = linear_solver
        self.cg_rtol = cg_rtol
        self.cg_max_steps = cg_max_steps

    @property
    def requires_least_squares(self) -> bool:
        return True

    def init(self, problem, y0):
        require_least_squares("GaussNewton", problem)
        value, grad = problem.value_and_grad(y0)
        return GaussNewtonState(y=y0, value=value, grad=grad, step_length=jnp.ones((), y0.dtype))

    def step(self, problem, state):
        damping = jnp.asarray(self.damping, state.y.dtype)
        direction, _ = damped_gauss_newton_step(
            problem, state.y, state.grad, damping, self.linear_solver, self.cg_rtol, self.cg_max_steps
        )

        trial = state.y + state.step_length * direction
        trial_value, trial_grad = problem.value_and_grad(trial)
        slope = jnp.dot(state.grad, direction)
        finite = jnp.isfinite(trial_value) & jnp.all(jnp.isfinite(trial_grad))
        sufficient_decrease = trial_value <= state.value + _SUFFICIENT_DECREASE * state.step_length * slope
        near_minimum = within_rounding_and_flatter(state.value, trial_value, state.grad, trial_grad)
        accept = finite & (sufficient_decrease | near_minimum)

        return GaussNewtonState(
            y=jnp.where(accept, trial, state.y),
            value=jnp.where(accept, trial_value, state.value),
            grad=jnp.where(accept, trial_grad, state.grad),
            step_length=jnp.where(accept, 1.0, 0.5 * state.step_length).astype(state.y.dtype),
        )
