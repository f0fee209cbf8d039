"""Tests of `GraphReadout`: every pooling, pooled per graph of a `jraph.GraphsTuple`."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jraph
import numpy as np
import pytest

from eqagg_implicit import EquilibriumAggregation, GradientDescent, SumOfSquaresResNetPotential
from eqagg_implicit.graphs import GraphReadout, graph_readout, node_graph_ids, padding_masks
from eqagg_implicit.pooling import AttentionPooling, MaxPooling, MeanPooling, PNAPooling, SumPooling

FEATURES = 6
MAX_NODES = 5


def build_poolings() -> dict:
    keys = jax.random.split(jax.random.key(0), 3)
    potential = SumOfSquaresResNetPotential(FEATURES, 4, (16, 4), key=keys[2])
    return {
        "sum": SumPooling(),
        "mean": MeanPooling(),
        "max": MaxPooling(),
        "attention": AttentionPooling(FEATURES, 8, 4, key=keys[0]),
        "pna": PNAPooling.from_set_sizes(FEATURES, 5, [2, 3, 5], key=keys[1]),
        "equilibrium": EquilibriumAggregation(potential, solver=GradientDescent(max_steps=4)),
    }


POOLINGS = build_poolings()


def graph(num_nodes: int, seed: int) -> jraph.GraphsTuple:
    """A path graph with both edge directions and random float node features."""
    sources = np.arange(num_nodes - 1)
    senders = np.concatenate([sources, sources + 1]).astype(np.int32)
    receivers = np.concatenate([sources + 1, sources]).astype(np.int32)
    nodes = np.asarray(jax.random.normal(jax.random.key(seed), (num_nodes, FEATURES)))
    return jraph.GraphsTuple(
        nodes=nodes,
        edges=np.zeros((len(senders), 1), np.float32),
        senders=senders,
        receivers=receivers,
        n_node=np.array([num_nodes]),
        n_edge=np.array([len(senders)]),
        globals=None,
    )


GRAPHS = [graph(3, 1), graph(5, 2), graph(1, 3), graph(4, 4)]


@eqx.filter_jit
def read_out(pooling, graphs, graph_mask):
    return GraphReadout(pooling, MAX_NODES)(graphs, graphs.nodes, graph_mask)


def padded(graphs: jraph.GraphsTuple) -> jraph.GraphsTuple:
    """Pad to a fixed budget of 20 nodes, 24 edges and 6 graphs."""
    return jraph.pad_with_graphs(graphs, 20, 24, 6)


@pytest.mark.parametrize("name", POOLINGS)
def test_readout_independent_of_batch(name):
    pooling = POOLINGS[name]
    first = padded(jraph.batch([GRAPHS[0], GRAPHS[1], GRAPHS[2]]))
    second = padded(jraph.batch([GRAPHS[3], GRAPHS[1], GRAPHS[0]]))

    first_rows = read_out(pooling, first, jraph.get_graph_padding_mask(first))
    second_rows = read_out(pooling, second, jraph.get_graph_padding_mask(second))

    np.testing.assert_allclose(first_rows[0], second_rows[2], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(first_rows[1], second_rows[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", POOLINGS)
def test_readout_padding_invariance(name):
    pooling = POOLINGS[name]
    batch = jraph.batch(GRAPHS)
    batch_padded = padded(batch)
    graph_mask = jraph.get_graph_padding_mask(batch_padded)

    unpadded_rows = read_out(pooling, batch, None)
    padded_rows = read_out(pooling, batch_padded, graph_mask)

    assert padded_rows.shape[0] == 6
    np.testing.assert_allclose(padded_rows[:4], unpadded_rows, rtol=1e-5, atol=1e-5)
    assert np.isfinite(padded_rows[4:]).all(), "padding graphs must read out finite values"


@pytest.mark.parametrize("name", POOLINGS)
def test_readout_node_order_invariance(name):
    pooling = POOLINGS[name]
    batch = padded(jraph.batch(GRAPHS))
    graph_mask = jraph.get_graph_padding_mask(batch)

    # Reverse the nodes of every graph in place, and renumber the edges to match.
    graph_ids = np.asarray(node_graph_ids(batch))
    starts = np.concatenate([[0], np.cumsum(batch.n_node)[:-1]])
    ends = np.cumsum(batch.n_node)
    new_position = starts[graph_ids] + ends[graph_ids] - 1 - np.arange(len(graph_ids))
    permuted_nodes = np.empty_like(batch.nodes)
    permuted_nodes[new_position] = batch.nodes
    permuted = batch._replace(
        nodes=permuted_nodes, senders=new_position[batch.senders], receivers=new_position[batch.receivers]
    )

    np.testing.assert_allclose(
        read_out(pooling, permuted, graph_mask), read_out(pooling, batch, graph_mask), rtol=1e-5, atol=1e-5
    )


def test_readout_matches_sum_per_graph():
    batch = jraph.batch(GRAPHS)

    pooled = graph_readout(SumPooling(), batch, batch.nodes)

    for index, single in enumerate(GRAPHS):
        np.testing.assert_allclose(pooled[index], single.nodes.sum(0), rtol=1e-5, atol=1e-5)


def test_readout_rejects_graph_above_max_nodes():
    batch = jraph.batch(GRAPHS)

    with pytest.raises(ValueError, match="graph 1 has 5 elements"):
        GraphReadout(SumPooling(), max_nodes_per_graph=4)(batch, batch.nodes)


def test_readout_padding_graph_above_max_nodes():
    # The padding graph contains 7 nodes, more than MAX_NODES, but masked nodes do not count.
    batch = padded(jraph.batch(GRAPHS))

    rows = GraphReadout(SumPooling(), MAX_NODES)(batch, batch.nodes, jraph.get_graph_padding_mask(batch))

    assert rows.shape == (6, FEATURES)


def test_readout_rejects_wrong_row_count():
    batch = jraph.batch(GRAPHS)

    with pytest.raises(ValueError, match="13 nodes"):
        GraphReadout(SumPooling())(batch, batch.nodes[:-1])


def test_padding_masks_expand_graph_mask():
    batch = padded(jraph.batch(GRAPHS[:2]))

    graph_mask, node_mask, edge_mask = padding_masks(batch, jraph.get_graph_padding_mask(batch))

    np.testing.assert_array_equal(graph_mask, [True, True, False, False, False, False])
    np.testing.assert_array_equal(node_mask, np.arange(20) < 8)
    np.testing.assert_array_equal(edge_mask, np.arange(24) < 12)


def test_padding_masks_reject_bad_mask():
    batch = jraph.batch(GRAPHS)

    with pytest.raises(ValueError, match="graph_mask"):
        padding_masks(batch, jnp.ones(3, bool))
