"""Linear algebra shared by the Gauss-Newton and Levenberg-Marquardt solvers.

Both minimise E(y) = ||r(y)||^2. At y they solve the damped normal equations

    (J^T J + mu I) d = -J^T r,        J = dr/dy,

whose right-hand side is -dE/dy / 2 because dE/dy = 2 J^T r.
"""

import jax
import jax.numpy as jnp
import lineax as lx
from jaxtyping import Array, Bool, Float

from .._energy import Energy, EnergyProblem
from .._linear_solve import solve_symmetric

LINEAR_SOLVERS = ("auto", "dense", "cg")

# With "auto", sizes up to this use the dense solve: M forward-mode products in one batched pass
# plus an O(M^3) Cholesky factorisation, which is cheap next to M sequential CG products.
DENSE_MAX_SIZE = 128


def check_linear_solver_settings(solver_name: str, linear_solver, cg_rtol, cg_max_steps) -> None:
    """Raise a `ValueError` for invalid linear-solver settings."""
    if linear_solver not in LINEAR_SOLVERS:
        choices = ", ".join(LINEAR_SOLVERS)
        raise ValueError(f"{solver_name} got linear_solver={linear_solver!r}; choose one of {choices}.")
    if not cg_rtol > 0:
        raise ValueError(f"{solver_name} needs cg_rtol > 0, got {cg_rtol!r}.")
    if cg_max_steps is not None and (
        not isinstance(cg_max_steps, int) or isinstance(cg_max_steps, bool) or cg_max_steps < 1
    ):
        raise ValueError(f"{solver_name} needs cg_max_steps to be an int >= 1 or None, got {cg_max_steps!r}.")


def require_least_squares(solver_name: str, problem: EnergyProblem | Energy) -> None:
    """Raise a `ValueError` unless the energy of `problem` (an `EnergyProblem` or `Energy`) is a sum of squares."""
    energy = problem.energy if isinstance(problem, EnergyProblem) else problem
    if energy.is_least_squares:
        return
    potential = type(energy.potential).__name__
    regulariser = type(energy.regulariser).__name__
    raise ValueError(
        f"{solver_name} needs a least-squares energy E(y) = ||r(y)||^2, but the layer has {potential} with "
        f"{regulariser}. Use a sum-of-squares potential (SumOfSquaresResNetPotential, or MeanPotential) with "
        "L2Regulariser or ZeroRegulariser, or choose a solver for general energies (GradientDescent, "
        "AndersonAcceleration, LBFGS)."
    )


def within_rounding_and_flatter(value, trial_value, grad, trial_grad) -> Bool[Array, ""]:
    """Whether a trial changes E by no more than rounding error (4 eps |E|) and lowers max |dE/dy|.

    Near the minimiser the true decrease of a good step falls below the rounding error of E, so
    a test on the energy alone would reject every step there and stall the solver short of a
    tight gradient tolerance. Such a trial is accepted when it reduces the gradient instead.
    """
    rounding = 4 * jnp.finfo(value.dtype).eps * jnp.abs(value)
    flatter = jnp.max(jnp.abs(trial_grad)) < jnp.max(jnp.abs(grad))
    return (jnp.abs(trial_value - value) <= rounding) & flatter


def damped_gauss_newton_step(
    problem: EnergyProblem,
    y: Float[Array, " m"],
    grad: Float[Array, " m"],
    damping: Float[Array, ""],
    linear_solver: str,
    cg_rtol: float,
    cg_max_steps: int | None,
) -> tuple[Float[Array, " m"], Float[Array, ""]]:
    """Solve (J^T J + damping I) d = -dE/dy / 2 at `y`.

    **Arguments:**

    - `problem`: a least-squares problem; `grad` is dE/dy at `y`.
    - `damping`: mu >= 0.
    - `linear_solver`: `"dense"` (materialise J^T J and use a Cholesky factorisation), `"cg"`
      (conjugate gradients on J^T J through Jacobian-vector products, never forming J), or
      `"auto"` (dense for M <= `DENSE_MAX_SIZE`).
    - `cg_rtol`, `cg_max_steps`: CG's relative tolerance and iteration limit (`None`: M).

    **Returns:** the step d and ||J d||^2, which the caller needs for the predicted decrease of
    the local model, ||r + J d||^2 = E + dE/dy . d + ||J d||^2.
    """
    size = y.shape[0]
    rhs = -0.5 * grad
    if linear_solver == "auto":
        linear_solver = "dense" if size <= DENSE_MAX_SIZE else "cg"

    if linear_solver == "dense":
        jacobian = jax.jacfwd(problem.residual)(y)
        normal_matrix = jacobian.T @ jacobian + damping * jnp.eye(size, dtype=y.dtype)
        factor = jax.scipy.linalg.cho_factor(normal_matrix)
        step = jax.scipy.linalg.cho_solve(factor, rhs)
        image = jacobian @ step
        return step, jnp.sum(image * image)

    _, jvp = jax.linearize(problem.residual, y)
    vjp = jax.linear_transpose(jvp, y)

    def normal_matvec(v):
        (gram_v,) = vjp(jvp(v))
        return gram_v + damping * v

    max_steps = size if cg_max_steps is None else cg_max_steps
    cg = lx.CG(rtol=cg_rtol, atol=0.0, max_steps=max_steps)
    # The solve never raises: CG stopping at its step limit still gives a descent direction, and
    # the caller's acceptance test guards the energy. This holds under reverse mode too.
    step = solve_symmetric(normal_matvec, rhs, cg, (lx.symmetric_tag, lx.positive_semidefinite_tag))
    image = jvp(step)
    return step, jnp.sum(image * image)
