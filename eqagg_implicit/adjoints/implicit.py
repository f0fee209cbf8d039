"""Implicit differentiation: the implicit function theorem at the returned minimiser."""

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array, Bool, Float

from .._linear_solve import solve_symmetric
from ..solvers.iterate import run_solver
from ._base import AbstractAdjoint, AdjointOutput, stop_gradient_tree

_LINEAR_SOLVERS = ("cg", "gmres", "bicgstab", "dense")


class ImplicitAdjoint(AbstractAdjoint):
    """Differentiate y* through its optimality condition dE/dy(y*, theta) = 0.

    By the implicit function theorem, dy*/dtheta = -H^{-1} d(dE/dy)/dtheta with H the Hessian
    d^2E/dy^2 at y*. The backward pass solves one linear system with H through Hessian-vector
    products (or a dense H for small M) and then takes one vector-Jacobian product. So memory
    does not grow with the number of solver iterations, and the solver may be anything. The
    forward solve runs in a `lax.while_loop` that stops at the solver's tolerance. The
    gradient is exact at a true stationary point and approximate at an unconverged one.

    The rule is a custom JVP whose linear solve lineax can transpose, so both forward mode
    (`jax.jvp`, `jax.jacfwd`) and reverse mode (`jax.grad`, `jax.jacrev`) work. Arrays that
    the potential closes over are hoisted into explicit inputs first, so they receive
    gradients too.

    Health check and fallback: with `probe=True` the forward pass also runs at most
    `probe_max_steps` iterations of the linear solver on H v = b for a fixed unit vector b. If
    the relative residual is still above `probe_tolerance`, or CG meets non-positive curvature
    (H not positive definite), the set is flagged in `Solution.backward_fallback`. Its backward
    pass then solves the damped least-squares system (H^2 + mu I) v = H g instead, which stays
    finite for singular and indefinite H. The decision is made in the forward pass because a
    JVP rule must stay linear in its tangents. The probe costs up to `probe_max_steps`
    Hessian-vector products per set; `probe=False` skips it and the fallback.

    **Arguments:**

    - `linear_solver`: `"cg"` (H symmetric positive definite; the cheapest), `"gmres"` or
      `"bicgstab"` (any non-singular H), or `"dense"` (materialise the M x M Hessian and use an
      LU solve; best for M up to a few hundred).
    - `rtol`, `atol`: tolerances of the iterative linear solvers (max-norm of the residual).
      `rtol` is raised to 10 sqrt(M) eps of y's dtype when smaller, because a float32 solve
      cannot get closer and would otherwise run to its step limit.
    - `max_steps`: iteration limit of the iterative linear solvers; `None` gives 2 M + 10.
    - `damping`: solve (H + damping I) v = g; a small positive value regularises a nearly
      singular H at the cost of a biased gradient.
    - `probe`: whether to run the forward health check that enables the fallback.
    - `probe_tolerance`: the relative probe residual above which the fallback is used.
    - `probe_max_steps`: the linear-solver iterations of the probe.
    - `fallback_damping`: mu in the fallback system.
    """

    linear_solver: str = eqx.field(static=True, default="cg")
    rtol: float = eqx.field(static=True, default=1e-6)
    atol: float = eqx.field(static=True, default=1e-9)
    max_steps: int | None = eqx.field(static=True, default=None)
    damping: float = eqx.field(static=True, default=0.0)
    probe: bool = eqx.field(static=True, default=True)
    probe_tolerance: float = eqx.field(static=True, default=0.1)
    probe_max_steps: int = eqx.field(static=True, default=20)
    fallback_damping: float = eqx.field(static=True, default=1e-6)

    def __check_init__(self):
        if self.linear_solver not in _LINEAR_SOLVERS:
            raise ValueError(
                f"ImplicitAdjoint got linear_solver={self.linear_solver!r}; choose one of {', '.join(_LINEAR_SOLVERS)}."
            )
        if not (self.rtol >= 0 and self.atol >= 0) or self.rtol + self.atol == 0:
            raise ValueError(
                f"ImplicitAdjoint needs rtol >= 0 and atol >= 0, not both 0; got rtol={self.rtol}, atol={self.atol}."
            )
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps <= 0):
            raise ValueError(f"ImplicitAdjoint needs max_steps to be a positive int or None, got {self.max_steps!r}.")
        if not self.damping >= 0:
            raise ValueError(f"ImplicitAdjoint needs damping >= 0, got {self.damping!r}.")
        if not self.fallback_damping > 0:
            raise ValueError(f"ImplicitAdjoint needs fallback_damping > 0, got {self.fallback_damping!r}.")
        if not isinstance(self.probe_max_steps, int) or self.probe_max_steps <= 0:
            raise ValueError(f"ImplicitAdjoint needs probe_max_steps to be a positive int, got {self.probe_max_steps!r}.")
        if not self.probe_tolerance > 0:
            raise ValueError(f"ImplicitAdjoint needs probe_tolerance > 0, got {self.probe_tolerance!r}.")

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

        # Every array the energy gradient depends on, closed-over ones included, becomes a leaf
        # of `grad_fn`, so the custom JVP below differentiates all of them.
        grad_fn = eqx.filter_closure_convert(problem.grad, y_star)
        if self.probe:
            backward_residual, fallback = self._probe(stop_gradient_tree(grad_fn), y_star)
        else:
            backward_residual, fallback = jnp.zeros((), y_star.dtype), jnp.zeros((), bool)
        y = _implicit_solution(y_star, grad_fn, fallback, adjoint=self)
        return AdjointOutput(
            y=y, state=state, stats=stats, backward_residual=backward_residual, backward_fallback=fallback
        )

    # Linear algebra at y*. `grad_fn(y)` is dE/dy; its JVP in y is a Hessian-vector product.

    def _linear_steps(self, size: int) -> int:
        return 2 * size + 10 if self.max_steps is None else self.max_steps

    def _tolerances(self, y) -> tuple[float, float]:
        # A relative residual below about sqrt(M) * eps is out of reach in y's precision. Asking for it
        # would make every solve run to its step limit.
        floor = 10.0 * float(np.sqrt(y.shape[0])) * float(jnp.finfo(y.dtype).eps)
        return max(self.rtol, floor), self.atol

    def _iterative_solver(self, y, max_steps: int):
        rtol, atol = self._tolerances(y)
        if self.linear_solver == "cg":
            return lx.CG(rtol=rtol, atol=atol, max_steps=max_steps)
        if self.linear_solver == "gmres":
            return lx.GMRES(rtol=rtol, atol=atol, max_steps=max_steps, restart=min(20, y.shape[0]))
        return lx.BiCGStab(rtol=rtol, atol=atol, max_steps=max_steps)

    def _solve_main(self, grad_fn, y, rhs, max_steps: int | None = None) -> Float[Array, " m"]:
        """Solve (H + damping I) v = rhs."""
        size = y.shape[0]
        if self.linear_solver == "dense":
            hessian = jax.jacfwd(grad_fn)(y) + self.damping * jnp.eye(size, dtype=y.dtype)
            return jnp.linalg.solve(hessian, rhs)

        def matvec(v):
            return jax.jvp(grad_fn, (y,), (v,))[1] + self.damping * v

        steps = self._linear_steps(size) if max_steps is None else max_steps
        tags = (lx.symmetric_tag, lx.positive_semidefinite_tag) if self.linear_solver == "cg" else (lx.symmetric_tag,)
        return solve_symmetric(matvec, rhs, self._iterative_solver(y, steps), tags)

    def _solve_fallback(self, grad_fn, y, rhs) -> Float[Array, " m"]:
        """Solve (H^2 + mu I) v = H rhs, the damped least-squares solution of H v = rhs."""
        mu = jnp.asarray(self.fallback_damping, y.dtype)
        if self.linear_solver == "dense":
            eigenvalues, eigenvectors = jnp.linalg.eigh(jax.jacfwd(grad_fn)(y))
            filtered = eigenvalues / (eigenvalues * eigenvalues + mu)
            return eigenvectors @ (filtered * (eigenvectors.T @ rhs))

        def hvp(v):
            return jax.jvp(grad_fn, (y,), (v,))[1]

        rtol, atol = self._tolerances(y)
        solver = lx.CG(rtol=rtol, atol=atol, max_steps=self._linear_steps(y.shape[0]))
        tags = (lx.symmetric_tag, lx.positive_semidefinite_tag)
        return solve_symmetric(lambda v: hvp(hvp(v)) + mu * v, hvp(rhs), solver, tags)

    def _probe(self, grad_fn, y) -> tuple[Float[Array, ""], Bool[Array, ""]]:
        probe = jax.random.normal(jax.random.key(0), y.shape, y.dtype)
        probe = probe / jnp.linalg.norm(probe)
        value = self._solve_main(grad_fn, y, probe, max_steps=self.probe_max_steps)
        applied = jax.jvp(grad_fn, (y,), (value,))[1] + self.damping * value
        residual = jnp.linalg.norm(applied - probe)
        # For a positive definite H both quadratic forms are positive for any non-zero v, so a
        # non-positive one proves that H is not positive definite, the case where CG breaks down.
        negative_curvature = (jnp.vdot(probe, value) <= 0) | (jnp.vdot(value, applied) <= 0)
        if self.linear_solver != "cg":
            negative_curvature = jnp.zeros((), bool)
        bad = ~(residual <= self.probe_tolerance) | negative_curvature | ~jnp.all(jnp.isfinite(value))
        return jnp.where(jnp.isfinite(residual), residual, jnp.inf).astype(y.dtype), bad


@eqx.filter_custom_jvp
def _implicit_solution(y_star, grad_fn, fallback, *, adjoint: ImplicitAdjoint):
    return y_star


@_implicit_solution.def_jvp
def _implicit_solution_jvp(primals, tangents, *, adjoint: ImplicitAdjoint):
    y_star, grad_fn, fallback = primals
    _, grad_fn_tangent, _ = tangents
    if grad_fn_tangent is None:
        return y_star, jnp.zeros_like(y_star)

    # Differentiating dE/dy(y*(theta), theta) = 0 gives H dy* = -(d(dE/dy)/dtheta) dtheta.
    _, rhs = eqx.filter_jvp(lambda fn: fn(y_star), (grad_fn,), (grad_fn_tangent,))
    rhs = -rhs
    if adjoint.probe:
        tangent = jax.lax.cond(
            fallback,
            lambda r: adjoint._solve_fallback(grad_fn, y_star, r),
            lambda r: adjoint._solve_main(grad_fn, y_star, r),
            rhs,
        )
    else:
        tangent = adjoint._solve_main(grad_fn, y_star, rhs)
    return y_star, tangent
