"""Behaviour of `EquilibriumAggregation` on single sets, masks and segments."""

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eqagg_implicit import (
    EquilibriumAggregation,
    GradientDescent,
    ImplicitAdjoint,
    L2Regulariser,
    LinearRegulariser,
    MaxPotential,
    MeanPotential,
    MedianPotential,
    ResNetPotential,
    SumOfSquaresResNetPotential,
    SumPotential,
    UnrolledAdjoint,
    ZeroRegulariser,
)

FEW = settings(max_examples=5, deadline=None)
MAX_SET_SIZE = 9


@eqx.filter_jit
def solve(layer, x, mask=None, **segments):
    """Compile each layer and input shape once, so that hypothesis examples reuse the compilation."""
    return layer.solve(x, mask, **segments)


def padded_set(seed, size, features):
    """Return a (MAX_SET_SIZE, features) array whose first `size` rows are a random set, and its mask."""
    x = jax.random.normal(jax.random.key(seed), (MAX_SET_SIZE, features))
    return x, jnp.arange(MAX_SET_SIZE) < size


def small_layer(seed=0, max_steps=8, adjoint=None):
    potential = ResNetPotential(3, 2, (8, 1), key=jax.random.key(seed))
    return EquilibriumAggregation(potential, L2Regulariser(2.0), GradientDescent(max_steps, 0.05), adjoint)


@FEW
@given(size=st.integers(1, 7), seed=st.integers(0, 2**16))
def test_layer_permutation_invariant(size, seed):
    layer = small_layer()
    x_key, permutation_key = jax.random.split(jax.random.key(seed))
    x = jax.random.normal(x_key, (size, 3))
    permuted = x[jax.random.permutation(permutation_key, size)]

    np.testing.assert_allclose(solve(layer, permuted).value, solve(layer, x).value, rtol=1e-5, atol=1e-6)


@FEW
@given(sizes=st.lists(st.integers(0, 5), min_size=1, max_size=4), seed=st.integers(0, 2**16))
def test_mask_padding_and_segments_agree(sizes, seed):
    layer = small_layer()
    rng = np.random.default_rng(seed)
    sets = [rng.normal(size=(n, 3)).astype(np.float32) for n in sizes]
    padded_size = 7

    unpadded = [np.asarray(solve(layer, jnp.asarray(s)).value) for s in sets]
    padded = []
    for s in sets:
        # Padding rows hold garbage, NaN included, and the mask must keep them out entirely.
        filler = np.full((padded_size - len(s), 3), np.nan, np.float32)
        mask = np.arange(padded_size) < len(s)
        padded.append(np.asarray(solve(layer, jnp.asarray(np.concatenate([s, filler])), jnp.asarray(mask)).value))

    # Rows in shuffled order, so the ids are unsorted.
    rows = np.concatenate(sets)
    ids = np.concatenate([np.full(n, i) for i, n in enumerate(sizes)]).astype(np.int32)
    order = rng.permutation(len(ids))
    segmented = solve(
        layer, jnp.asarray(rows[order]), segment_ids=jnp.asarray(ids[order]), num_segments=len(sizes)
    ).value

    assert segmented.shape == (len(sizes), 2)
    for i in range(len(sizes)):
        np.testing.assert_allclose(padded[i], unpadded[i], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(segmented[i], unpadded[i], rtol=1e-5, atol=1e-6)


def analytic_layer(potential, regulariser, max_steps, step_size, tolerance):
    solver = GradientDescent(max_steps, step_size, momentum=0.5, tolerance=tolerance)
    return EquilibriumAggregation(potential, regulariser, solver, ImplicitAdjoint())


@FEW
@given(size=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_mean_potential_recovers_mean(size, seed):
    x, mask = padded_set(seed, size, 3)
    # E = sum ||x_i - y||^2 has Hessian 2N I, so the step 0.25 / N contracts every coordinate.
    layer = analytic_layer(MeanPotential(), ZeroRegulariser(), 200, 0.25 / size, 1e-6)

    solution = solve(layer, x, mask)

    assert bool(solution.converged)
    np.testing.assert_allclose(solution.value, jnp.mean(x[:size], axis=0), atol=1e-5)


@FEW
@given(half=st.integers(0, 4), seed=st.integers(0, 2**16))
def test_median_potential_recovers_median(half, seed):
    size = 2 * half + 1
    x, mask = padded_set(seed, size, 2)
    smoothing = 1e-3
    # Near the minimiser the curvature is about 1 / s per element within s of it, so the step
    # stays below 3e-4 for stability and many cheap steps cover the distance to the median.
    layer = analytic_layer(MedianPotential(smoothing), ZeroRegulariser(), 20000, 2e-4, 1e-5)

    solution = solve(layer, x, mask)

    # With the smoothing s, the minimiser moves off the median by at most about s times the
    # imbalance of the nearby elements, so s * N bounds the error for any gap pattern.
    np.testing.assert_allclose(solution.value, jnp.median(x[:size], axis=0), atol=smoothing * size)


@FEW
@given(size=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_max_potential_within_log_sum_exp_bound(size, seed):
    x, mask = padded_set(seed, size, 3)
    # Below the maximum the potential's gradient grows like exp((x - y) / t), so the first
    # steps from y = 0 would overshoot, so sets below zero keep gradient descent on the flat side.
    x = x - 4.0
    temperature = 0.05
    # In float32 the exponent (x - y) / t carries rounding of about 1e-5, so the tolerance on
    # max |dE/dy| is 1e-4, which still pins y to within t * 1e-4.
    layer = analytic_layer(MaxPotential(temperature), LinearRegulariser(), 3000, 0.005, 1e-4)

    solution = solve(layer, x, mask)
    real = x[:size]
    maximum = jnp.max(real, axis=0)

    assert bool(solution.converged)
    np.testing.assert_allclose(solution.value, temperature * jax.nn.logsumexp(real / temperature, axis=0), atol=1e-4)
    assert bool(jnp.all(solution.value >= maximum - 1e-4))
    assert bool(jnp.all(solution.value <= maximum + temperature * np.log(size) + 1e-4))


@FEW
@given(size=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_sum_potential_recovers_sum(size, seed):
    x, mask = padded_set(seed, size, 3)
    # R(y) = ||y||^2 / 2 gives E = ||y||^2 / 2 - y . sum_i x_i, minimised at the sum.
    layer = analytic_layer(SumPotential(), L2Regulariser(0.5, learnable=False), 200, 0.5, 1e-6)

    solution = solve(layer, x, mask)

    assert bool(solution.converged)
    np.testing.assert_allclose(solution.value, jnp.sum(x[:size], axis=0), atol=1e-5)


def central_difference(fn, vector, eps=1e-6):
    """Return the central differences of a scalar `fn` along every coordinate, from one compiled call."""
    steps = eps * jnp.eye(vector.size, dtype=vector.dtype)
    return jax.jit(jax.vmap(lambda step: (fn(vector + step) - fn(vector - step)) / (2 * eps)))(steps)


@pytest.mark.parametrize("potential_class", [ResNetPotential, SumOfSquaresResNetPotential])
def test_unrolled_gradients_match_finite_differences(x64, potential_class):
    hidden_sizes = (6, 1) if potential_class is ResNetPotential else (6, 3)
    potential = potential_class(2, 2, hidden_sizes, key=jax.random.key(3))
    layer = EquilibriumAggregation(potential, L2Regulariser(2.0), GradientDescent(6, 0.05))
    x = jax.random.normal(jax.random.key(4), (3, 2))
    cotangent = jnp.array([0.7, -1.3])

    def loss_of_x(flat_x):
        return jnp.dot(cotangent, layer(flat_x.reshape(x.shape)))

    np.testing.assert_allclose(
        jax.jit(jax.grad(loss_of_x))(x.reshape(-1)), central_difference(loss_of_x, x.reshape(-1)), rtol=1e-6, atol=1e-9
    )

    dynamic, static = eqx.partition(layer.potential, eqx.is_inexact_array)
    flat, unravel = jax.flatten_util.ravel_pytree(dynamic)

    def loss_of_parameters(theta):
        potential_ = eqx.combine(unravel(theta), static)
        return jnp.dot(cotangent, eqx.tree_at(lambda l: l.potential, layer, potential_)(x))

    np.testing.assert_allclose(
        jax.jit(jax.grad(loss_of_parameters))(flat), central_difference(loss_of_parameters, flat), rtol=1e-6, atol=1e-9
    )


def test_aux_loss_is_mean_squared_gradient_norm(x64):
    layer = small_layer(max_steps=5)
    x = jax.random.normal(jax.random.key(5), (4, 3))
    solution = layer.solve(x)

    # Re-run gradient descent by hand and average ||dE/dy(y_t)||^2 over y_1..y_5.
    grad_energy = jax.grad(lambda y: layer.energy(y, x, jnp.ones(4, bool)))
    y = jnp.zeros(2)
    squared_norms = []
    for _ in range(5):
        y = y - layer.solver.step_size * grad_energy(y)
        squared_norms.append(jnp.sum(grad_energy(y) ** 2))

    np.testing.assert_allclose(solution.value, y, rtol=1e-12)
    np.testing.assert_allclose(solution.aux_loss, jnp.mean(jnp.stack(squared_norms)), rtol=1e-12)


def test_aux_loss_differentiable_when_unrolled(x64):
    layer = small_layer(max_steps=5, adjoint=UnrolledAdjoint())
    x = jax.random.normal(jax.random.key(6), (4, 3))

    def aux_of_x(flat_x):
        return layer.solve(flat_x.reshape(x.shape)).aux_loss

    gradient = jax.jit(jax.grad(aux_of_x))(x.reshape(-1))

    assert float(jnp.linalg.norm(gradient)) > 0
    np.testing.assert_allclose(gradient, central_difference(aux_of_x, x.reshape(-1)), rtol=1e-6, atol=1e-9)


def test_jit_vmap_grad_compose():
    layer = small_layer()
    x = jax.random.normal(jax.random.key(7), (3, 5, 3))
    mask = jnp.array([[True] * 5, [True, True, False, False, False], [False] * 5])

    @eqx.filter_jit
    def loss(layer, x, mask):
        return jnp.sum(jax.vmap(layer)(x, mask) ** 2)

    eager = jnp.stack([layer(x[i], mask[i]) for i in range(3)])
    grads = eqx.filter_grad(loss)(layer, x, mask)

    np.testing.assert_allclose(jax.vmap(layer)(x, mask), eager, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss(layer, x, mask), jnp.sum(eager**2), rtol=1e-5)
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(grads))


def test_output_dtype_follows_input():
    x = np.random.default_rng(0).normal(size=(4, 3))
    layer32 = small_layer()
    assert layer32(jnp.asarray(x, jnp.float32)).dtype == jnp.float32

    with jax.enable_x64(True):
        layer64 = small_layer()
        assert layer64(jnp.asarray(x, jnp.float64)).dtype == jnp.float64
        # A float32 layer widens to the float64 input.
        assert layer32(jnp.asarray(x, jnp.float64)).dtype == jnp.float64


@pytest.mark.parametrize("case", ["empty", "all-masked"])
def test_empty_set_returns_start_with_finite_gradients(case):
    layer = small_layer()
    if case == "empty":
        x, mask = jnp.zeros((0, 3)), None
    else:
        x, mask = jnp.full((4, 3), jnp.nan), jnp.zeros(4, bool)

    solution = layer.solve(x, mask)
    grads = eqx.filter_grad(lambda l: jnp.sum(l(x, mask)))(layer)

    np.testing.assert_array_equal(solution.value, jnp.zeros(2))
    assert int(solution.num_elements) == 0
    assert bool(solution.converged)
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(grads))
