"""The record returned by a solve: the aggregate and how well the inner problem was solved."""

import equinox as eqx
from jaxtyping import Array, Bool, Float, Int


class SolveResult:
    """Integer status codes stored in `Solution.result`, one per set."""

    SUCCESSFUL = 0
    MAX_STEPS_REACHED = 1
    NONFINITE = 2
    SEGMENT_OVERFLOW = 3

    MESSAGES = {
        SUCCESSFUL: "converged: max |dE/dy| is within the solver's tolerance",
        MAX_STEPS_REACHED: "not converged: the solver used all its steps before reaching the tolerance",
        NONFINITE: "failed: a set element was NaN or inf, so the set was solved as empty and the value is the "
        "starting point; or the energy or its gradient became NaN or inf during the solve, and the value is "
        "the last finite iterate",
        SEGMENT_OVERFLOW: "failed: the segment had more rows than max_segment_size, so some were dropped",
    }

    @classmethod
    def describe(cls, code: int) -> str:
        """Return a sentence describing a status code."""
        return cls.MESSAGES.get(int(code), f"unknown status code {int(code)}")


class Solution(eqx.Module):
    """The outcome of minimising the energy of one set; under `jax.vmap` every field gains a batch axis.

    **Fields:**

    - `value`: the returned aggregate y, shape (M,).
    - `residual`: max_k |dE/dy_k| at `value`, the convergence measure that tolerances refer to.
    - `grad_norm`: the Euclidean norm of dE/dy at `value`.
    - `energy`: E(X, value).
    - `num_steps`: the solver iterations taken.
    - `converged`: whether `residual` reached the solver's tolerance.
    - `result`: a `SolveResult` code; `SolveResult.describe(code)` explains it.
    - `aux_loss`: the auxiliary loss (1/T) sum_t ||dE/dy(y_t)||^2 over the iterates y_1..y_T. Add it to the
      training loss to encourage convergent dynamics. It carries gradients only for the
      iterations that the differentiation mode backpropagates through.
    - `num_elements`: the number of real (unmasked) elements in the set.
    - `backward_residual`: for `ImplicitAdjoint` with `probe=True`, the relative residual
      ||H v - b|| / ||b|| of its linear solver on a probe right-hand side at `value`; else 0.
    - `backward_fallback`: whether that probe found the Hessian indefinite or the solve
      inaccurate, so that the implicit gradient uses its fallback for this set.
    """

    value: Float[Array, " m"]
    residual: Float[Array, ""]
    grad_norm: Float[Array, ""]
    energy: Float[Array, ""]
    num_steps: Int[Array, ""]
    converged: Bool[Array, ""]
    result: Int[Array, ""]
    aux_loss: Float[Array, ""]
    num_elements: Int[Array, ""]
    backward_residual: Float[Array, ""]
    backward_fallback: Bool[Array, ""]
