"""Sum, mean and max pooling: the fixed aggregations that Equilibrium Aggregation generalises."""

import jax

from .._pooling import AbstractPooling
from ._segment_ops import mask_to_segment_ids, segment_max, segment_mean


class _SegmentPooling(AbstractPooling):
    """A pooling defined by one segment reduction; a masked set is one segment with padding dropped."""

    def pool_set(self, x, mask):
        return self.pool_segments(x, mask_to_segment_ids(mask), 1)[0]


class SumPooling(_SegmentPooling):
    """Pool a set of shape (N, d) into the sum of its elements, shape (d,). An empty set gives 0."""

    def pool_segments(self, x, segment_ids, num_segments, max_segment_size=None):
        del max_segment_size
        return jax.ops.segment_sum(x, segment_ids, num_segments)


class MeanPooling(_SegmentPooling):
    """Pool a set of shape (N, d) into the mean of its elements, shape (d,). An empty set gives 0."""

    def pool_segments(self, x, segment_ids, num_segments, max_segment_size=None):
        del max_segment_size
        return segment_mean(x, segment_ids, num_segments)


class MaxPooling(_SegmentPooling):
    """Pool a set of shape (N, d) into its coordinate-wise maximum, shape (d,). An empty set gives 0."""

    def pool_segments(self, x, segment_ids, num_segments, max_segment_size=None):
        del max_segment_size
        return segment_max(x, segment_ids, num_segments)
