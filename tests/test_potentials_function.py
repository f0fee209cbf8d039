"""`FunctionPotential`: a plain function as the potential of the equilibrium layer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eqagg_implicit import (
    EquilibriumAggregation,
    FunctionPotential,
    GradientDescent,
    ImplicitAdjoint,
    JacobianFreeAdjoint,
    MeanPotential,
    TruncatedAdjoint,
    UnrolledAdjoint,
    ZeroRegulariser,
)


def test_function_potential_matches_builtin():
    x = jax.random.normal(jax.random.key(0), (5, 3))
    solver = GradientDescent(50, 0.05)
    wrapped = EquilibriumAggregation(FunctionPotential(lambda x, y: jnp.sum((x - y) ** 2)), ZeroRegulariser(), solver)
    builtin = EquilibriumAggregation(MeanPotential(), ZeroRegulariser(), solver)

    np.testing.assert_allclose(wrapped(x), builtin(x), rtol=1e-6)


def test_function_potential_output_size_from_layer():
    potential = FunctionPotential(lambda x, y: jnp.sum((y - jnp.sum(x)) ** 2))
    layer = EquilibriumAggregation(potential, ZeroRegulariser(), GradientDescent(100, 0.1), output_size=4)
    x = jnp.ones((2, 3))

    # Each of the 4 coordinates minimises 2 (y - 3)^2, so all equal 3.
    np.testing.assert_allclose(layer(x), jnp.full(4, 3.0), rtol=1e-5)


def test_function_potential_input_size_checked():
    layer = EquilibriumAggregation(FunctionPotential(lambda x, y: jnp.sum((x - y) ** 2), input_size=3))

    with pytest.raises(ValueError, match="2 features per element but the layer was built for 3"):
        layer(jnp.ones((4, 2)))


@pytest.mark.parametrize(
    ("adjoint", "fraction"),
    [(UnrolledAdjoint(), 1.0), (ImplicitAdjoint(), 1.0), (JacobianFreeAdjoint(), 0.4), (TruncatedAdjoint(3), 0.784)],
    ids=["unrolled", "implicit", "jacobian-free", "truncated"],
)
def test_closure_over_traced_array_gets_gradient(adjoint, fraction):
    x = jax.random.normal(jax.random.key(1), (4, 2))

    def loss(scale):
        potential = FunctionPotential(lambda x, y: jnp.sum((y - scale * x) ** 2))
        solver = GradientDescent(60, 0.05, tolerance=1e-6)
        return jnp.sum(EquilibriumAggregation(potential, ZeroRegulariser(), solver, adjoint)(x))

    gradient = jax.grad(loss)(jnp.asarray(1.5))

    # y* = scale * mean(x), so the exact gradient is sum(mean(x)). The Hessian is 2N I = 8 I and
    # the step 0.05, so one step contracts by 1 - 0.4: the Jacobian-free mode returns 0.4 of the
    # exact gradient and three differentiated steps return 1 - 0.6^3 = 0.784 of it.
    np.testing.assert_allclose(gradient, fraction * jnp.sum(jnp.mean(x, axis=0)), rtol=1e-4)
