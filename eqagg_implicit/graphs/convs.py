"""The GIN and GCN convolutions of OGB's molecular property prediction examples, in JAX.

Both follow the structure of `examples/graphproppred/mol/conv.py` in snap-stanford/ogb: every
layer embeds the bond features with its own `BondEncoder`, and the message along edge (s -> r)
is ReLU(h_s + e_sr). Either layer can replace its neighbour sum by an `EquilibriumMessagePassing`.
"""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import jraph
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from .._pooling import AbstractPooling
from .batch_norm import MaskedBatchNorm
from .encoders import BondEncoder
from .message_passing import EquilibriumMessagePassing


def _sum_messages(messages, receivers, edge_mask, num_nodes):
    """Sum the messages per receiver, skipping padding edges."""
    ids = jnp.where(edge_mask, receivers, num_nodes)
    return jax.ops.segment_sum(messages, ids, num_nodes)


class GINConv(eqx.Module):
    """A Graph Isomorphism Network layer (Xu et al., 2019) with edge features.

    h'_r = MLP((1 + eps) h_r + sum_{s -> r} ReLU(h_s + e_sr)), with a learnable eps starting at 0
    and MLP = Linear(D, 2D), batch norm, ReLU, Linear(2D, D). With `local_pooling`, the sum is
    replaced by that pooling over the messages W [h_s, e_sr] + b (see `EquilibriumMessagePassing`).

    **Arguments:**

    - `embedding_size`: D, the size of node and edge embeddings.
    - `bond_vocab_sizes`: the vocabulary size of every bond feature.
    - `local_pooling`: optional pooling of the incoming messages, with input and output size D.
    - `max_in_degree`: passed to `EquilibriumMessagePassing` with `local_pooling`.
    - `key`: a JAX PRNG key for the initial weights.
    """

    bond_encoder: BondEncoder
    hidden: eqx.nn.Linear
    hidden_norm: MaskedBatchNorm
    output: eqx.nn.Linear
    eps: Array
    aggregation: EquilibriumMessagePassing | None

    def __init__(
        self,
        embedding_size: int,
        bond_vocab_sizes: Sequence[int],
        *,
        local_pooling: AbstractPooling | None = None,
        max_in_degree: int | None = None,
        key: PRNGKeyArray,
    ):
        keys = jax.random.split(key, 4)
        self.bond_encoder = BondEncoder(bond_vocab_sizes, embedding_size, key=keys[0])
        self.hidden = eqx.nn.Linear(embedding_size, 2 * embedding_size, key=keys[1])
        self.hidden_norm = MaskedBatchNorm(2 * embedding_size)
        self.output = eqx.nn.Linear(2 * embedding_size, embedding_size, key=keys[2])
        self.eps = jnp.zeros(())
        self.aggregation = (
            None
            if local_pooling is None
            else EquilibriumMessagePassing(embedding_size, embedding_size, local_pooling, max_in_degree, key=keys[3])
        )

    def __call__(
        self,
        h: Float[Array, "num_nodes d"],
        graphs: jraph.GraphsTuple,
        node_mask: Bool[Array, " num_nodes"],
        edge_mask: Bool[Array, " num_edges"],
        state: eqx.nn.State,
        *,
        inference: bool,
    ) -> tuple[Float[Array, "num_nodes d"], eqx.nn.State]:
        """Update every node's features; the masks mark real nodes and edges, as in `padding_masks`."""
        num_nodes = h.shape[0]
        edge_features = self.bond_encoder(graphs.edges).astype(h.dtype)

        if self.aggregation is None:
            messages = jax.nn.relu(h[graphs.senders] + edge_features)
            aggregated = _sum_messages(messages, graphs.receivers, edge_mask, num_nodes)
        else:
            aggregated = self.aggregation(h, edge_features, graphs.senders, graphs.receivers, edge_mask)

        z = (1 + self.eps.astype(h.dtype)) * h + aggregated
        z = jax.vmap(self.hidden)(z)
        z, state = self.hidden_norm(z, node_mask, state, inference=inference)
        z = jax.vmap(self.output)(jax.nn.relu(z))
        return z, state


class GCNConv(eqx.Module):
    """A Graph Convolutional Network layer (Kipf and Welling, 2017) with edge features.

    With x = W h + b and degrees deg_v = (in-degree of v) + 1 (the +1 is the self loop),

        h'_r = sum_{s -> r} ReLU(x_s + e_sr) / sqrt(deg_s deg_r) + ReLU(x_r + root) / deg_r,

    where `root` is a learned vector. OGB counts the degree at the source node of every edge;
    for the symmetric edge lists of molecules the two counts agree. With `local_pooling` the
    normalised sum is replaced by that pooling over the messages W' [x_s, e_sr] + b' (see
    `EquilibriumMessagePassing`); the self-loop term stays.

    **Arguments:**

    - `embedding_size`: D, the size of node and edge embeddings.
    - `bond_vocab_sizes`: the vocabulary size of every bond feature.
    - `local_pooling`: optional pooling of the incoming messages, with input and output size D.
    - `max_in_degree`: passed to `EquilibriumMessagePassing` with `local_pooling`.
    - `key`: a JAX PRNG key for the initial weights.
    """

    bond_encoder: BondEncoder
    linear: eqx.nn.Linear
    root: Float[Array, " d"]
    aggregation: EquilibriumMessagePassing | None

    def __init__(
        self,
        embedding_size: int,
        bond_vocab_sizes: Sequence[int],
        *,
        local_pooling: AbstractPooling | None = None,
        max_in_degree: int | None = None,
        key: PRNGKeyArray,
    ):
        keys = jax.random.split(key, 4)
        self.bond_encoder = BondEncoder(bond_vocab_sizes, embedding_size, key=keys[0])
        self.linear = eqx.nn.Linear(embedding_size, embedding_size, key=keys[1])
        self.root = jax.random.normal(keys[2], (embedding_size,))
        self.aggregation = (
            None
            if local_pooling is None
            else EquilibriumMessagePassing(embedding_size, embedding_size, local_pooling, max_in_degree, key=keys[3])
        )

    def __call__(
        self,
        h: Float[Array, "num_nodes d"],
        graphs: jraph.GraphsTuple,
        node_mask: Bool[Array, " num_nodes"],
        edge_mask: Bool[Array, " num_edges"],
        state: eqx.nn.State,
        *,
        inference: bool,
    ) -> tuple[Float[Array, "num_nodes d"], eqx.nn.State]:
        """Update every node's features; the masks mark real nodes and edges, as in `padding_masks`."""
        del node_mask, inference
        num_nodes = h.shape[0]
        x = jax.vmap(self.linear)(h)
        edge_features = self.bond_encoder(graphs.edges).astype(h.dtype)

        receiver_ids = jnp.where(edge_mask, graphs.receivers, num_nodes)
        degree = jax.ops.segment_sum(jnp.ones_like(receiver_ids, h.dtype), receiver_ids, num_nodes) + 1
        inverse_sqrt_degree = jax.lax.rsqrt(degree)

        if self.aggregation is None:
            norm = inverse_sqrt_degree[graphs.senders] * inverse_sqrt_degree[graphs.receivers]
            messages = norm[:, None] * jax.nn.relu(x[graphs.senders] + edge_features)
            aggregated = _sum_messages(messages, graphs.receivers, edge_mask, num_nodes)
        else:
            aggregated = self.aggregation(x, edge_features, graphs.senders, graphs.receivers, edge_mask)

        self_loop = jax.nn.relu(x + self.root.astype(h.dtype)) / degree[:, None]
        return aggregated + self_loop, state
