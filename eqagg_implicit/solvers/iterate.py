"""The loop that runs a solver: convergence test, per-set status and the auxiliary loss.

Two loop forms share one body. `lax.scan` over a fixed number of steps can be differentiated in
reverse mode, so unrolled and truncated differentiation use it. `lax.while_loop` stops as soon as
the tolerance is reached, which saves work when gradients come from elsewhere (implicit or
Jacobian-free differentiation). Under `jax.vmap` each set keeps its own status: a set that has
converged or failed stops changing while the others continue.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from .._energy import EnergyProblem
from .._solution import SolveResult
from ._base import AbstractSolver, AbstractSolverState


class IterationStats(eqx.Module):
    """Per-set measurements of the iteration loop."""

    num_steps: Int[Array, ""]
    result: Int[Array, ""]
    sum_squared_grad_norm: Float[Array, ""]


class _Carry(eqx.Module):
    state: AbstractSolverState
    num_steps: Int[Array, ""]
    done: Bool[Array, ""]
    failed: Bool[Array, ""]
    sum_squared_grad_norm: Float[Array, ""]


def max_abs_grad(state: AbstractSolverState) -> Float[Array, ""]:
    """Return max_k |dE/dy_k| at the state's iterate."""
    return jnp.max(jnp.abs(state.grad), initial=0.0)


def _is_finite(state: AbstractSolverState) -> Bool[Array, ""]:
    leaves = [state.y, state.grad, state.value]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


def _select(flag, new, old):
    return jax.tree.map(lambda a, b: jnp.where(flag, a, b), new, old)


def _make_body(solver: AbstractSolver, problem: EnergyProblem, stop_at_tolerance: bool):
    def body(carry: _Carry) -> _Carry:
        new_state = solver.step(problem, carry.state)
        finite = _is_finite(new_state)
        accept = ~carry.done & finite
        state = _select(accept, new_state, carry.state)
        squared_norm = jnp.sum(new_state.grad * new_state.grad)
        failed = carry.failed | (~carry.done & ~finite)
        converged = (max_abs_grad(state) <= solver.tolerance) & stop_at_tolerance
        return _Carry(
            state=state,
            num_steps=carry.num_steps + accept.astype(jnp.int32),
            done=carry.done | failed | converged,
            failed=failed,
            sum_squared_grad_norm=carry.sum_squared_grad_norm + jnp.where(accept, squared_norm, 0),
        )

    return body


def run_solver(
    solver: AbstractSolver,
    problem: EnergyProblem,
    state: AbstractSolverState,
    num_steps: int,
    *,
    differentiable: bool,
    stop_at_tolerance: bool = True,
    checkpoint: bool = False,
) -> tuple[AbstractSolverState, IterationStats]:
    """Run at most `num_steps` steps of `solver` from `state`.

    **Arguments:**

    - `solver`, `problem`: what to run and on which energy.
    - `state`: the starting state, from `solver.init` or an earlier call.
    - `num_steps`: the step limit (static).
    - `differentiable`: use `lax.scan` (reverse-mode differentiable, always `num_steps`
      iterations of work) instead of `lax.while_loop` (stops early, not reverse-differentiable).
    - `stop_at_tolerance`: freeze the iterate once max |dE/dy| <= tolerance. Truncated
      differentiation turns this off, so that its differentiated steps always run.
    - `checkpoint`: with `differentiable=True`, recompute each step's intermediate values in the
      backward pass (`jax.checkpoint`) instead of storing them.

    **Returns:** the final state and the `IterationStats`. A step that produces NaN or inf is
    rejected: the state keeps its last finite iterate and the result is `SolveResult.NONFINITE`.
    """
    finite = _is_finite(state)
    dtype = state.y.dtype
    carry = _Carry(
        state=state,
        num_steps=jnp.zeros((), jnp.int32),
        done=~finite | ((max_abs_grad(state) <= solver.tolerance) & stop_at_tolerance),
        failed=~finite,
        sum_squared_grad_norm=jnp.zeros((), dtype),
    )
    body = _make_body(solver, problem, stop_at_tolerance)
    if num_steps > 0:
        if differentiable:
            if checkpoint:
                body = jax.checkpoint(body)
            carry, _ = jax.lax.scan(lambda c, _: (body(c), None), carry, None, length=num_steps)
        else:
            # A rejected step marks the set as failed and done, so counting accepted steps ends the loop.
            carry = jax.lax.while_loop(lambda c: ~c.done & (c.num_steps < num_steps), body, carry)
    converged = max_abs_grad(carry.state) <= solver.tolerance
    result = jnp.where(
        carry.failed,
        SolveResult.NONFINITE,
        jnp.where(converged, SolveResult.SUCCESSFUL, SolveResult.MAX_STEPS_REACHED),
    ).astype(jnp.int32)
    stats = IterationStats(
        num_steps=carry.num_steps, result=result, sum_squared_grad_norm=carry.sum_squared_grad_norm
    )
    return carry.state, stats
