"""Jacobian-free differentiation: differentiate one solver step at the solution."""

import equinox as eqx
import jax
import jax.numpy as jnp

from ..solvers.iterate import run_solver
from ._base import AbstractAdjoint, AdjointOutput, no_backward_diagnostics, stop_gradient_tree


class JacobianFreeAdjoint(AbstractAdjoint):
    """Approximate the inverse Hessian by a scaled identity: dy*/dtheta ~ -c * d(dE/dy)/dtheta at y*.

    This is the gradient of one gradient-descent step y* - c * dE/dy(y*) taken at the solution,
    also known as Jacobian-free backpropagation or the one-step phantom gradient. It costs one
    extra gradient evaluation and no linear solve, and its memory does not depend on the number
    of iterations. It is a descent direction when the Hessian is positive definite and well
    conditioned, but not the exact gradient.

    **Arguments:**

    - `step_size`: c. `None` takes the solver's `step_size` when it has one (as
      `GradientDescent` does), else 1.0.
    """

    step_size: float | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        if self.step_size is not None and not self.step_size > 0:
            raise ValueError(f"JacobianFreeAdjoint needs step_size > 0 or None, got {self.step_size!r}.")

    def solve(self, solver, problem, y0):
        # The forward solve runs in a while loop, which reverse mode cannot differentiate, so
        # nothing in it may carry gradients: not the problem and not learnable solver settings.
        frozen = stop_gradient_tree(problem)
        frozen_solver = stop_gradient_tree(solver)
        state, stats = run_solver(
            frozen_solver, frozen, frozen_solver.init(frozen, jax.lax.stop_gradient(y0)), solver.max_steps,
            differentiable=False,
        )
        y_star = jax.lax.stop_gradient(state.y)
        if self.step_size is not None:
            scale = jnp.asarray(self.step_size, y_star.dtype)
        elif hasattr(solver, "step_size"):
            scale = jnp.asarray(jax.lax.stop_gradient(solver.step_size), y_star.dtype)
        else:
            scale = jnp.asarray(1.0, y_star.dtype)

        # The value stays exactly y*; only the gradient of the step term reaches the parameters.
        grad = problem.grad(y_star)
        y = y_star - scale * (grad - jax.lax.stop_gradient(grad))
        residual, fallback = no_backward_diagnostics(y_star.dtype)
        return AdjointOutput(y=y, state=state, stats=stats, backward_residual=residual, backward_fallback=fallback)
