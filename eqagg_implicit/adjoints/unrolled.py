"""Unrolled differentiation: backpropagate through every solver iteration."""

import equinox as eqx

from ..solvers.iterate import run_solver
from ._base import AbstractAdjoint, AdjointOutput, no_backward_diagnostics


class UnrolledAdjoint(AbstractAdjoint):
    """Differentiate by backpropagating through all `max_steps` iterations of the solver.

    This is how Equilibrium Aggregation was first trained. The gradient is exact for the
    computation performed, converged or not, and it also trains solver parameters such as
    a learnable step size. Memory grows linearly with the number of iterations because every
    iterate is stored for the backward pass. The loop always runs `max_steps` iterations of work;
    sets that reach the solver's tolerance stop changing.

    **Arguments:**

    - `checkpoint`: rematerialise each iteration in the backward pass (`jax.checkpoint`) instead
      of storing its intermediate values. Memory then contains one solver state per iteration
      rather than every activation of the potential, for about one extra forward pass of compute.
    """

    checkpoint: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        if not isinstance(self.checkpoint, bool):
            raise ValueError(f"UnrolledAdjoint needs checkpoint to be True or False, got {self.checkpoint!r}.")

    def solve(self, solver, problem, y0):
        if not solver.differentiable_steps:
            raise ValueError(
                f"{type(solver).__name__} cannot be unrolled, because its steps contain loops that reverse-mode "
                "autodiff cannot run through. Use ImplicitAdjoint() or JacobianFreeAdjoint() with it."
            )
        state, stats = run_solver(
            solver, problem, solver.init(problem, y0), solver.max_steps, differentiable=True, checkpoint=self.checkpoint
        )
        residual, fallback = no_backward_diagnostics(state.y.dtype)
        return AdjointOutput(y=state.y, state=state, stats=stats, backward_residual=residual, backward_fallback=fallback)
