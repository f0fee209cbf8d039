"""Message passing whose neighbourhood aggregation is a set pooling, such as Equilibrium Aggregation."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from .._pooling import AbstractPooling
from .readout import pool_masked_segments


class EquilibriumMessagePassing(eqx.Module):
    """Aggregate the incoming messages of every node with a pooling layer.

    The message along edge (s -> r) is W [h_s, e_sr] + b, a linear map of the sender's features
    and the edge's features. The messages arriving at node r form one set, pooled by
    `aggregation`. With an `EquilibriumAggregation` this is the local aggregation of the "EA
    local + EA global" model of Bartunov et al. (UAI 2022); any other `AbstractPooling` works
    too. A node without incoming edges gets the pooling's output for an empty set.

    **Arguments:**

    - `node_size`: the size of a node's features.
    - `edge_size`: the size of an edge's features.
    - `aggregation`: the pooling applied to every node's messages; its input size is `message_size`.
    - `max_in_degree`: the largest number of incoming real edges of one node, which bounds the
      padded set size of poolings that pad (such as `EquilibriumAggregation`). `None` uses the
      number of edges in the batch, which always fits but costs memory in proportion to it.
    - `message_size`: the size of one message; defaults to `node_size`.
    - `key`: a JAX PRNG key for the message weights.
    """

    message: eqx.nn.Linear
    aggregation: AbstractPooling
    max_in_degree: int | None = eqx.field(static=True)

    def __init__(
        self,
        node_size: int,
        edge_size: int,
        aggregation: AbstractPooling,
        max_in_degree: int | None = None,
        *,
        message_size: int | None = None,
        key: PRNGKeyArray,
    ):
        if not isinstance(aggregation, AbstractPooling):
            raise TypeError(f"`aggregation` must be an AbstractPooling, got {type(aggregation).__name__}.")
        message_size = node_size if message_size is None else message_size
        self.message = eqx.nn.Linear(node_size + edge_size, message_size, key=key)
        self.aggregation = aggregation
        self.max_in_degree = max_in_degree

    def __call__(
        self,
        node_features: Float[Array, "num_nodes d"],
        edge_features: Float[Array, "num_edges e"],
        senders: Int[Array, " num_edges"],
        receivers: Int[Array, " num_edges"],
        edge_mask: Bool[Array, " num_edges"] | None = None,
    ) -> Float[Array, "num_nodes m"]:
        """Compute the messages and pool them per receiving node.

        **Arguments:**

        - `node_features`: one row per node.
        - `edge_features`: one row per edge.
        - `senders`, `receivers`: the node indices of every edge.
        - `edge_mask`: optional, False for padding edges, which are left out of every set.

        **Returns:** the aggregated messages, one row per node.
        """
        num_nodes = node_features.shape[0]
        if edge_mask is None:
            edge_mask = jnp.ones(senders.shape, bool)

        inputs = jnp.concatenate([node_features[senders], edge_features], axis=-1)
        messages = jax.vmap(self.message)(inputs)

        # NOTE: under `jit` the in-degree cannot be checked, so a pooling that pads every set
        # (such as `EquilibriumAggregation`) pools only the first `max_in_degree` messages of a node.
        return pool_masked_segments(
            self.aggregation, messages, receivers, edge_mask, num_nodes, self.max_in_degree, "node"
        )
