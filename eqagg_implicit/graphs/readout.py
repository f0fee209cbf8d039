"""Graph-level readout: pool the node features of every graph in a `jraph.GraphsTuple`."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jraph
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from .._checks import check_set
from .._pooling import AbstractPooling
from .._segments import is_concrete


def node_graph_ids(graphs: jraph.GraphsTuple) -> Int[Array, " num_nodes"]:
    """Return the index of the graph that each node belongs to, derived from `graphs.n_node`.

    The output length is the static number of nodes, so this works under `jit`.
    """
    num_graphs = graphs.n_node.shape[0]
    num_nodes = _num_rows(graphs.nodes)
    return jnp.repeat(jnp.arange(num_graphs), graphs.n_node, total_repeat_length=num_nodes)


def edge_graph_ids(graphs: jraph.GraphsTuple) -> Int[Array, " num_edges"]:
    """Return the index of the graph that each edge belongs to, derived from `graphs.n_edge`."""
    num_graphs = graphs.n_edge.shape[0]
    num_edges = graphs.senders.shape[0]
    return jnp.repeat(jnp.arange(num_graphs), graphs.n_edge, total_repeat_length=num_edges)


def padding_masks(
    graphs: jraph.GraphsTuple, graph_mask: Bool[Array, " num_graphs"] | None = None
) -> tuple[Bool[Array, " num_graphs"], Bool[Array, " num_nodes"], Bool[Array, " num_edges"]]:
    """Expand a per-graph mask to the nodes and edges; `None` marks every graph as real.

    For a batch padded with `jraph.pad_with_graphs`, pass `jraph.get_graph_padding_mask(graphs)`.

    **Returns:** `(graph_mask, node_mask, edge_mask)`, True for real graphs, nodes and edges.
    """
    num_graphs = graphs.n_node.shape[0]
    if graph_mask is None:
        graph_mask = jnp.ones(num_graphs, bool)
    elif jnp.shape(graph_mask) != (num_graphs,) or jnp.result_type(graph_mask) != jnp.bool_:
        raise ValueError(
            f"`graph_mask` must be a boolean array of shape ({num_graphs},), one flag per graph, "
            f"got shape {jnp.shape(graph_mask)} and dtype {jnp.result_type(graph_mask)}."
        )
    node_mask = jnp.repeat(graph_mask, graphs.n_node, total_repeat_length=_num_rows(graphs.nodes))
    edge_mask = jnp.repeat(graph_mask, graphs.n_edge, total_repeat_length=graphs.senders.shape[0])
    return graph_mask, node_mask, edge_mask


def pool_masked_segments(
    pooling: AbstractPooling,
    x: Float[Array, "total d"],
    segment_ids: Int[Array, " total"],
    row_mask: Bool[Array, " total"],
    num_segments: int,
    max_segment_size: int | None,
    what: str,
) -> Array:
    """Pool the rows of `x` per segment, leaving out the rows where `row_mask` is False.

    Masked rows get the id `num_segments`, which every pooling drops (the `jax.ops.segment_*`
    reductions and `segments_to_padded` both skip ids outside `[0, num_segments)`), so they
    neither change a real segment nor count towards `max_segment_size`. `what` names the
    segments in the error raised when a concrete segment is larger than `max_segment_size`.
    """
    check_set(x, None)
    ids = jnp.where(row_mask, segment_ids, num_segments)
    if max_segment_size is not None:
        if not isinstance(max_segment_size, (int, np.integer)) or max_segment_size <= 0:
            raise ValueError(f"The maximum size of one {what} must be a positive int, got {max_segment_size!r}.")
        if is_concrete(ids):
            sizes = np.bincount(np.asarray(ids), minlength=num_segments + 1)[:num_segments]
            if sizes.size and sizes.max() > max_segment_size:
                raise ValueError(
                    f"{what} {int(sizes.argmax())} has {int(sizes.max())} elements, more than the maximum "
                    f"of {max_segment_size}. Raise the maximum to at least {int(sizes.max())}."
                )
    return pooling.pool_segments(x, ids, num_segments, max_segment_size)


class GraphReadout(eqx.Module):
    """Pool the node features of every graph in a batch into one vector per graph.

    Nodes are assigned to graphs through `graphs.n_node`, so the cost is that of the pooling
    over all nodes, and the output shape depends only on the padded sizes of the batch. Pass
    `graph_mask` for a batch padded with `jraph.pad_with_graphs`: the padding nodes are then
    left out of every set, so no real graph's output changes, and each padding graph gets the
    pooling's output for an empty set.

    **Arguments:**

    - `pooling`: any `AbstractPooling`, such as `SumPooling()` or an `EquilibriumAggregation`.
    - `max_nodes_per_graph`: the largest number of real nodes in one graph. Poolings that pad
      every set (such as `EquilibriumAggregation`) pad to this size; `None` pads to the number
      of nodes in the batch, which always fits but costs memory and time in proportion to it.
    """

    pooling: AbstractPooling
    max_nodes_per_graph: int | None = eqx.field(static=True, default=None)

    def __call__(
        self,
        graphs: jraph.GraphsTuple,
        node_features: Float[Array, "num_nodes d"],
        graph_mask: Bool[Array, " num_graphs"] | None = None,
    ) -> Float[Array, "num_graphs m"]:
        """Pool `node_features` per graph.

        **Arguments:**

        - `graphs`: the batch; only `n_node`, `n_edge`, `senders` and the number of nodes are used.
        - `node_features`: one row per node of `graphs`.
        - `graph_mask`: optional boolean array, True for real graphs.

        **Returns:** one pooled row per graph, shape (num_graphs, M).
        """
        num_nodes = _num_rows(graphs.nodes)
        if node_features.shape[0] != num_nodes:
            raise ValueError(
                f"`node_features` has {node_features.shape[0]} rows but the batch has {num_nodes} nodes. "
                "Pass one row per node."
            )
        _, node_mask, _ = padding_masks(graphs, graph_mask)
        return pool_masked_segments(
            self.pooling,
            node_features,
            node_graph_ids(graphs),
            node_mask,
            graphs.n_node.shape[0],
            self.max_nodes_per_graph,
            "graph",
        )


def graph_readout(
    pooling: AbstractPooling,
    graphs: jraph.GraphsTuple,
    node_features: Float[Array, "num_nodes d"],
    graph_mask: Bool[Array, " num_graphs"] | None = None,
    max_nodes_per_graph: int | None = None,
) -> Float[Array, "num_graphs m"]:
    """Pool `node_features` per graph with `pooling`; a function form of `GraphReadout`."""
    return GraphReadout(pooling, max_nodes_per_graph)(graphs, node_features, graph_mask)


def _num_rows(nodes) -> int:
    leaves = [leaf for leaf in jax.tree.leaves(nodes) if hasattr(leaf, "shape")]
    if not leaves:
        raise ValueError("`graphs.nodes` has no arrays, so the number of nodes is unknown.")
    return leaves[0].shape[0]

