"""Conversion between the three ways a batch of sets can be given.

A set is either one array of shape (N, d) with an optional boolean mask of shape (N,), or one
of several sets stored back to back in an array of shape (total, d) with integer `segment_ids`
of shape (total,). Layers that need every set as a separate padded array use
`segments_to_padded`; layers that work on segments directly use `jax.ops.segment_*`.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int


def segments_to_padded(
    x: Float[Array, "total d"],
    segment_ids: Int[Array, " total"],
    num_segments: int,
    max_segment_size: int,
) -> tuple[Float[Array, "num_segments max_segment_size d"], Bool[Array, "num_segments max_segment_size"], Int[Array, " num_segments"]]:
    """Scatter the rows of `x` into one padded array per segment.

    Rows keep their relative order inside each segment. Rows whose segment id lies outside
    `[0, num_segments)` are dropped, as `jax.ops.segment_sum` drops them. Rows beyond the first
    `max_segment_size` of a segment are dropped too. The returned `sizes` still count them, so a
    caller can detect the overflow with `sizes > max_segment_size`.

    **Arguments:**

    - `x`: the rows of all sets, back to back.
    - `segment_ids`: the set each row belongs to. The ids need not be sorted.
    - `num_segments`: the number of sets (static).
    - `max_segment_size`: the padded length of every set (static).

    **Returns:** `(padded, mask, sizes)` of shapes (S, L, d), (S, L) and (S,).
    """
    total = x.shape[0]
    segment_ids = segment_ids.astype(jnp.int32)
    valid_id = (segment_ids >= 0) & (segment_ids < num_segments)
    safe_ids = jnp.where(valid_id, segment_ids, num_segments)

    # The position of each row inside its segment: its rank among earlier rows of the same id.
    order = jnp.argsort(safe_ids, stable=True)
    sorted_ids = safe_ids[order]
    sizes_with_overflow = jnp.bincount(safe_ids, length=num_segments + 1)
    starts = jnp.cumsum(sizes_with_overflow) - sizes_with_overflow
    rank_sorted = jnp.arange(total) - starts[sorted_ids]
    position = jnp.zeros(total, jnp.int32).at[order].set(rank_sorted.astype(jnp.int32))

    keep = valid_id & (position < max_segment_size)
    row = jnp.where(keep, safe_ids, num_segments)
    col = jnp.where(keep, position, 0)
    padded = jnp.zeros((num_segments + 1, max_segment_size) + x.shape[1:], x.dtype)
    padded = padded.at[row, col].set(x, mode="drop")[:num_segments]
    mask = jnp.zeros((num_segments + 1, max_segment_size), bool)
    mask = mask.at[row, col].set(keep, mode="drop")[:num_segments]
    return padded, mask, sizes_with_overflow[:num_segments]


def check_segments(x, segment_ids, num_segments, max_segment_size=None) -> None:
    """Raise a `ValueError` for segment arguments of the wrong form.

    Value checks (ids in range, segment sizes) run only when the ids are concrete, because a
    traced array has no values to inspect.
    """
    if num_segments is None:
        raise ValueError(
            "`num_segments` is required with `segment_ids`: pass the number of sets as a Python int, "
            "so the output shape is known when compiling."
        )
    if not isinstance(num_segments, (int, np.integer)) or num_segments <= 0:
        raise ValueError(f"`num_segments` must be a positive Python int, got {num_segments!r}.")
    segment_ids_shape = jnp.shape(segment_ids)
    if len(segment_ids_shape) != 1 or segment_ids_shape[0] != x.shape[0]:
        raise ValueError(
            f"`segment_ids` must have shape ({x.shape[0]},), one id per row of `x`, "
            f"got shape {segment_ids_shape}."
        )
    if not jnp.issubdtype(jnp.result_type(segment_ids), jnp.integer):
        raise ValueError(f"`segment_ids` must be integers, got dtype {jnp.result_type(segment_ids)}.")
    if max_segment_size is not None and (
        not isinstance(max_segment_size, (int, np.integer)) or max_segment_size <= 0
    ):
        raise ValueError(f"`max_segment_size` must be a positive Python int, got {max_segment_size!r}.")
    if is_concrete(segment_ids):
        ids = np.asarray(segment_ids)
        if ids.size and (ids.min() < 0 or ids.max() >= num_segments):
            raise ValueError(
                f"`segment_ids` must lie in [0, {num_segments}), got values from {ids.min()} to {ids.max()}. "
                "Raise `num_segments` or fix the ids."
            )
        if max_segment_size is not None and ids.size:
            largest = int(np.bincount(ids, minlength=num_segments).max())
            if largest > max_segment_size:
                raise ValueError(
                    f"a segment has {largest} rows but `max_segment_size` is {max_segment_size}. "
                    f"Pass `max_segment_size >= {largest}`."
                )


def is_concrete(value) -> bool:
    """Whether `value` contains numbers now, rather than being traced under `jit`, `vmap` or `grad`."""
    return not isinstance(value, jax.core.Tracer)
