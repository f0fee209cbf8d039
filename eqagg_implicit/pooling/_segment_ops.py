"""Segment reductions shared by the baseline poolings.

Each helper reduces the rows of `x` per segment id with `jax.ops.segment_*`, so its cost is
linear in the number of rows. Rows whose id lies outside `[0, num_segments)` are dropped, which
is how a mask becomes segment ids: `mask_to_segment_ids` sends the padding rows of one set to id 1
and pools with `num_segments=1`. Empty segments give 0 from every helper, never -inf or NaN.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int


def mask_to_segment_ids(mask: Bool[Array, " n"]) -> Int[Array, " n"]:
    """Map the real rows of one padded set to segment 0 and the padding rows to 1 (dropped)."""
    return jnp.where(mask, 0, 1).astype(jnp.int32)


def valid_rows(segment_ids: Int[Array, " total"], num_segments: int) -> Bool[Array, " total"]:
    """Flag the rows whose id lies in `[0, num_segments)`, the rows that a segment reduction keeps."""
    return (segment_ids >= 0) & (segment_ids < num_segments)


def gather_segments(values: Array, segment_ids: Int[Array, " total"], num_segments: int) -> Array:
    """Read the row of `values` for each element's segment, with 0 for dropped rows."""
    valid = valid_rows(segment_ids, num_segments)
    safe_ids = jnp.where(valid, segment_ids, 0)
    gathered = values[safe_ids]
    keep = valid.reshape((-1,) + (1,) * (gathered.ndim - 1))
    return jnp.where(keep, gathered, 0)


def segment_count(
    segment_ids: Int[Array, " total"], num_segments: int, dtype=jnp.float32
) -> Float[Array, " num_segments"]:
    """Count the rows of every segment."""
    ones = jnp.ones(segment_ids.shape, dtype)
    return jax.ops.segment_sum(ones, segment_ids, num_segments)


def segment_mean(
    x: Float[Array, "total d"], segment_ids: Int[Array, " total"], num_segments: int
) -> Float[Array, "num_segments d"]:
    """Average the rows of every segment; an empty segment gives 0."""
    total = jax.ops.segment_sum(x, segment_ids, num_segments)
    count = segment_count(segment_ids, num_segments, x.dtype)
    return total / jnp.maximum(count, 1)[:, None]


def segment_max(
    x: Float[Array, "total d"], segment_ids: Int[Array, " total"], num_segments: int
) -> Float[Array, "num_segments d"]:
    """Take the coordinate-wise maximum of every segment; an empty segment gives 0."""
    largest = jax.ops.segment_max(x, segment_ids, num_segments)
    count = segment_count(segment_ids, num_segments, x.dtype)
    return jnp.where(count[:, None] > 0, largest, 0)


def segment_min(
    x: Float[Array, "total d"], segment_ids: Int[Array, " total"], num_segments: int
) -> Float[Array, "num_segments d"]:
    """Take the coordinate-wise minimum of every segment; an empty segment gives 0."""
    smallest = jax.ops.segment_min(x, segment_ids, num_segments)
    count = segment_count(segment_ids, num_segments, x.dtype)
    return jnp.where(count[:, None] > 0, smallest, 0)


def segment_std(
    x: Float[Array, "total d"],
    segment_ids: Int[Array, " total"],
    num_segments: int,
    eps: float = 1e-5,
) -> Float[Array, "num_segments d"]:
    """Take the coordinate-wise standard deviation sqrt(var + eps) of every segment.

    The variance is the biased one, computed in two passes (mean first, then the mean squared
    deviation) because E[x^2] - E[x]^2 cancels badly for large features. `eps` keeps the
    gradient of the square root finite for constant segments. An empty segment gives 0.
    """
    mean = segment_mean(x, segment_ids, num_segments)
    deviation = x - gather_segments(mean, segment_ids, num_segments)
    variance = segment_mean(deviation * deviation, segment_ids, num_segments)
    std = jnp.sqrt(variance + eps)
    count = segment_count(segment_ids, num_segments, x.dtype)
    return jnp.where(count[:, None] > 0, std, 0)


def segment_softmax(
    logits: Float[Array, "total *rest"], segment_ids: Int[Array, " total"], num_segments: int
) -> Float[Array, "total *rest"]:
    """Normalise `logits` with a softmax over the rows of each segment, independently per trailing index.

    The segment maximum is subtracted before the exponential for stability; the softmax does not
    depend on that shift, so no gradient flows through it. Dropped rows get weight 0.
    """
    valid = valid_rows(segment_ids, num_segments).reshape((-1,) + (1,) * (logits.ndim - 1))
    largest = jax.ops.segment_max(logits, segment_ids, num_segments)
    largest = jax.lax.stop_gradient(jnp.where(jnp.isfinite(largest), largest, 0))
    shifted = jnp.where(valid, logits - gather_segments(largest, segment_ids, num_segments), -jnp.inf)
    exp = jnp.exp(shifted)
    denominator = jax.ops.segment_sum(exp, segment_ids, num_segments)
    denominator = gather_segments(denominator, segment_ids, num_segments)
    return jnp.where(valid, exp / jnp.where(valid, denominator, 1), 0)
