"""Levenberg-Marquardt with gain-ratio damping, for least-squares energies."""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, Scalar

from ._base import AbstractSolver, AbstractSolverState, check_solver_settings
from ._least_squares import (
    check_linear_solver_settings,
    damped_gauss_newton_step,
    require_least_squares,
    within_rounding_and_flatter,
)


class LevenbergMarquardtState(AbstractSolverState):
    y: Float[Array, " m"]
    value: Scalar
    grad: Float[Array, " m"]
    damping: Scalar
    damping_growth: Scalar


class LevenbergMarquardt(AbstractSolver):
    """Levenberg-Marquardt for E(y) = ||r(y)||^2: y_new = y + d with (J^T J + mu I) d = -J^T r.

    Every step solves for d at the current damping mu and evaluates E and dE/dy at y + d. The
    gain ratio rho = (E(y) - E(y + d)) / (E(y) - ||r + J d||^2) compares the actual decrease
    with the decrease predicted by the linearised residual. When the trial is finite and
    rho > 0 (or the trial changes E by no more than rounding error, 4 eps |E|, and lowers
    max |dE/dy|) the step is accepted and mu is multiplied by max(1/3, 1 - (2 rho - 1)^3).
    Otherwise the iterate stays, mu is multiplied by nu and nu doubles, and nu resets to 2
    after each accepted step. The energy never increases beyond rounding error, each step
    costs the same (no inner loop), and a rejected trial still counts as a step. mu is kept
    within [1e-12, 1e12] so that repeated rejections cannot overflow it.

    Needs a least-squares energy: a sum-of-squares potential (`SumOfSquaresResNetPotential`,
    `MeanPotential`) with `L2Regulariser` or `ZeroRegulariser`. `init` raises a `ValueError`
    for any other energy.

    **Arguments:**

    - `max_steps`: the maximum number of steps.
    - `tolerance`: stop once max |dE/dy| <= tolerance.
    - `initial_damping`: mu at the first step; must be positive. Small values start close to
      Gauss-Newton, large values close to short gradient steps.
    - `linear_solver`, `cg_rtol`, `cg_max_steps`: as for `GaussNewton`.
    """

    max_steps: int = eqx.field(static=True)
    tolerance: float = eqx.field(static=True)
    initial_damping: float = eqx.field(static=True)
    linear_solver: str = eqx.field(static=True)
    cg_rtol: float = eqx.field(static=True)
    cg_max_steps: int | None = eqx.field(static=True)

    def __init__(
        self,
        max_steps: int = 50,
        tolerance: float = 1e-5,
        initial_damping: float = 1e-3,
        linear_solver: str = "auto",
        cg_rtol: float = 1e-6,
        cg_max_steps: int | None = None,
    ):
        check_solver_settings("LevenbergMarquardt", max_steps, tolerance)
        if not 0 < initial_damping < 1e12:
            raise ValueError(f"LevenbergMarquardt needs initial_damping in (0, 1e12), got {initial_damping!r}.")
        check_linear_solver_settings("LevenbergMarquardt", linear_solver, cg_rtol, cg_max_steps)
        self.max_steps = max_steps
        self.tolerance = tolerance
        self.initial_damping = initial_damping
        self.linear_solver = linear_solver
        self.cg_rtol = cg_rtol
        self.cg_max_steps = cg_max_steps

    @property
    def requires_least_squares(self) -> bool:
        return True

    def init(self, problem, y0):
        require_least_squares("LevenbergMarquardt", problem)
        value, grad = problem.value_and_grad(y0)
        return LevenbergMarquardtState(
            y=y0,
            value=value,
            grad=grad,
            damping=jnp.asarray(self.initial_damping, y0.dtype),
            damping_growth=jnp.asarray(2.0, y0.dtype),
        )

    def step(self, problem, state):
        direction, model_curvature = damped_gauss_newton_step(
            problem, state.y, state.grad, state.damping, self.linear_solver, self.cg_rtol, self.cg_max_steps
        )

        trial = state.y + direction
        trial_value, trial_grad = problem.value_and_grad(trial)
        predicted_decrease = -(jnp.dot(state.grad, direction) + model_curvature)
        actual_decrease = state.value - trial_value
        finite = jnp.isfinite(trial_value) & jnp.all(jnp.isfinite(trial_grad))
        decrease = (predicted_decrease > 0) & (actual_decrease > 0)
        near_minimum = within_rounding_and_flatter(state.value, trial_value, state.grad, trial_grad)
        accept = finite & (decrease | near_minimum)

        safe_predicted = jnp.where(predicted_decrease > 0, predicted_decrease, 1)
        gain_ratio = jnp.where(accept, actual_decrease / safe_predicted, 0)
        shrink = jnp.maximum(1 / 3, 1 - (2 * gain_ratio - 1) ** 3)
        damping = jnp.where(accept, state.damping * shrink, state.damping * state.damping_growth)
        damping_growth = jnp.where(accept, 2.0, 2 * state.damping_growth)

        dtype = state.y.dtype
        return LevenbergMarquardtState(
            y=jnp.where(accept, trial, state.y),
            value=jnp.where(accept, trial_value, state.value),
            grad=jnp.where(accept, trial_grad, state.grad),
            damping=jnp.clip(damping, 1e-12, 1e12).astype(dtype),
            # Capped so that long runs of rejections cannot overflow it; mu's own cap binds first.
            damping_growth=jnp.minimum(damping_growth, 2.0**40).astype(dtype),
        )
