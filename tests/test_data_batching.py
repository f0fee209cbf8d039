import jraph
import numpy as np
import pytest

from eqagg_implicit.data.molecules import BatchBudget, iterate_batches, pack_indices, pad_graph_batch


def chain_graph(num_nodes: int, seed: int) -> dict:
    """A path graph with both edge directions and features that identify it."""
    sources = np.arange(num_nodes - 1)
    edge_index = np.stack([np.stack([sources, sources + 1], 1), np.stack([sources + 1, sources], 1)], 1).reshape(-1, 2).T
    return {
        "node_feat": np.full((num_nodes, 9), seed, dtype=np.int64),
        "edge_index": edge_index.astype(np.int64),
        "edge_feat": np.full((edge_index.shape[1], 3), seed, dtype=np.int64),
        "num_nodes": num_nodes,
    }


@pytest.fixture
def graphs_and_labels():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 60, size=50)
    graphs = [chain_graph(int(size), seed) for seed, size in enumerate(sizes)]
    labels = rng.integers(0, 2, size=(50, 4)).astype(np.float32)
    labels[rng.random(labels.shape) < 0.3] = np.nan
    return graphs, labels


BUDGET = BatchBudget(max_graphs=8, max_nodes=128, max_edges=256)


def test_batches_hold_each_graph_once(graphs_and_labels):
    graphs, labels = graphs_and_labels
    indices = np.arange(3, 50)
    seen = []
    for batch in iterate_batches(graphs, labels, indices, BUDGET, shuffle=True, seed=1):
        real = batch.graph_index[batch.graph_mask]
        assert (batch.graph_index[~batch.graph_mask] == -1).all()
        seen.extend(real.tolist())
    assert sorted(seen) == indices.tolist()


def test_batch_shapes_fixed_by_budget(graphs_and_labels):
    graphs, labels = graphs_and_labels
    for batch in iterate_batches(graphs, labels, np.arange(50), BUDGET):
        assert batch.graphs.nodes.shape == (128, 9)
        assert batch.graphs.edges.shape == (256, 3)
        assert batch.graphs.senders.shape == (256,)
        assert batch.graphs.n_node.shape == (9,)
        assert batch.graphs.n_node.sum() == 128
        assert batch.graphs.n_edge.sum() == 256
        assert batch.labels.shape == (9, 4)
        assert batch.graph_mask.sum() <= 8
        assert not batch.graph_mask[-1]


def test_batch_contents_match_graphs(graphs_and_labels):
    graphs, labels = graphs_and_labels
    batch = pad_graph_batch(graphs, labels, [4, 7, 2], BUDGET)
    unpadded = jraph.unpad_with_graphs(batch.graphs)
    for position, index in enumerate([4, 7, 2]):
        start = int(unpadded.n_node[:position].sum())
        edge_start = int(unpadded.n_edge[:position].sum())
        num_nodes, num_edges = graphs[index]["num_nodes"], graphs[index]["edge_index"].shape[1]
        np.testing.assert_array_equal(unpadded.nodes[start : start + num_nodes], graphs[index]["node_feat"])
        senders = unpadded.senders[edge_start : edge_start + num_edges] - start
        receivers = unpadded.receivers[edge_start : edge_start + num_edges] - start
        np.testing.assert_array_equal(np.stack([senders, receivers]), graphs[index]["edge_index"])
    expected_labels = labels[[4, 7, 2]]
    np.testing.assert_array_equal(batch.label_mask[:3], ~np.isnan(expected_labels))
    np.testing.assert_array_equal(batch.labels[:3], np.nan_to_num(expected_labels, nan=0.0))
    assert not batch.label_mask[3:].any()
    assert not np.isnan(batch.labels).any()


def test_packing_respects_budget(graphs_and_labels):
    graphs, _ = graphs_and_labels
    runs = pack_indices(graphs, np.arange(50), BUDGET)
    for run in runs:
        assert len(run) <= BUDGET.max_graphs
        assert sum(graphs[i]["num_nodes"] for i in run) <= BUDGET.max_nodes - 1
        assert sum(graphs[i]["edge_index"].shape[1] for i in run) <= BUDGET.max_edges
    # Greedy packing: the first graph of each run would not have fit in the run before it.
    for previous, current in zip(runs, runs[1:]):
        nodes = sum(graphs[i]["num_nodes"] for i in previous) + graphs[current[0]]["num_nodes"]
        edges = sum(graphs[i]["edge_index"].shape[1] for i in previous) + graphs[current[0]]["edge_index"].shape[1]
        assert len(previous) == BUDGET.max_graphs or nodes > BUDGET.max_nodes - 1 or edges > BUDGET.max_edges


def test_shuffle_is_seeded(graphs_and_labels):
    graphs, labels = graphs_and_labels
    order = lambda seed: [b.graph_index.tolist() for b in iterate_batches(graphs, labels, np.arange(50), BUDGET, True, seed)]
    assert order(3) == order(3)
    assert order(3) != order(4)


def test_oversized_graph_rejected():
    graphs = [chain_graph(5, 0), chain_graph(200, 1)]
    labels = np.zeros((2, 1), dtype=np.float32)
    with pytest.raises(ValueError, match="graph 1 has 200 nodes"):
        list(iterate_batches(graphs, labels, [0, 1], BUDGET))
    with pytest.raises(ValueError, match="do not fit"):
        pad_graph_batch(graphs, labels, [1], BUDGET)


def test_node_budget_leaves_padding_node():
    labels = np.zeros((1, 1), dtype=np.float32)
    with pytest.raises(ValueError, match="127 nodes"):
        pack_indices([chain_graph(128, 0)], [0], BUDGET)
    batch = pad_graph_batch([chain_graph(127, 0)], labels, [0], BUDGET)
    assert batch.graphs.n_node.tolist()[:2] == [127, 1]
