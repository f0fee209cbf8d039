"""Gradients of every (solver, differentiation mode) pair against an implicit-function-theorem reference.

The reference is computed here from dense matrices only: Newton's method for y*, then
dy*/dtheta = -H^{-1} d(dE/dy)/dtheta with H = jax.hessian of the energy at y*. All checks run in
float64 so that a relative error of 1e-6 measures the method, not rounding.
"""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import available_solver_classes, make_solver
from jax.flatten_util import ravel_pytree

from eqagg_implicit import (
    EquilibriumAggregation,
    ImplicitAdjoint,
    JacobianFreeAdjoint,
    L2Regulariser,
    ResNetPotential,
    SumOfSquaresResNetPotential,
    TruncatedAdjoint,
    UnrolledAdjoint,
)

INPUT_SIZE, OUTPUT_SIZE, SET_SIZE = 2, 3, 4
# softplus(lambda) = 5 makes the regulariser's Hessian 10 I, which dominates the small
# curvature of a freshly initialised potential, so the energy is strongly convex in y.
L2_WEIGHT = 5.0
MAX_STEPS = 300
TOLERANCE = 1e-9
STEP_SIZE = 0.02

EXACT_MODES = {
    "implicit-cg": lambda: ImplicitAdjoint("cg", rtol=1e-12, atol=1e-14),
    "implicit-gmres": lambda: ImplicitAdjoint("gmres", rtol=1e-12, atol=1e-14),
    "implicit-bicgstab": lambda: ImplicitAdjoint("bicgstab", rtol=1e-12, atol=1e-14),
    "implicit-dense": lambda: ImplicitAdjoint("dense"),
    "unrolled": UnrolledAdjoint,
}
APPROXIMATE_MODES = {
    "jacobian-free": JacobianFreeAdjoint,
    "truncated": lambda: TruncatedAdjoint(num_backprop_steps=5),
}
SOLVERS = available_solver_classes()


def make_problem(potential_class, seed):
    """Return (potential, regulariser, x, cotangent) for one random strongly convex problem."""
    potential_key, x_key, cotangent_key = jax.random.split(jax.random.key(seed), 3)
    hidden_sizes = (8, 8, 1) if potential_class is ResNetPotential else (8, 8, 4)
    potential = potential_class(INPUT_SIZE, OUTPUT_SIZE, hidden_sizes, key=potential_key)
    regulariser = L2Regulariser(L2_WEIGHT)
    x = jax.random.normal(x_key, (SET_SIZE, INPUT_SIZE))
    cotangent = jax.random.normal(cotangent_key, (OUTPUT_SIZE,))
    return potential, regulariser, x, cotangent


def flatten(potential, regulariser, x):
    """Return the flat vector of every differentiable array and the function that rebuilds them."""
    dynamic, static = eqx.partition((potential, regulariser, x), eqx.is_inexact_array)
    flat, unravel = ravel_pytree(dynamic)
    return flat, lambda vector: eqx.combine(unravel(vector), static)


def reference_gradient(potential, regulariser, x, cotangent):
    """Return d(cotangent . y*)/dtheta from dense linear algebra, independent of the library's solvers."""
    flat, rebuild = flatten(potential, regulariser, x)

    def energy(y, theta):
        potential_, regulariser_, x_ = rebuild(theta)
        return regulariser_(y) + jnp.sum(jax.vmap(potential_, in_axes=(0, None))(x_, y))

    @jax.jit
    def newton_and_gradient(theta):
        def newton_step(y, _):
            return y - jnp.linalg.solve(jax.hessian(energy)(y, theta), jax.grad(energy)(y, theta)), None

        y, _ = jax.lax.scan(newton_step, jnp.zeros(OUTPUT_SIZE), None, length=30)
        hessian = jax.hessian(energy)(y, theta)
        mixed = jax.jacobian(jax.grad(energy), argnums=1)(y, theta)
        return -mixed.T @ jnp.linalg.solve(hessian, cotangent), y, jax.grad(energy)(y, theta)

    gradient, y, residual = newton_and_gradient(flat)
    assert float(jnp.max(jnp.abs(residual))) < 1e-12
    return gradient, y


def layer_gradient(solver, adjoint, potential, regulariser, x, cotangent):
    """Return the layer's d(cotangent . y)/dtheta and its `Solution`, from one compiled call."""
    flat, rebuild = flatten(potential, regulariser, x)

    def loss(theta):
        potential_, regulariser_, x_ = rebuild(theta)
        solution = EquilibriumAggregation(potential_, regulariser_, solver, adjoint).solve(x_)
        return jnp.dot(cotangent, solution.value), solution

    gradient, solution = jax.jit(jax.grad(loss, has_aux=True))(flat)
    return gradient, solution


def relative_error(actual, expected):
    return float(jnp.linalg.norm(actual - expected) / jnp.linalg.norm(expected))


def cosine_similarity(a, b):
    return float(jnp.dot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))


def solve_or_reject(solver, adjoint, potential, regulariser, x, cotangent):
    """Return the layer gradient, or None when the pair is rejected for a documented reason."""
    unrollable = isinstance(adjoint, (UnrolledAdjoint, TruncatedAdjoint))
    if unrollable and not solver.differentiable_steps:
        with pytest.raises(ValueError, match="cannot be unrolled"):
            layer_gradient(solver, adjoint, potential, regulariser, x, cotangent)
        return None
    try:
        return layer_gradient(solver, adjoint, potential, regulariser, x, cotangent)
    except TypeError as error:
        # Least-squares solvers reject energies that are not sums of squares.
        assert "sum of squares" in str(error)
        return None


def pairs(modes, modes_for_every_solver):
    """Return (solver class, mode) pairs: every mode with gradient descent, some with the rest.

    The implicit and Jacobian-free rules read only y* and the energy, never the solver's steps,
    so with a converged y* their gradient is the same for every solver. The unrolled mode
    differentiates the solver's own steps and runs with every solver. Compiling one pair costs
    about 5 to 10 s of CPU time, which is why the full product is not run.
    """
    result = []
    for solver_class in SOLVERS:
        for mode in sorted(modes):
            if solver_class.__name__ == "GradientDescent" or mode in modes_for_every_solver:
                result.append(pytest.param(solver_class, mode, id=f"{solver_class.__name__}-{mode}"))
    return result


@functools.cache
def cached_reference(seed):
    potential, regulariser, x, cotangent = make_problem(SumOfSquaresResNetPotential, seed)
    expected, y_star = reference_gradient(potential, regulariser, x, cotangent)
    return potential, regulariser, x, cotangent, expected, y_star


@pytest.mark.parametrize(("solver_class", "mode"), pairs(EXACT_MODES, ("unrolled",)))
def test_exact_modes_match_reference(x64, solver_class, mode):
    potential, regulariser, x, cotangent, expected, y_star = cached_reference(0)
    solver = make_solver(solver_class, MAX_STEPS, TOLERANCE, STEP_SIZE)

    outcome = solve_or_reject(solver, EXACT_MODES[mode](), potential, regulariser, x, cotangent)
    if outcome is None:
        return
    gradient, solution = outcome

    assert bool(solution.converged), f"{solver_class.__name__} did not converge: residual {solution.residual}"
    np.testing.assert_allclose(solution.value, y_star, rtol=0, atol=1e-9)
    assert not bool(solution.backward_fallback)
    assert relative_error(gradient, expected) <= 1e-6


@pytest.mark.parametrize(("solver_class", "mode"), pairs(APPROXIMATE_MODES, ()))
def test_approximate_modes_point_along_reference(x64, solver_class, mode):
    potential, regulariser, x, cotangent, expected, _ = cached_reference(0)
    solver = make_solver(solver_class, MAX_STEPS, TOLERANCE, STEP_SIZE)

    outcome = solve_or_reject(solver, APPROXIMATE_MODES[mode](), potential, regulariser, x, cotangent)
    if outcome is None:
        return
    gradient, solution = outcome

    assert bool(solution.converged)
    assert bool(jnp.all(jnp.isfinite(gradient)))
    assert cosine_similarity(gradient, expected) >= 0.9
