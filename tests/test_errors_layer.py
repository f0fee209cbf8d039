"""Every invalid input or setting raises a `ValueError` that names the bad value."""

import re

import equinox as eqx
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
    L2Regulariser,
    MaxPotential,
    MedianPotential,
    ResNetPotential,
    SolveResult,
    TruncatedAdjoint,
)


def small_layer(adjoint=None):
    potential = ResNetPotential(3, 2, (8, 1), key=jax.random.key(0))
    return EquilibriumAggregation(potential, L2Regulariser(2.0), GradientDescent(5, 0.05), adjoint)


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((4,), "got shape (4,)"), ((2, 4, 3), "got shape (2, 4, 3)"), ((4, 5), "5 features per element")],
)
def test_wrong_rank_or_size_raises(shape, expected):
    with pytest.raises(ValueError, match=re.escape(expected)):
        small_layer()(jnp.zeros(shape))


def test_integer_input_raises():
    with pytest.raises(ValueError, match="dtype int32"):
        small_layer()(jnp.zeros((4, 3), jnp.int32))


def test_float32_input_to_float64_layer_raises():
    with jax.enable_x64(True):
        layer = small_layer()
        with pytest.raises(ValueError, match="dtype float32 but the layer has float64"):
            layer(jnp.zeros((4, 3), jnp.float32))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_element_raises_eagerly(bad):
    x = jnp.zeros((4, 3)).at[2, 1].set(bad)

    with pytest.raises(ValueError, match=re.escape("index (2, 1)")):
        small_layer()(x)


def test_nonfinite_element_masked_out_is_accepted():
    x = jnp.zeros((4, 3)).at[2, 1].set(jnp.nan)
    mask = jnp.array([True, True, False, True])

    assert bool(jnp.all(jnp.isfinite(small_layer()(x, mask))))


def test_nonfinite_element_under_jit_reports_status():
    layer = small_layer()
    x = jnp.ones((4, 3)).at[2, 1].set(jnp.nan)

    solution = eqx.filter_jit(layer.solve)(x)

    assert int(solution.result) == SolveResult.NONFINITE
    assert not bool(solution.converged)
    assert bool(jnp.all(jnp.isfinite(solution.value)))


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda: GradientDescent(max_steps=0), "max_steps to be a positive int, got 0"),
        (lambda: GradientDescent(max_steps=-3), "got -3"),
        (lambda: GradientDescent(max_steps=2.5), "got 2.5"),
        (lambda: GradientDescent(step_size=0.0), "step_size > 0, got 0.0"),
        (lambda: GradientDescent(step_size=-0.1), "got -0.1"),
        (lambda: GradientDescent(momentum=1.0), "momentum in [0, 1), got 1.0"),
        (lambda: GradientDescent(momentum=-0.2), "got -0.2"),
        (lambda: GradientDescent(tolerance=-1.0), "tolerance >= 0, got -1.0"),
        (lambda: ImplicitAdjoint("lu"), "linear_solver='lu'"),
        (lambda: ImplicitAdjoint(rtol=-1.0), "rtol=-1.0"),
        (lambda: ImplicitAdjoint(rtol=0.0, atol=0.0), "rtol=0.0, atol=0.0"),
        (lambda: ImplicitAdjoint(max_steps=0), "got 0"),
        (lambda: ImplicitAdjoint(damping=-1.0), "damping >= 0, got -1.0"),
        (lambda: ImplicitAdjoint(probe_tolerance=0.0), "probe_tolerance > 0, got 0.0"),
        (lambda: ImplicitAdjoint(fallback_damping=0.0), "fallback_damping > 0, got 0.0"),
        (lambda: TruncatedAdjoint(0), "num_backprop_steps >= 1, got 0"),
        (lambda: TruncatedAdjoint(-2), "got -2"),
        (lambda: JacobianFreeAdjoint(step_size=0.0), "step_size > 0 or None, got 0.0"),
        (lambda: L2Regulariser(0.0), "weight > 0, got 0.0"),
        (lambda: MedianPotential(0.0), "smoothing > 0, got 0.0"),
        (lambda: MaxPotential(-1.0), "temperature > 0, got -1.0"),
        (lambda: FunctionPotential(3.0), "callable `fn(x, y)`, got float"),
        (lambda: FunctionPotential(jnp.dot, output_size=0), "output_size to be a positive int or None, got 0"),
        (lambda: ResNetPotential(3, 2, (8, 4), key=jax.random.key(0)), "hidden_sizes=[8, 4]"),
        (lambda: ResNetPotential(0, 2, key=jax.random.key(0)), "input_size=0"),
    ],
)
def test_invalid_setting_raises(build, expected):
    with pytest.raises(ValueError, match=re.escape(expected)):
        build()


def test_layer_output_size_mismatch_raises():
    potential = ResNetPotential(3, 2, (8, 1), key=jax.random.key(0))

    with pytest.raises(ValueError, match=re.escape("output_size=3 disagrees with the potential's output_size=2")):
        EquilibriumAggregation(potential, output_size=3)


def test_function_potential_vector_output_raises():
    layer = EquilibriumAggregation(FunctionPotential(lambda x, y: x * y))

    with pytest.raises(ValueError, match=re.escape("must return a scalar, got shape (3,)")):
        layer(jnp.ones((2, 3)))


@pytest.mark.parametrize(
    ("mask", "expected"),
    [
        (jnp.ones(3, bool), "shape (4,), one flag per row of `x`, got shape (3,)"),
        (jnp.ones((4, 1), bool), "got shape (4, 1)"),
        (jnp.ones(4, jnp.float32), "boolean (True for real elements), got dtype float32"),
    ],
)
def test_bad_mask_raises(mask, expected):
    with pytest.raises(ValueError, match=re.escape(expected)):
        small_layer()(jnp.zeros((4, 3)), mask)


@pytest.mark.parametrize(
    ("ids", "expected"),
    [([0, 1, 3, 1], "lie in [0, 3), got values from 0 to 3"), ([0, -1, 2, 1], "got values from -1 to 2")],
)
def test_segment_ids_out_of_range_raise(ids, expected):
    with pytest.raises(ValueError, match=re.escape(expected)):
        small_layer()(jnp.zeros((4, 3)), segment_ids=jnp.array(ids), num_segments=3)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"segment_ids": jnp.zeros(4, jnp.int32)}, "`num_segments` is required"),
        ({"segment_ids": jnp.zeros(4, jnp.int32), "num_segments": 0}, "positive Python int, got 0"),
        ({"segment_ids": jnp.zeros(3, jnp.int32), "num_segments": 1}, "shape (4,), one id per row of `x`, got shape (3,)"),
        ({"segment_ids": jnp.zeros(4), "num_segments": 1}, "integers, got dtype float32"),
        ({"num_segments": 2}, "only apply together with `segment_ids`"),
        ({"segment_ids": jnp.zeros(4, jnp.int32), "num_segments": 1, "max_segment_size": 0}, "got 0"),
    ],
)
def test_bad_segment_arguments_raise(kwargs, expected):
    with pytest.raises(ValueError, match=re.escape(expected)):
        small_layer()(jnp.zeros((4, 3)), **kwargs)


def test_mask_with_segment_ids_raises():
    with pytest.raises(ValueError, match="either `mask` or `segment_ids`"):
        small_layer()(jnp.zeros((4, 3)), jnp.ones(4, bool), segment_ids=jnp.zeros(4, jnp.int32), num_segments=1)


def test_segment_overflow_raises_eagerly():
    ids = jnp.array([0, 0, 0, 1])

    with pytest.raises(ValueError, match=re.escape("a segment has 3 rows but `max_segment_size` is 2")):
        small_layer()(jnp.ones((4, 3)), segment_ids=ids, num_segments=2, max_segment_size=2)


def test_segment_overflow_under_jit_reports_status():
    layer = small_layer()
    ids = jnp.array([0, 1, 0, 0])

    @eqx.filter_jit
    def solve(x, ids):
        return layer.solve(x, segment_ids=ids, num_segments=2, max_segment_size=2)

    solution = solve(jnp.ones((4, 3)), ids)

    assert int(solution.result[0]) == SolveResult.SEGMENT_OVERFLOW
    assert not bool(solution.converged[0])
    assert int(solution.result[1]) != SolveResult.SEGMENT_OVERFLOW


def test_nonfinite_set_keeps_batch_gradients_finite():
    layer = small_layer(adjoint=ImplicitAdjoint())
    good = jax.random.normal(jax.random.key(3), (4, 3))
    bad = good.at[1, 0].set(jnp.nan)

    def loss(layer, xs):
        return jnp.sum(jax.vmap(layer)(xs) ** 2)

    batch_grads = eqx.filter_grad(loss)(layer, jnp.stack([good, bad]))
    alone_grads = eqx.filter_grad(loss)(layer, good[None])
    solutions = jax.vmap(layer.solve)(jnp.stack([good, bad]))

    assert int(solutions.result[1]) == SolveResult.NONFINITE
    assert int(solutions.num_elements[1]) == 4
    for batch_leaf, alone_leaf in zip(jax.tree.leaves(batch_grads), jax.tree.leaves(alone_grads)):
        assert bool(jnp.all(jnp.isfinite(batch_leaf)))
        np.testing.assert_allclose(batch_leaf, alone_leaf, rtol=1e-5, atol=1e-7)
