import numpy as np
import pytest

from eqagg_implicit.data import MEDIAN_DISTRIBUTIONS, sample_median_batch


def test_median_batch_shapes_and_dtypes():
    x, y = sample_median_batch(np.random.default_rng(0), batch_size=7)
    assert x.shape == (7, 100, 1)
    assert y.shape == (7,)
    assert x.dtype == np.float32
    assert y.dtype == np.float32


def test_median_targets_equal_numpy_median():
    for set_size in (100, 5, 4):
        x, y = sample_median_batch(np.random.default_rng(1), batch_size=32, set_size=set_size)
        np.testing.assert_array_equal(y, np.median(x[..., 0], axis=1))


def test_median_batch_deterministic_per_seed():
    first = sample_median_batch(np.random.default_rng(3), batch_size=16)
    second = sample_median_batch(np.random.default_rng(3), batch_size=16)
    other = sample_median_batch(np.random.default_rng(4), batch_size=16)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[0], other[0])


def test_median_batch_uses_all_distributions():
    x, _, distribution = sample_median_batch(np.random.default_rng(5), batch_size=300, return_distribution=True)
    assert set(distribution.tolist()) == set(range(len(MEDIAN_DISTRIBUTIONS)))
    values = x[..., 0]
    uniform = values[distribution == MEDIAN_DISTRIBUTIONS.index("uniform")]
    gamma = values[distribution == MEDIAN_DISTRIBUTIONS.index("gamma")]
    assert uniform.min() >= -1.0
    assert uniform.max() <= 1.0
    assert gamma.min() > 0.0
    assert abs(np.median(gamma) - 0.839) < 0.05


def test_median_batch_rejects_empty_sizes():
    with pytest.raises(ValueError, match="batch_size"):
        sample_median_batch(np.random.default_rng(0), batch_size=0)
    with pytest.raises(ValueError, match="set_size"):
        sample_median_batch(np.random.default_rng(0), batch_size=1, set_size=0)
