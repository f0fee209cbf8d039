"""Anderson acceleration of the gradient-descent fixed-point map."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, Scalar

from ._base import AbstractSolver, AbstractSolverState, check_solver_settings


class AndersonState(AbstractSolverState):
    """The current iterate plus a ring buffer of the last `history_size` iterates and residuals.

    Slot `position` contains the newest entry, and `filled` marks the slots that belong to the
    current history (a rejected extrapolation clears the others).
    """

    y: Float[Array, " m"]
    value: Scalar
    grad: Float[Array, " m"]
    iterates: Float[Array, "h m"]
    residuals: Float[Array, "h m"]
    gram: Float[Array, "h h"]
    filled: Bool[Array, " h"]
    position: Int[Array, ""]
    num_fallbacks: Int[Array, ""]


class AndersonAcceleration(AbstractSolver):
    """Anderson acceleration (type II) of the fixed-point map g(y) = y - alpha * dE/dy(y).

    The history stores iterates y_i and residuals f_i = g(y_i) - y_i = -alpha * dE/dy(y_i). Each
    step picks weights w with sum(w) = 1 that minimise ||sum_i w_i f_i||^2 + ridge * s * ||w||^2,
    where s is the largest stored ||f_i||^2 (so the ridge term scales with the residuals and the
    small h x h system stays well conditioned), and moves to

        y_new = sum_i w_i (y_i + beta * f_i).

    Safeguard: the extrapolation is accepted when E and dE/dy are finite there and

        E(y_new) <= E(y) + energy_slack * alpha * ||dE/dy(y)||^2 + 4 * eps * |E(y)|,

    that is, when it raises the energy by at most `energy_slack` times the decrease that a
    gradient step is expected to give, plus a rounding allowance. Otherwise the step falls back
    to the damped gradient step y - beta * alpha * dE/dy(y) and the history restarts from it. A
    step made from a single stored entry is that same gradient step and is always accepted (the
    iteration driver still rejects non-finite states). With `history_size=1` the solver is
    gradient descent with step size beta * alpha.

    **Arguments:**

    - `max_steps`: the maximum number of steps.
    - `tolerance`: stop once max |dE/dy| <= tolerance.
    - `step_size`: alpha in the fixed-point map; must be positive.
    - `history_size`: h, the number of stored (iterate, residual) pairs; must be >= 1.
    - `mixing`: beta in (0, 1]; values below 1 damp the step.
    - `ridge`: the relative ridge weight (> 0) of the weight problem.
    - `energy_slack`: the allowed energy increase (>= 0) of an extrapolation, in units of the
      expected decrease of a gradient step.

    Each step costs one evaluation of E and dE/dy, plus one more when the safeguard rejects the
    extrapolation, and O(h M + h^3) arithmetic.
    """

    max_steps: int = eqx.field(static=True)
    tolerance: float = eqx.field(static=True)
    step_size: float = eqx.field(static=True)
    history_size: int = eqx.field(static=True)
    mixing: float = eqx.field(static=True)
    ridge: float = eqx.field(static=True)
    energy_slack: float = eqx.field(static=True)

    def __init__(
        self,
        max_steps: int = 100,
        tolerance: float = 1e-5,
        step_size: float = 0.1,
        history_size: int = 5,
        mixing: float = 1.0,
        ridge: float = 1e-8,
        energy_slack: float = 1.0,
    ):
        check_solver_settings("AndersonAcceleration", max_steps, tolerance)
        if not step_size > 0:
            raise ValueError(f"AndersonAcceleration needs step_size > 0, got {step_size!r}.")
        if not isinstance(history_size, int) or isinstance(history_size, bool) or history_size < 1:
            raise ValueError(f"AndersonAcceleration needs history_size to be an int >= 1, got {history_size!r}.")
        if not 0 < mixing <= 1:
            raise ValueError(f"AndersonAcceleration needs mixing in (0, 1], got {mixing!r}.")
        if not ridge > 0:
            raise ValueError(f"AndersonAcceleration needs ridge > 0, got {ridge!r}.")
        if not energy_slack >= 0:
            raise ValueError(f"AndersonAcceleration needs energy_slack >= 0, got {energy_slack!r}.")
        self.max_steps = max_steps
        self.tolerance = tolerance
        self.step_size = step_size
        self.history_size = history_size
        self.mixing = mixing
        self.ridge = ridge
        self.energy_slack = energy_slack

    def init(self, problem, y0):
        value, grad = problem.value_and_grad(y0)
        size = y0.shape[0]
        state = AndersonState(
            y=y0,
            value=value,
            grad=grad,
            iterates=jnp.zeros((self.history_size, size), y0.dtype),
            residuals=jnp.zeros((self.history_size, size), y0.dtype),
            gram=jnp.zeros((self.history_size, self.history_size), y0.dtype),
            filled=jnp.zeros(self.history_size, bool),
            position=jnp.asarray(-1, jnp.int32),
            num_fallbacks=jnp.zeros((), jnp.int32),
        )
        return self._push(state, keep_history=jnp.asarray(True))

    def step(self, problem, state):
        dtype = state.y.dtype
        alpha = jnp.asarray(self.step_size, dtype)
        beta = jnp.asarray(self.mixing, dtype)

        weights = self._mixing_weights(state)
        candidate = weights @ (state.iterates + beta * state.residuals)
        candidate_value, candidate_grad = problem.value_and_grad(candidate)

        eps = jnp.finfo(dtype).eps
        allowed_increase = self.energy_slack * alpha * jnp.sum(state.grad * state.grad) + 4 * eps * jnp.abs(
            state.value
        )
        finite = jnp.isfinite(candidate_value) & jnp.all(jnp.isfinite(candidate_grad))
        single_entry = jnp.sum(state.filled) == 1
        accept = finite & ((candidate_value <= state.value + allowed_increase) | single_entry)

        def take_candidate(_):
            return candidate, candidate_value, candidate_grad

        def take_gradient_step(_):
            y = state.y - beta * alpha * state.grad
            return (y, *problem.value_and_grad(y))

        y, value, grad = jax.lax.cond(accept, take_candidate, take_gradient_step, None)

        state = AndersonState(
            y=y,
            value=value,
            grad=grad,
            iterates=state.iterates,
            residuals=state.residuals,
            gram=state.gram,
            filled=state.filled,
            position=state.position,
            num_fallbacks=state.num_fallbacks + (~accept).astype(jnp.int32),
        )
        return self._push(state, keep_history=accept)

    def _push(self, state: AndersonState, keep_history) -> AndersonState:
        """Store the state's iterate and residual in the next slot; forget the rest unless `keep_history`."""
        position = (state.position + 1) % self.history_size
        residual = -jnp.asarray(self.step_size, state.y.dtype) * state.grad
        iterates = state.iterates.at[position].set(state.y)
        residuals = state.residuals.at[position].set(residual)

        row = residuals @ residual
        gram = state.gram.at[position, :].set(row).at[:, position].set(row)
        filled = (state.filled & keep_history).at[position].set(True)
        return eqx.tree_at(
            lambda s: (s.iterates, s.residuals, s.gram, s.filled, s.position),
            state,
            (iterates, residuals, gram, filled, position),
        )

    def _mixing_weights(self, state: AndersonState) -> Float[Array, " h"]:
        """Solve min ||sum_i w_i f_i||^2 + ridge * s * ||w||^2 subject to sum(w) = 1 over the filled slots."""
        filled = state.filled
        both_filled = filled[:, None] & filled[None, :]
        gram = jnp.where(both_filled, state.gram, 0)

        # Dividing by the largest stored ||f_i||^2 makes the ridge relative and the system scale-free.
        scale = jnp.max(jnp.where(filled, jnp.diagonal(gram), 0))
        gram = gram / jnp.where(scale > 0, scale, 1)

        # Empty slots get a unit diagonal and a zero right-hand side, so their weights are zero.
        diagonal = jnp.where(filled, jnp.asarray(self.ridge, gram.dtype), 1)
        system = gram + jnp.diag(diagonal)
        # The solution of (G + ridge I) z = 1 has sum(z) = z^T (G + ridge I) z > 0, so the
        # normalisation below never divides by zero.
        z = jnp.linalg.solve(system, filled.astype(gram.dtype))
        return z / jnp.sum(z)
