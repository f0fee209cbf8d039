"""`segments_to_padded`: ragged rows with segment ids to one padded array per set."""

import jax
import jax.numpy as jnp
import numpy as np

from eqagg_implicit import segments_to_padded


def test_unsorted_ids_keep_row_order():
    x = jnp.arange(12.0).reshape(6, 2)
    ids = jnp.array([2, 0, 2, 1, 0, 2])

    padded, mask, sizes = segments_to_padded(x, ids, num_segments=3, max_segment_size=3)

    np.testing.assert_array_equal(sizes, [2, 1, 3])
    np.testing.assert_array_equal(mask, [[True, True, False], [True, False, False], [True, True, True]])
    np.testing.assert_array_equal(padded[0, :2], x[jnp.array([1, 4])])
    np.testing.assert_array_equal(padded[1, :1], x[jnp.array([3])])
    np.testing.assert_array_equal(padded[2], x[jnp.array([0, 2, 5])])
    np.testing.assert_array_equal(padded[~mask], 0.0)


def test_overflow_rows_dropped_but_counted():
    x = jnp.arange(5.0)[:, None]
    ids = jnp.array([0, 0, 0, 1, 0])

    padded, mask, sizes = segments_to_padded(x, ids, num_segments=2, max_segment_size=2)

    np.testing.assert_array_equal(sizes, [4, 1])
    np.testing.assert_array_equal(padded[0, :, 0], [0.0, 1.0])
    np.testing.assert_array_equal(mask.sum(axis=1), [2, 1])


def test_out_of_range_ids_dropped():
    x = jnp.arange(4.0)[:, None]
    ids = jnp.array([0, 5, -1, 1])

    padded, mask, sizes = segments_to_padded(x, ids, num_segments=2, max_segment_size=2)

    np.testing.assert_array_equal(sizes, [1, 1])
    np.testing.assert_array_equal(padded[:, 0, 0], [0.0, 3.0])
    assert int(mask.sum()) == 2


def test_padding_is_differentiable_and_jittable():
    x = jnp.arange(6.0).reshape(3, 2)
    ids = jnp.array([1, 0, 1])

    def total(x):
        padded, mask, _ = segments_to_padded(x, ids, 2, 2)
        return jnp.sum(padded * jnp.array([1.0, 2.0])[:, None, None])

    # Segment 0 is weighted 1 and segment 1 weighted 2, so each row's gradient is its segment's weight.
    np.testing.assert_array_equal(jax.jit(jax.grad(total))(x), [[2.0, 2.0], [1.0, 1.0], [2.0, 2.0]])
