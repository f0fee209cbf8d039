"""Tests of the baseline poolings: sum, mean, max, attention and PNA, beside Equilibrium Aggregation."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eqagg_implicit import EquilibriumAggregation, GradientDescent, SumOfSquaresResNetPotential
from eqagg_implicit.pooling import (
    AttentionPooling,
    MaxPooling,
    MeanPooling,
    PNAPooling,
    SumPooling,
    average_log_size,
)

FEATURES = 6


def build_poolings() -> dict:
    """One instance of every pooling, Equilibrium Aggregation included, on FEATURES-dimensional elements."""
    keys = jax.random.split(jax.random.key(0), 4)
    potential = SumOfSquaresResNetPotential(FEATURES, 4, (16, 4), key=keys[3])
    return {
        "sum": SumPooling(),
        "mean": MeanPooling(),
        "max": MaxPooling(),
        "attention": AttentionPooling(FEATURES, 8, 4, key=keys[0]),
        "attention_3_queries": AttentionPooling(FEATURES, 8, 2, num_queries=3, key=keys[1]),
        "pna": PNAPooling.from_set_sizes(FEATURES, 5, [2, 3, 7, 10], key=keys[2]),
        "equilibrium": EquilibriumAggregation(potential, solver=GradientDescent(max_steps=4)),
    }


POOLINGS = build_poolings()


@eqx.filter_jit
def pool_masked(pooling, x, mask):
    return pooling(x, mask)


@eqx.filter_jit
def pool_segments(pooling, x, segment_ids, num_segments, max_segment_size):
    return pooling(x, segment_ids=segment_ids, num_segments=num_segments, max_segment_size=max_segment_size)


def random_set(seed: int, size: int) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), (size, FEATURES))


@pytest.mark.parametrize("name", POOLINGS)
def test_order_invariance(name):
    pooling = POOLINGS[name]
    x = random_set(1, 9)
    mask = jnp.array([True, True, False, True, True, True, False, True, True])
    permutation = jax.random.permutation(jax.random.key(2), 9)

    original = pool_masked(pooling, x, mask)
    permuted = pool_masked(pooling, x[permutation], mask[permutation])

    np.testing.assert_allclose(permuted, original, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", POOLINGS)
def test_padding_rows_ignored(name):
    pooling = POOLINGS[name]
    x = random_set(3, 9)
    mask = jnp.arange(9) < 5
    other_padding = x.at[5:].set(100.0 * random_set(4, 4))

    np.testing.assert_allclose(
        pool_masked(pooling, other_padding, mask), pool_masked(pooling, x, mask), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("name", POOLINGS)
def test_segments_match_masked_sets(name):
    pooling = POOLINGS[name]
    sizes = [3, 0, 5, 1]
    x = random_set(5, sum(sizes))
    segment_ids = jnp.repeat(jnp.arange(4), jnp.array(sizes), total_repeat_length=sum(sizes))
    # Shuffle the rows, so segments need not be contiguous.
    order = jax.random.permutation(jax.random.key(6), sum(sizes))

    by_segment = pool_segments(pooling, x[order], segment_ids[order], 4, 5)

    assert by_segment.shape[0] == 4
    assert np.isfinite(by_segment[1]).all(), "the empty segment 1 is not finite"
    for s, size in enumerate(sizes):
        rows = x[np.asarray(segment_ids) == s]
        padded = jnp.concatenate([rows, random_set(7 + s, 9 - size)])
        by_mask = pool_masked(pooling, padded, jnp.arange(9) < size)
        np.testing.assert_allclose(by_segment[s], by_mask, rtol=1e-5, atol=1e-5, err_msg=f"segment {s}")


@pytest.mark.parametrize("name", POOLINGS)
def test_empty_set_finite_with_gradient(name):
    pooling = POOLINGS[name]
    x = random_set(8, 9)
    mask = jnp.zeros(9, bool)

    @eqx.filter_jit
    @eqx.filter_value_and_grad
    def loss(pooling_and_x):
        pooling, x = pooling_and_x
        return jnp.sum(pooling(x, mask) ** 2)

    value, grads = loss((pooling, x))

    assert np.isfinite(value)
    for leaf in jax.tree.leaves(grads):
        assert np.isfinite(leaf).all()


def test_simple_poolings_match_numpy():
    x = random_set(10, 7)
    mask = jnp.array([True, False, True, True, False, True, True])
    real = np.asarray(x)[np.asarray(mask)]

    np.testing.assert_allclose(SumPooling()(x, mask), real.sum(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(MeanPooling()(x, mask), real.mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(MaxPooling()(x, mask), real.max(0), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("pooling", [SumPooling(), MeanPooling(), MaxPooling()], ids=["sum", "mean", "max"])
def test_simple_pooling_empty_is_zero(pooling):
    x = -jnp.ones((3, FEATURES))

    np.testing.assert_array_equal(pooling(x, jnp.zeros(3, bool)), np.zeros(FEATURES))


def test_max_pooling_negative_elements():
    x = -jnp.arange(1.0, 7.0).reshape(3, 2)

    np.testing.assert_array_equal(MaxPooling()(x), np.array([-1.0, -2.0]))


def test_pna_matches_numpy():
    pooling = PNAPooling(FEATURES, 3, delta=1.3, key=jax.random.key(11))
    x = random_set(12, 4)
    values = np.asarray(x, np.float64)
    aggregated = np.concatenate(
        [values.mean(0), values.min(0), values.max(0), np.sqrt(values.var(0) + pooling.std_eps)]
    )
    log_size = np.log(4 + 1)
    scaled = np.concatenate([aggregated, aggregated * log_size / 1.3, aggregated * 1.3 / log_size])
    weight = np.asarray(pooling.linear.weight, np.float64)
    bias = np.asarray(pooling.linear.bias, np.float64)

    np.testing.assert_allclose(pooling(x), weight @ scaled + bias, rtol=1e-5, atol=1e-5)


def test_pna_empty_set_gives_bias():
    pooling = PNAPooling(FEATURES, 3, delta=1.0, key=jax.random.key(13))

    pooled = pooling(random_set(14, 2), jnp.zeros(2, bool))

    np.testing.assert_allclose(pooled, pooling.linear.bias, rtol=1e-6, atol=1e-6)


def test_average_log_size():
    assert average_log_size([1, 3]) == pytest.approx((np.log(2) + np.log(4)) / 2)
    assert PNAPooling.from_set_sizes(2, 2, np.array([4, 4]), key=jax.random.key(0)).delta == pytest.approx(np.log(5))


def test_average_log_size_rejects_bad_sizes():
    with pytest.raises(ValueError, match="empty"):
        average_log_size([])
    with pytest.raises(ValueError, match="non-negative"):
        average_log_size([3, -1])
    with pytest.raises(ValueError, match="delta"):
        average_log_size([0, 0])


def test_pna_rejects_bad_delta():
    with pytest.raises(ValueError, match="delta > 0"):
        PNAPooling(2, 2, delta=0.0, key=jax.random.key(0))


def test_attention_matches_single_head_formula():
    pooling = AttentionPooling(FEATURES, 4, 1, key=jax.random.key(15))
    x = random_set(16, 5)

    def linear(layer, inputs):
        return np.asarray(inputs, np.float64) @ np.asarray(layer.weight, np.float64).T + np.asarray(layer.bias)

    seed = np.asarray(pooling.seeds[0], np.float64)
    query = linear(pooling.query_projection, seed)
    keys = linear(pooling.key_projection, x)
    values = linear(pooling.value_projection, x)
    logits = keys @ query / np.sqrt(4)
    weights = np.exp(logits - logits.max())
    weights /= weights.sum()
    hidden = seed + linear(pooling.output_projection, weights @ values)
    expected = hidden + np.maximum(linear(pooling.feedforward, hidden), 0)

    np.testing.assert_allclose(pooling(x), expected, rtol=1e-5, atol=1e-5)


def test_attention_rejects_indivisible_heads():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        AttentionPooling(4, 10, 4, key=jax.random.key(0))


def test_attention_rejects_wrong_input_size():
    pooling = AttentionPooling(4, 8, key=jax.random.key(0))

    with pytest.raises(ValueError, match="input_size=4"):
        pooling(jnp.ones((3, 5)))


def test_attention_output_shape_with_queries():
    pooling = AttentionPooling(FEATURES, 8, 2, num_queries=3, key=jax.random.key(0))

    assert pooling(random_set(0, 4)).shape == (8,)
    assert pooling(random_set(0, 4), segment_ids=jnp.array([0, 1, 1, 0]), num_segments=2).shape == (2, 8)
