"""The interface shared by every set-pooling layer in the library."""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from ._checks import check_finite, check_set
from ._segments import check_segments, segments_to_padded


class AbstractPooling(eqx.Module):
    """A permutation-invariant map from a set of vectors to one vector.

    Every pooling layer takes a set in one of two forms:

    - `layer(x, mask=None)`: one set `x` of shape (N, d), with an optional boolean `mask` of shape
      (N,) that marks the real elements of a padded set. Returns shape (M,). Use `jax.vmap` for a
      batch of padded sets.
    - `layer(x, segment_ids=ids, num_segments=S)`: all elements of S sets stored back to back in
      `x` of shape (total, d). Returns shape (S, M), row s pooling the rows with id s.

    Subclasses implement `pool_set`, and may override `pool_segments` with a faster
    segment-wise version. By default segments are padded to `max_segment_size` and pooled one by
    one with `jax.vmap`.
    """

    @abc.abstractmethod
    def pool_set(self, x: Float[Array, "n d"], mask: Bool[Array, " n"]) -> Float[Array, " m"]:
        """Pool one padded set whose real elements are marked by `mask`."""

    def pool_segments(
        self,
        x: Float[Array, "total d"],
        segment_ids: Int[Array, " total"],
        num_segments: int,
        max_segment_size: int | None = None,
    ) -> Float[Array, "num_segments m"]:
        """Pool every segment of `x`. The default pads each segment and calls `pool_set`."""
        size = x.shape[0] if max_segment_size is None else max_segment_size
        padded, mask, _ = segments_to_padded(x, segment_ids, num_segments, size)
        return jax.vmap(self.pool_set)(padded, mask)

    def __call__(
        self,
        x: Float[Array, "n d"],
        mask: Bool[Array, " n"] | None = None,
        *,
        segment_ids: Int[Array, " n"] | None = None,
        num_segments: int | None = None,
        max_segment_size: int | None = None,
        key=None,
    ) -> Array:
        """Pool one set, or every segment of a ragged batch of sets.

        **Arguments:**

        - `x`: the set elements, shape (N, d).
        - `mask`: optional boolean array of shape (N,), True for real elements.
        - `segment_ids`: optional integer array of shape (N,) assigning each row to a set.
        - `num_segments`: the number of sets; required with `segment_ids`.
        - `max_segment_size`: optional upper bound on the rows of any one set. Layers that pad
          each segment (such as `EquilibriumAggregation`) use it to bound the work per set;
          it defaults to N, which is always large enough.
        - `key`: unused; accepted so that every layer can be called the same way.

        **Returns:** shape (M,) for one set, or (num_segments, M) with `segment_ids`.
        """
        del key
        if segment_ids is not None:
            if mask is not None:
                raise ValueError("Pass either `mask` or `segment_ids`, not both: fold the mask into the ids.")
            check_set(x, None)
            check_segments(x, segment_ids, num_segments, max_segment_size)
            return self.pool_segments(x, segment_ids, num_segments, max_segment_size)
        if num_segments is not None or max_segment_size is not None:
            raise ValueError("`num_segments` and `max_segment_size` only apply together with `segment_ids`.")
        check_set(x, mask)
        if mask is None:
            mask = jnp.ones(x.shape[0], bool)
        return self.pool_set(x, mask)


__all__ = ["AbstractPooling", "check_finite"]
