"""Limited-memory BFGS, driven one step at a time through optimistix or jaxopt."""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import Array, Float, PyTree, Scalar

from ..backends import jaxopt_backend
from ._base import AbstractSolver, AbstractSolverState, check_solver_settings

_BACKENDS = ("optimistix", "jaxopt")


class LBFGSState(AbstractSolverState):
    """The current iterate and the backend's own solver state.

    The optimistix state contains non-array parts (the structure of its inverse-Hessian
    operator), which are the same at every step. They are kept in the static field
    `backend_static`, so that `backend_state` contains only arrays and the state can be carried
    through `lax.scan`, `lax.while_loop` and `jnp.where`. For jaxopt `backend_static` is `None`.
    """

    y: Float[Array, " m"]
    value: Scalar
    grad: Float[Array, " m"]
    backend_state: PyTree[Array]
    backend_static: Any = eqx.field(static=True)


def _objective(y, problem):
    # The optimistix form fn(y, args) -> (value, aux).
    return problem.value(y), None


class _BacktrackingState(eqx.Module):
    step_size: Scalar


class _RoundingTolerantArmijo(optx.AbstractSearch):
    """Backtracking Armijo search that also accepts energy changes within rounding error.

    The trial y + t d is accepted when d is a descent direction and
    E(y + t d) - E(y) <= 0.1 t dE/dy . d + 4 eps |E(y)|; otherwise t halves, and it resets to 1
    after an accepted trial. Without the 4 eps |E| term, every trial near the minimiser fails
    once the true decrease is below the rounding error of E. L-BFGS then stalls well short of a
    tight gradient tolerance, in float64 at max |dE/dy| ~ 1e-9 for E ~ 1.
    """

    def init(self, y, f_info_struct):
        del y, f_info_struct
        return _BacktrackingState(step_size=jnp.ones(()))

    def step(self, first_step, y, y_eval, f_info, f_eval_info, state):
        y_diff = y_eval - y
        predicted_change = f_info.compute_grad_dot(y_diff)
        f = f_info.as_min()
        change = f_eval_info.as_min() - f
        rounding = 4 * jnp.finfo(jnp.result_type(f)).eps * jnp.abs(f)
        sufficient_decrease = change <= 0.1 * predicted_change + rounding
        accept = first_step | (sufficient_decrease & (predicted_change <= 0))
        step_size = jnp.where(accept, 1.0, 0.5 * state.step_size)
        return step_size, accept, optx.RESULTS.successful, _BacktrackingState(step_size=step_size)


class LBFGS(AbstractSolver):
    """L-BFGS with a line search, stepping another library's implementation under our driver.

    The driver keeps control of the loop, the convergence test max |dE/dy| <= tolerance and the
    per-set status. This class only forwards `init` and `step` to the backend.

    - `backend="optimistix"` wraps `optimistix.LBFGS` (inverse-Hessian form) with a backtracking
      Armijo search that also accepts energy changes within rounding error (4 eps |E|), so it
      can reach tolerances near the rounding level of E. One of our steps is one optimistix
      step, which evaluates E and dE/dy at one trial point. When the search accepts the trial,
      the iterate moves there and a new direction is computed. When it rejects the trial, the
      iterate stays and the next step tries a shorter step. So `num_steps` counts energy
      evaluations, accepted or not. The steps contain no loops, so they are reverse-mode
      differentiable. Optimistix's own Cauchy stopping test is disabled (rtol = atol = 0), but
      its `terminate` result still freezes the iterate if optimistix reports a failure.
    - `backend="jaxopt"` wraps `jaxopt.LBFGS`. One of our steps is one jaxopt iteration: a new
      direction and a whole line search (`line_search`, at most `max_line_search_steps` trials).
      The line search is a `lax.while_loop`, which reverse-mode autodiff cannot run through,
      unless `unroll_line_search=True` turns it into a `lax.scan` that always runs all trials.
      jaxopt is no longer maintained upstream and is imported only when this backend is used.

    **Arguments:**

    - `max_steps`: the maximum number of steps.
    - `tolerance`: stop once max |dE/dy| <= tolerance.
    - `history_size`: the number of stored (step, gradient change) pairs; must be >= 1.
    - `backend`: `"optimistix"` (default) or `"jaxopt"`.
    - `line_search`: jaxopt only: `"zoom"` (default, strong Wolfe), `"backtracking"` or
      `"hager-zhang"`.
    - `max_line_search_steps`: jaxopt only: the trial step sizes per iteration.
    - `unroll_line_search`: jaxopt only: make the steps reverse-mode differentiable.
    """

    max_steps: int = eqx.field(static=True)
    tolerance: float = eqx.field(static=True)
    history_size: int = eqx.field(static=True)
    backend: str = eqx.field(static=True)
    line_search: str = eqx.field(static=True)
    max_line_search_steps: int = eqx.field(static=True)
    unroll_line_search: bool = eqx.field(static=True)

    def __init__(
        self,
        max_steps: int = 100,
        tolerance: float = 1e-5,
        history_size: int = 10,
        backend: str = "optimistix",
        *,
        line_search: str = "zoom",
        max_line_search_steps: int = 30,
        unroll_line_search: bool = False,
    ):
        check_solver_settings("LBFGS", max_steps, tolerance)
        if not isinstance(history_size, int) or isinstance(history_size, bool) or history_size < 1:
            raise ValueError(f"LBFGS needs history_size to be an int >= 1, got {history_size!r}.")
        if backend not in _BACKENDS:
            raise ValueError(f"LBFGS got backend={backend!r}; choose one of {', '.join(_BACKENDS)}.")
        if line_search not in jaxopt_backend.LINE_SEARCHES:
            choices = ", ".join(jaxopt_backend.LINE_SEARCHES)
            raise ValueError(f"LBFGS got line_search={line_search!r}; choose one of {choices}.")
        if (
            not isinstance(max_line_search_steps, int)
            or isinstance(max_line_search_steps, bool)
            or max_line_search_steps < 1
        ):
            raise ValueError(f"LBFGS needs max_line_search_steps to be an int >= 1, got {max_line_search_steps!r}.")
        self.max_steps = max_steps
        self.tolerance = tolerance
        self.history_size = history_size
        self.backend = backend
        self.line_search = line_search
        self.max_line_search_steps = max_line_search_steps
        self.unroll_line_search = bool(unroll_line_search)

    @property
    def differentiable_steps(self) -> bool:
        return self.backend == "optimistix" or self.unroll_line_search

    def init(self, problem, y0):
        if self.backend == "jaxopt":
            jaxopt_state = self._jaxopt_solver().init_state(y0, problem)
            return LBFGSState(
                y=y0, value=jaxopt_state.value, grad=jaxopt_state.grad, backend_state=jaxopt_state, backend_static=None
            )

        # An optimistix state starts with placeholder values; its first step evaluates E and
        # dE/dy at y0, accepts y0 and computes the first direction.
        solver = self._optimistix_solver()
        structure = jax.ShapeDtypeStruct((), y0.dtype)
        optx_state = solver.init(_objective, y0, problem, {}, structure, None, frozenset())
        y, optx_state, _ = solver.step(_objective, y0, problem, {}, optx_state, frozenset())
        dynamic, static = eqx.partition(optx_state, eqx.is_array)
        return LBFGSState(
            y=y, value=optx_state.f_info.f, grad=optx_state.f_info.grad, backend_state=dynamic, backend_static=static
        )

    def step(self, problem, state):
        if self.backend == "jaxopt":
            y, jaxopt_state = self._jaxopt_solver().update(state.y, state.backend_state, problem)
            return LBFGSState(
                y=y, value=jaxopt_state.value, grad=jaxopt_state.grad, backend_state=jaxopt_state, backend_static=None
            )

        solver = self._optimistix_solver()
        optx_state = eqx.combine(state.backend_state, state.backend_static)
        stop, result = solver.terminate(_objective, state.y, problem, {}, optx_state, frozenset())
        y, optx_state, _ = solver.step(_objective, state.y, problem, {}, optx_state, frozenset())
        dynamic, _ = eqx.partition(optx_state, eqx.is_array)
        new_state = LBFGSState(
            y=y,
            value=optx_state.f_info.f,
            grad=optx_state.f_info.grad,
            backend_state=dynamic,
            backend_static=state.backend_static,
        )
        freeze = stop | (result != optx.RESULTS.successful)
        return jax.tree.map(lambda old, new: jnp.where(freeze, old, new), state, new_state)

    def _optimistix_solver(self) -> optx.LBFGS:
        solver = optx.LBFGS(rtol=0.0, atol=0.0, history_length=self.history_size)
        return eqx.tree_at(lambda s: s.search, solver, _RoundingTolerantArmijo())

    def _jaxopt_solver(self):
        return jaxopt_backend.make_lbfgs(
            self.history_size, self.line_search, self.max_line_search_steps, self.unroll_line_search
        )
