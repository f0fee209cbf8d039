"""Truncated differentiation: backpropagate through the last k iterations only."""

import equinox as eqx
import jax
import jax.numpy as jnp

from .._solution import SolveResult
from ..solvers.iterate import IterationStats, run_solver
from ._base import AbstractAdjoint, AdjointOutput, no_backward_diagnostics, stop_gradient_tree


class TruncatedAdjoint(AbstractAdjoint):
    """Run the solver without gradients, then backpropagate through `num_backprop_steps` more steps.

    The first `max_steps - num_backprop_steps` iterations run in a `lax.while_loop` that stops
    at the solver's tolerance and stores nothing; the last `num_backprop_steps` always run and
    are differentiated. Memory grows with `num_backprop_steps` only. The gradient is an
    approximation that ignores how the earlier iterates depend on the parameters. Near a
    contractive fixed point it approaches the implicit gradient as k grows.

    **Arguments:**

    - `num_backprop_steps`: k, the number of final iterations to differentiate; must be >= 1.
    """

    num_backprop_steps: int = eqx.field(static=True, default=5)

    def __check_init__(self):
        if not isinstance(self.num_backprop_steps, int) or self.num_backprop_steps < 1:
            raise ValueError(f"TruncatedAdjoint needs num_backprop_steps >= 1, got {self.num_backprop_steps!r}.")

    def solve(self, solver, problem, y0):
        if not solver.differentiable_steps:
            raise ValueError(
                f"{type(solver).__name__} cannot be unrolled, because its steps contain loops that reverse-mode "
                "autodiff cannot run through. Use ImplicitAdjoint() or JacobianFreeAdjoint() with it."
            )
        # The warm-up runs in a while loop, which reverse mode cannot differentiate, so nothing
        # in it may carry gradients: not the problem and not learnable solver settings.
        frozen = stop_gradient_tree(problem)
        frozen_solver = stop_gradient_tree(solver)
        warmup_steps = max(solver.max_steps - self.num_backprop_steps, 0)
        state, warmup = run_solver(
            frozen_solver, frozen, frozen_solver.init(frozen, jax.lax.stop_gradient(y0)), warmup_steps,
            differentiable=False,
        )

        # Re-evaluate the energy at the warm-up iterate with the live parameters, so the
        # differentiated steps get gradients from their first step. The solver's history stays frozen.
        state = jax.lax.stop_gradient(state)
        value, grad = problem.value_and_grad(state.y)
        state = eqx.tree_at(lambda s: (s.value, s.grad), state, (value, grad))
        state, tail = run_solver(
            solver, problem, state, self.num_backprop_steps, differentiable=True, stop_at_tolerance=False
        )

        stats = IterationStats(
            num_steps=warmup.num_steps + tail.num_steps,
            result=jnp.where(warmup.result == SolveResult.NONFINITE, warmup.result, tail.result),
            sum_squared_grad_norm=jax.lax.stop_gradient(warmup.sum_squared_grad_norm) + tail.sum_squared_grad_norm,
        )
        residual, fallback = no_backward_diagnostics(state.y.dtype)
        return AdjointOutput(y=state.y, state=state, stats=stats, backward_residual=residual, backward_fallback=fallback)
