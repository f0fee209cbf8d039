"""Sets of numbers whose target is their median.

Each set contains ``set_size`` i.i.d. numbers from one of three distributions,
picked uniformly at random per set:

* ``uniform``: Uniform(-1, 1), median 0.
* ``gamma``: Gamma(shape k=2, scale theta=0.5), mean 1, median about 0.839.
* ``normal``: Normal(mu=0, sigma=1), median 0.

The parameters are fixed, so a model has to read the median off the set
itself. The skewed gamma distribution makes the median differ from the mean.
The target is ``numpy.median`` of the float32 values, which for an even set
size is the mean of the two middle values.
"""

from __future__ import annotations

import numpy as np

MEDIAN_DISTRIBUTIONS: tuple[str, ...] = ("uniform", "gamma", "normal")

UNIFORM_LOW, UNIFORM_HIGH = -1.0, 1.0
GAMMA_SHAPE, GAMMA_SCALE = 2.0, 0.5
NORMAL_MEAN, NORMAL_STD = 0.0, 1.0


def sample_median_batch(
    rng: np.random.Generator,
    batch_size: int,
    set_size: int = 100,
    *,
    return_distribution: bool = False,
) -> tuple[np.ndarray, ...]:
    """Draw a batch of sets and their medians.

    Returns ``(x, y)`` with ``x`` float32 of shape ``(batch_size, set_size, 1)``
    and ``y`` float32 of shape ``(batch_size,)``. With ``return_distribution``
    a third int64 array of shape ``(batch_size,)`` contains each set's index into
    ``MEDIAN_DISTRIBUTIONS``. The output depends only on the generator's state.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if set_size < 1:
        raise ValueError(f"set_size must be at least 1, got {set_size}")

    distribution = rng.integers(0, len(MEDIAN_DISTRIBUTIONS), size=batch_size)
    shape = (batch_size, set_size)

    # All three candidates are drawn for every set, so the random stream does not
    # depend on which distribution each set picked.
    uniform = rng.uniform(UNIFORM_LOW, UNIFORM_HIGH, size=shape)
    gamma = rng.gamma(GAMMA_SHAPE, GAMMA_SCALE, size=shape)
    normal = rng.normal(NORMAL_MEAN, NORMAL_STD, size=shape)
    values = np.choose(distribution[:, None], [uniform, gamma, normal]).astype(np.float32)

    x = values[..., None]
    y = np.median(values, axis=1).astype(np.float32)
    if return_distribution:
        return x, y, distribution.astype(np.int64)
    return x, y
