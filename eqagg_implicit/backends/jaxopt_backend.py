"""The only module of the library that imports jaxopt.

jaxopt is no longer maintained upstream, so the library keeps every use of it here and imports it
lazily: `import eqagg_implicit` does not import jaxopt, and only the solvers that are asked for the
jaxopt backend (and the cross-checks in the tests) load it.
"""

import functools
import warnings

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from .._energy import EnergyProblem

LINE_SEARCHES = ("zoom", "backtracking", "hager-zhang")


@functools.cache
def import_jaxopt():
    """Import and return the `jaxopt` module, silencing its import-time deprecation warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="JAXopt is no longer maintained", category=DeprecationWarning)
        import jaxopt
    return jaxopt


def energy_value(y: Float[Array, " m"], problem: EnergyProblem):
    """Return E(y); the objective in the `fun(params, *args)` form that jaxopt solvers call."""
    return problem.value(y)


def make_lbfgs(history_size: int, line_search: str, max_line_search_steps: int, unroll_line_search: bool):
    """Build a `jaxopt.LBFGS` for the energy of an `EnergyProblem`, to be driven by `init_state`/`update`.

    **Arguments:**

    - `history_size`: the number of stored (step, gradient change) pairs.
    - `line_search`: one of `LINE_SEARCHES`.
    - `max_line_search_steps`: jaxopt's `maxls`, the trial step sizes per iteration.
    - `unroll_line_search`: run the line search as a `lax.scan` of `max_line_search_steps`
      trials, which reverse-mode autodiff can run through, instead of a `lax.while_loop`,
      which stops at the first acceptable step but cannot be reverse-differentiated.

    **Returns:** the `jaxopt.LBFGS` instance; call it as `update(y, state, problem)`.
    """
    jaxopt = import_jaxopt()
    return jaxopt.LBFGS(
        fun=energy_value,
        history_size=history_size,
        linesearch=line_search,
        maxls=max_line_search_steps,
        implicit_diff=False,
        jit=True,
        unroll=unroll_line_search,
    )


def anderson_solve(
    problem: EnergyProblem,
    y0: Float[Array, " m"],
    *,
    step_size: float,
    history_size: int,
    mixing: float,
    ridge: float,
    max_steps: int,
    tolerance: float,
) -> tuple[Float[Array, " m"], Int[Array, ""]]:
    """Find the fixed point of y -> y - step_size * dE/dy(y) with `jaxopt.AndersonAcceleration`.

    This is the reference that `AndersonAcceleration` is checked against. The loop stops once
    max |dE/dy| <= `tolerance` at jaxopt's current iterate, the test the library's own driver uses.

    **Returns:** the final iterate and the number of jaxopt updates taken.
    """
    jaxopt = import_jaxopt()

    def fixed_point_map(y, problem):
        return y - step_size * problem.grad(y)

    solver = jaxopt.AndersonAcceleration(
        fixed_point_fun=fixed_point_map,
        history_size=history_size,
        beta=mixing,
        ridge=ridge,
        maxiter=max_steps,
        tol=0.0,
        implicit_diff=False,
        jit=True,
    )

    def not_done(carry):
        y, _, steps = carry
        return (jnp.max(jnp.abs(problem.grad(y))) > tolerance) & (steps < max_steps)

    def update(carry):
        y, state, steps = carry
        y, state = solver.update(y, state, problem)
        return y, state, steps + 1

    carry = (y0, solver.init_state(y0, problem), jnp.zeros((), jnp.int32))
    y, _, steps = jax.lax.while_loop(not_done, update, carry)
    return y, steps
