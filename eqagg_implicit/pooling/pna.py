"""Principal Neighbourhood Aggregation (PNA) as a set readout."""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from .._pooling import AbstractPooling
from ._segment_ops import (
    mask_to_segment_ids,
    segment_count,
    segment_max,
    segment_mean,
    segment_min,
    segment_std,
)


def average_log_size(set_sizes: Sequence[int] | ArrayLike) -> float:
    """Compute PNA's delta, the mean of log(n + 1) over the sizes n of the training sets.

    **Arguments:**

    - `set_sizes`: the number of elements of every training set (for a graph readout, the
      number of nodes of every training graph).

    **Returns:** delta as a Python float.
    """
    sizes = np.asarray(set_sizes, dtype=np.float64).reshape(-1)
    if sizes.size == 0:
        raise ValueError("`set_sizes` is empty. Pass the sizes of the training sets to compute delta.")
    if (sizes < 0).any() or not np.isfinite(sizes).all():
        raise ValueError(f"`set_sizes` must be finite and non-negative, got values down to {sizes.min()}.")
    delta = float(np.mean(np.log(sizes + 1)))
    if delta <= 0:
        raise ValueError("All training sets are empty, so delta = mean log(n + 1) is 0. Pass non-empty sets.")
    return delta


class PNAPooling(AbstractPooling):
    """Pool a set with the 12 scaled aggregations of PNA (Corso et al., 2020), then a linear layer.

    Four aggregators (mean, min, max and standard deviation) are each multiplied by three
    scalers of the set size n: identity, amplification log(n + 1) / delta and attenuation
    delta / log(n + 1). The 12 d values are concatenated and mapped to `output_size` by a
    linear layer. delta is the mean of log(n + 1) over the training sets, fixed at
    construction (see `PNAPooling.from_set_sizes`) and not trained.

    The scalers use max(n, 1) in place of n, as PyTorch Geometric's PNA does, so that the
    attenuation of an empty set is finite; all four aggregators of an empty set are 0, so an
    empty set gives the bias of the linear layer.

    **Arguments:**

    - `input_size`: d, the size of one set element.
    - `output_size`: M, the size of the pooled vector.
    - `delta`: the mean of log(n + 1) over the training set sizes; must be positive.
    - `std_eps`: added to the variance before the square root, for a finite gradient.
    - `key`: a JAX PRNG key for the initial weights.
    """

    linear: eqx.nn.Linear
    input_size: int = eqx.field(static=True)
    output_size: int = eqx.field(static=True)
    delta: float = eqx.field(static=True)
    std_eps: float = eqx.field(static=True)

    def __init__(
        self,
        input_size: int,
        output_size: int,
        delta: float,
        *,
        std_eps: float = 1e-5,
        key: PRNGKeyArray,
    ):
        if not isinstance(input_size, int) or input_size <= 0 or not isinstance(output_size, int) or output_size <= 0:
            raise ValueError(
                f"PNAPooling needs positive integer sizes, got input_size={input_size!r}, output_size={output_size!r}."
            )
        if not (np.isfinite(delta) and delta > 0):
            raise ValueError(
                f"PNAPooling needs delta > 0, got {delta!r}. Compute it with average_log_size(training_set_sizes)."
            )
        if not std_eps > 0:
            raise ValueError(f"PNAPooling needs std_eps > 0, got {std_eps!r}.")
        self.linear = eqx.nn.Linear(12 * input_size, output_size, key=key)
        self.input_size = input_size
        self.output_size = output_size
        self.delta = float(delta)
        self.std_eps = float(std_eps)

    @classmethod
    def from_set_sizes(
        cls, input_size: int, output_size: int, set_sizes: Sequence[int] | ArrayLike, *, key: PRNGKeyArray, **kwargs
    ) -> "PNAPooling":
        """Build a `PNAPooling` whose delta is the mean log(n + 1) over the training `set_sizes`."""
        return cls(input_size, output_size, average_log_size(set_sizes), key=key, **kwargs)

    def pool_set(self, x, mask):
        return self.pool_segments(x, mask_to_segment_ids(mask), 1)[0]

    def pool_segments(self, x, segment_ids, num_segments, max_segment_size=None):
        del max_segment_size
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"PNAPooling was built for input_size={self.input_size} but `x` has {x.shape[-1]} "
                "features per element. Rebuild the layer with the matching input size."
            )

        aggregated = jnp.concatenate(
            [
                segment_mean(x, segment_ids, num_segments),
                segment_min(x, segment_ids, num_segments),
                segment_max(x, segment_ids, num_segments),
                segment_std(x, segment_ids, num_segments, self.std_eps),
            ],
            axis=-1,
        )

        count = segment_count(segment_ids, num_segments, x.dtype)
        log_size = jnp.log(jnp.maximum(count, 1) + 1)[:, None]
        amplified = aggregated * (log_size / self.delta)
        attenuated = aggregated * (self.delta / log_size)
        scaled = jnp.concatenate([aggregated, amplified, attenuated], axis=-1)
        return jax.vmap(self.linear)(scaled)
