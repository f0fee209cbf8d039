"""Multi-head attention pooling with learned queries (the PMA block of the Set Transformer)."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._pooling import AbstractPooling
from ._segment_ops import mask_to_segment_ids, segment_softmax


class AttentionPooling(AbstractPooling):
    """Pool a set by letting learned query vectors attend over its elements.

    This is the pooling-by-multihead-attention block of the Set Transformer (Lee et al., 2019)
    with the layer normalisations left out. For each of `num_queries` learned seeds s,

        h = s + W_o MultiHead(W_q s, W_k X, W_v X),    out = h + ReLU(W_f h),

    where each of the `num_heads` heads attends with keys and values of size
    output_size / num_heads and a softmax over the real elements of the set only. With more
    than one query the outputs are concatenated and projected back to `output_size`. An empty
    set has no keys, so every head returns 0 and the output depends on the seeds alone.

    **Arguments:**

    - `input_size`: d, the size of one set element.
    - `output_size`: M, the size of the pooled vector; it must be divisible by `num_heads`.
    - `num_heads`: the number of attention heads.
    - `num_queries`: the number of learned seeds.
    - `key`: a JAX PRNG key for the initial weights.
    """

    seeds: Float[Array, "q m"]
    query_projection: eqx.nn.Linear
    key_projection: eqx.nn.Linear
    value_projection: eqx.nn.Linear
    output_projection: eqx.nn.Linear
    feedforward: eqx.nn.Linear
    merge: eqx.nn.Linear | None
    input_size: int = eqx.field(static=True)
    output_size: int = eqx.field(static=True)
    num_heads: int = eqx.field(static=True)
    num_queries: int = eqx.field(static=True)

    def __init__(
        self,
        input_size: int,
        output_size: int,
        num_heads: int = 4,
        *,
        num_queries: int = 1,
        key: PRNGKeyArray,
    ):
        for name, value in (("input_size", input_size), ("output_size", output_size),
                            ("num_heads", num_heads), ("num_queries", num_queries)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"AttentionPooling needs a positive integer `{name}`, got {value!r}.")
        if output_size % num_heads != 0:
            raise ValueError(
                f"AttentionPooling needs output_size divisible by num_heads, got output_size={output_size} "
                f"and num_heads={num_heads}. Pick num_heads among the divisors of {output_size}."
            )

        keys = jax.random.split(key, 7)
        self.seeds = jax.random.normal(keys[0], (num_queries, output_size)) / math.sqrt(output_size)
        self.query_projection = eqx.nn.Linear(output_size, output_size, key=keys[1])
        self.key_projection = eqx.nn.Linear(input_size, output_size, key=keys[2])
        self.value_projection = eqx.nn.Linear(input_size, output_size, key=keys[3])
        self.output_projection = eqx.nn.Linear(output_size, output_size, key=keys[4])
        self.feedforward = eqx.nn.Linear(output_size, output_size, key=keys[5])
        self.merge = (
            eqx.nn.Linear(num_queries * output_size, output_size, key=keys[6]) if num_queries > 1 else None
        )
        self.input_size = input_size
        self.output_size = output_size
        self.num_heads = num_heads
        self.num_queries = num_queries

    def pool_set(self, x, mask):
        return self.pool_segments(x, mask_to_segment_ids(mask), 1)[0]

    def pool_segments(self, x, segment_ids, num_segments, max_segment_size=None):
        del max_segment_size
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"AttentionPooling was built for input_size={self.input_size} but `x` has {x.shape[-1]} "
                "features per element. Rebuild the layer with the matching input size."
            )
        head_size = self.output_size // self.num_heads
        seeds = self.seeds.astype(x.dtype)

        # Project elements to keys and values and the seeds to queries, split into heads.
        keys = jax.vmap(self.key_projection)(x).reshape(-1, self.num_heads, head_size)
        values = jax.vmap(self.value_projection)(x).reshape(-1, self.num_heads, head_size)
        queries = jax.vmap(self.query_projection)(seeds).reshape(self.num_queries, self.num_heads, head_size)

        # Attention weights per element, query and head, normalised over each segment.
        logits = jnp.einsum("thd,qhd->tqh", keys, queries) / math.sqrt(head_size)
        weights = segment_softmax(logits, segment_ids, num_segments)
        weighted = jnp.einsum("tqh,thd->tqhd", weights, values)
        attended = jax.ops.segment_sum(weighted, segment_ids, num_segments)
        attended = attended.reshape(num_segments, self.num_queries, self.output_size)

        # Residual output projection and feed-forward block, as in the Set Transformer's MAB.
        hidden = seeds + jax.vmap(jax.vmap(self.output_projection))(attended)
        hidden = hidden + jax.nn.relu(jax.vmap(jax.vmap(self.feedforward))(hidden))

        if self.merge is None:
            return hidden[:, 0]
        return jax.vmap(self.merge)(hidden.reshape(num_segments, -1))
