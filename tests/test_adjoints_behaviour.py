"""Differentiation modes under JAX transformations, with closures, degenerate Hessians and failing sets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eqagg_implicit import (
    EquilibriumAggregation,
    FunctionPotential,
    GradientDescent,
    ImplicitAdjoint,
    L2Regulariser,
    MeanPotential,
    SolveResult,
    UnrolledAdjoint,
    ZeroRegulariser,
)


def quadratic_layer(theta, adjoint, max_steps=200, tolerance=1e-10):
    """A layer with F(x, y) = ||y - A(theta) x||^2 + theta_2 ||y||^4 / 4 that closes over `theta`."""

    def potential(x, y):
        target = jnp.array([theta[0] * x[0] + x[1], theta[1] * x[1]])
        return jnp.sum((y - target) ** 2) + 0.25 * theta[2] * jnp.sum(y * y) ** 2

    return EquilibriumAggregation(
        FunctionPotential(potential, input_size=2, output_size=2),
        L2Regulariser(1.0, learnable=False),
        GradientDescent(max_steps, 0.05, tolerance=tolerance),
        adjoint,
    )


THETA = (0.8, -1.2, 0.3)


def test_implicit_grad_through_closure_matches_unrolled(x64):
    x = jax.random.normal(jax.random.key(0), (4, 2))

    def loss(theta, adjoint):
        return jnp.sum(quadratic_layer(theta, adjoint)(x) ** 2)

    implicit = jax.jit(jax.grad(lambda t: loss(t, ImplicitAdjoint(rtol=1e-12, atol=1e-14))))(jnp.array(THETA))
    unrolled = jax.jit(jax.grad(lambda t: loss(t, UnrolledAdjoint())))(jnp.array(THETA))

    assert float(jnp.linalg.norm(implicit)) > 0
    np.testing.assert_allclose(implicit, unrolled, rtol=1e-7, atol=1e-12)


def test_implicit_jacfwd_equals_jacrev(x64):
    x = jax.random.normal(jax.random.key(1), (3, 2))

    def aggregate(theta):
        return quadratic_layer(theta, ImplicitAdjoint(rtol=1e-12, atol=1e-14))(x)

    forward = jax.jit(jax.jacfwd(aggregate))(jnp.array(THETA))
    reverse = jax.jit(jax.jacrev(aggregate))(jnp.array(THETA))

    assert forward.shape == (2, 3)
    np.testing.assert_allclose(forward, reverse, rtol=1e-9, atol=1e-12)


def test_implicit_grad_of_vmap_matches_loop(x64):
    xs = jax.random.normal(jax.random.key(2), (3, 4, 2))
    masks = jnp.array([[True] * 4, [True, True, False, False], [True, False, False, False]])

    def batched_loss(theta):
        layer = quadratic_layer(theta, ImplicitAdjoint(rtol=1e-12, atol=1e-14))
        return jnp.sum(jax.vmap(layer)(xs, masks) ** 2)

    def looped_loss(theta):
        layer = quadratic_layer(theta, ImplicitAdjoint(rtol=1e-12, atol=1e-14))
        return sum(jnp.sum(layer(xs[i], masks[i]) ** 2) for i in range(3))

    np.testing.assert_allclose(
        jax.jit(jax.grad(batched_loss))(jnp.array(THETA)), jax.jit(jax.grad(looped_loss))(jnp.array(THETA)), rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize("linear_solver", ["cg", "dense"])
def test_singular_hessian_uses_fallback(x64, linear_solver):
    # F ignores y[1] and R = 0, so the Hessian is diag(2N, 0).
    layer = EquilibriumAggregation(
        FunctionPotential(lambda x, y: (y[0] - x[0]) ** 2, output_size=2),
        ZeroRegulariser(),
        GradientDescent(100, 0.1, tolerance=1e-10),
        ImplicitAdjoint(linear_solver),
    )
    x = jax.random.normal(jax.random.key(3), (4, 1))

    solution = layer.solve(x)
    gradient = jax.grad(lambda x_: layer(x_)[0])(x)

    assert bool(solution.converged)
    assert bool(solution.backward_fallback)
    assert bool(jnp.all(jnp.isfinite(gradient)))
    # In the well-posed coordinate the damped fallback still returns d mean / d x_i = 1 / N.
    np.testing.assert_allclose(gradient[:, 0], 0.25, rtol=1e-5)


def test_indefinite_hessian_uses_fallback(x64):
    # At x = 0 the point y = 0 is stationary, with Hessian 2N diag(1, -3, -3, -3): a saddle.
    scales = jnp.array([1.0, -3.0, -3.0, -3.0])
    layer = EquilibriumAggregation(
        FunctionPotential(lambda x, y: jnp.sum(scales * (y - x) ** 2), output_size=4),
        ZeroRegulariser(),
        GradientDescent(10, 0.05, tolerance=1e-10),
        ImplicitAdjoint("cg"),
    )
    x = jnp.zeros((3, 4))

    solution = layer.solve(x)
    jacobian = jax.jacrev(lambda x_: layer(x_))(x)

    assert bool(solution.converged)
    assert bool(solution.backward_fallback)
    assert bool(jnp.all(jnp.isfinite(jacobian)))
    # The stationary point is the mean for every sign of curvature, so dy*/dx_i = I / N.
    np.testing.assert_allclose(jacobian[:, 0, :], jnp.eye(4) / 3, atol=1e-4)


@pytest.mark.parametrize("adjoint", [ImplicitAdjoint(), UnrolledAdjoint()], ids=["implicit", "unrolled"])
def test_diverging_set_leaves_others_intact(adjoint):
    # Gradient descent on ||y - x_i||^2 summed over N elements is stable for step * 2N < 2: the
    # sets of 1 and 2 elements converge, the set of 8 overflows float32.
    layer = EquilibriumAggregation(
        MeanPotential(), L2Regulariser(1e-3), GradientDescent(150, 0.3, tolerance=1e-5), adjoint
    )
    xs = jax.random.normal(jax.random.key(4), (3, 8, 2))
    masks = jnp.arange(8)[None, :] < jnp.array([1, 2, 8])[:, None]

    solutions = jax.vmap(layer.solve)(xs, masks)
    alone = [layer.solve(xs[i], masks[i]) for i in range(2)]

    assert int(solutions.result[2]) == SolveResult.NONFINITE
    assert not bool(solutions.converged[2])
    assert bool(jnp.all(jnp.isfinite(solutions.value[2])))
    for i in range(2):
        assert bool(solutions.converged[i])
        np.testing.assert_allclose(solutions.value[i], alone[i].value, rtol=1e-6)

    def loss_of_good_sets(layer, xs):
        solutions = jax.vmap(layer.solve)(xs, masks)
        return jnp.sum(jnp.where(solutions.converged[:, None], solutions.value, 0.0))

    grads = jax.grad(loss_of_good_sets, argnums=(0, 1))(layer, xs)
    assert bool(jnp.all(jnp.isfinite(grads[1][:2])))
    assert bool(jnp.isfinite(grads[0].regulariser.raw_weight))


def test_unconverged_solve_is_flagged():
    layer = EquilibriumAggregation(
        MeanPotential(), ZeroRegulariser(), GradientDescent(3, 0.01, tolerance=1e-6), ImplicitAdjoint()
    )
    x = jax.random.normal(jax.random.key(5), (5, 2)) + 3.0

    solution = layer.solve(x)

    assert not bool(solution.converged)
    assert int(solution.result) == SolveResult.MAX_STEPS_REACHED
    assert float(solution.residual) > 1e-6
    assert int(solution.num_steps) == 3


def test_jacobian_free_reads_solver_step_size_eagerly():
    from eqagg_implicit import AndersonAcceleration, JacobianFreeAdjoint, ResNetPotential

    potential = ResNetPotential(3, 2, (8, 1), key=jax.random.key(0))
    layer = EquilibriumAggregation(
        potential, L2Regulariser(2.0), AndersonAcceleration(max_steps=20), JacobianFreeAdjoint()
    )
    x = jax.random.normal(jax.random.key(1), (4, 3))

    grad = jax.grad(lambda a: jnp.sum(layer(a)))(x)

    assert bool(jnp.all(jnp.isfinite(grad)))
