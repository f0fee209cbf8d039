"""Padded ``jraph.GraphsTuple`` batches with fixed shapes, so ``jax.jit`` compiles once.

A :class:`BatchBudget` fixes every array shape of a batch: ``max_graphs`` real
graphs plus one padding graph, ``max_nodes`` nodes and ``max_edges`` edges in
total, padding included. ``jraph.pad_with_graphs`` needs at least one padding
node, so the real graphs of a batch hold at most ``max_nodes - 1`` nodes and at
most ``max_edges`` edges. :func:`iterate_batches` packs graphs greedily in
order until the next one would break the budget ("dynamic batching"), so a
batch may hold fewer than ``max_graphs`` graphs.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator, NamedTuple, Sequence

import jraph
import numpy as np


@dataclasses.dataclass(frozen=True)
class BatchBudget:
    """Fixed batch size: real graphs, and total nodes and edges including padding."""

    max_graphs: int = 8
    max_nodes: int = 1024
    max_edges: int = 2048

    def __post_init__(self) -> None:
        if self.max_graphs < 1 or self.max_nodes < 2 or self.max_edges < 0:
            raise ValueError(f"invalid budget {self}: need max_graphs >= 1, max_nodes >= 2 and max_edges >= 0")

    @property
    def padded_graphs(self) -> int:
        """Graph count of every padded batch: the real graphs plus one padding graph."""
        return self.max_graphs + 1

    def fits(self, num_graphs: int, num_nodes: int, num_edges: int) -> bool:
        """Return whether real graphs of these totals fit, leaving one padding node."""
        return num_graphs <= self.max_graphs and num_nodes <= self.max_nodes - 1 and num_edges <= self.max_edges


class GraphBatch(NamedTuple):
    """One padded batch; its array shapes depend only on the budget and the task count.

    ``graphs`` contains int32 ``nodes`` ``(max_nodes, 9)``, ``edges``
    ``(max_edges, 3)``, ``senders``/``receivers`` ``(max_edges,)`` and
    ``n_node``/``n_edge`` ``(max_graphs + 1,)``, with ``globals`` None.
    ``labels`` is float32 ``(max_graphs + 1, num_tasks)`` with 0 wherever
    ``label_mask`` is False: at missing (NaN) labels and padding graphs.
    ``graph_mask`` is True for real graphs, and ``graph_index`` contains each real
    graph's index in the data set and -1 for padding graphs.
    """

    graphs: jraph.GraphsTuple
    labels: np.ndarray
    label_mask: np.ndarray
    graph_mask: np.ndarray
    graph_index: np.ndarray


def graph_size(graph: dict[str, Any]) -> tuple[int, int]:
    """Return ``(num_nodes, num_edges)`` of a graph dict."""
    return int(graph["num_nodes"]), int(np.shape(graph["edge_index"])[1])


def pad_graph_batch(
    graphs: Sequence[dict[str, Any]],
    labels: np.ndarray,
    indices: Sequence[int],
    budget: BatchBudget = BatchBudget(),
) -> GraphBatch:
    """Batch the graphs at ``indices`` and pad the batch to ``budget``.

    ``labels`` is ``(num_graphs, num_tasks)`` for the whole data set. Raises
    ValueError if ``indices`` is empty or the graphs do not fit the budget.
    """
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size == 0:
        raise ValueError("cannot build a batch from no graphs")
    chosen = [graphs[index] for index in indices]
    sizes = np.asarray([graph_size(graph) for graph in chosen], dtype=np.int64).reshape(-1, 2)
    num_nodes, num_edges = sizes[:, 0], sizes[:, 1]
    if not budget.fits(len(chosen), int(num_nodes.sum()), int(num_edges.sum())):
        raise ValueError(
            f"{len(chosen)} graphs with {num_nodes.sum()} nodes and {num_edges.sum()} edges do not fit {budget} "
            "(real nodes must leave one padding node)"
        )

    # Edge indices are local to each graph, so shift them by the nodes before it.
    node_offsets = np.concatenate([[0], np.cumsum(num_nodes)[:-1]])
    edge_index = np.concatenate(
        [np.asarray(graph["edge_index"], dtype=np.int64).reshape(2, -1) + offset for graph, offset in zip(chosen, node_offsets)],
        axis=1,
    )
    batch = jraph.GraphsTuple(
        nodes=np.concatenate([np.asarray(graph["node_feat"]) for graph in chosen]).astype(np.int32),
        edges=np.concatenate([np.asarray(graph["edge_feat"]) for graph in chosen]).astype(np.int32),
        senders=edge_index[0].astype(np.int32),
        receivers=edge_index[1].astype(np.int32),
        n_node=num_nodes.astype(np.int32),
        n_edge=num_edges.astype(np.int32),
        globals=None,
    )
    padded = jraph.pad_with_graphs(batch, n_node=budget.max_nodes, n_edge=budget.max_edges, n_graph=budget.padded_graphs)

    labels = np.asarray(labels, dtype=np.float32)
    padded_labels = np.zeros((budget.padded_graphs, labels.shape[1]), dtype=np.float32)
    padded_labels[: len(chosen)] = labels[indices]
    label_mask = ~np.isnan(padded_labels)
    label_mask[len(chosen) :] = False
    padded_labels[~label_mask] = 0.0

    graph_mask = np.zeros(budget.padded_graphs, dtype=bool)
    graph_mask[: len(chosen)] = True
    graph_index = np.full(budget.padded_graphs, -1, dtype=np.int64)
    graph_index[: len(chosen)] = indices
    return GraphBatch(padded, padded_labels, label_mask, graph_mask, graph_index)


def pack_indices(
    graphs: Sequence[dict[str, Any]],
    indices: Sequence[int],
    budget: BatchBudget = BatchBudget(),
) -> list[np.ndarray]:
    """Group ``indices``, in order, into runs that each fit the budget.

    A run closes when adding the next graph would exceed ``max_graphs``, the
    real-node limit ``max_nodes - 1`` or ``max_edges``. Raises ValueError
    naming the graph if a single graph does not fit.
    """
    runs: list[np.ndarray] = []
    current: list[int] = []
    nodes = edges = 0
    for index in np.asarray(indices, dtype=np.int64):
        num_nodes, num_edges = graph_size(graphs[index])
        if not budget.fits(1, num_nodes, num_edges):
            raise ValueError(
                f"graph {index} has {num_nodes} nodes and {num_edges} edges, more than {budget} allows "
                f"(at most {budget.max_nodes - 1} nodes and {budget.max_edges} edges); raise the budget"
            )
        if current and not budget.fits(len(current) + 1, nodes + num_nodes, edges + num_edges):
            runs.append(np.asarray(current, dtype=np.int64))
            current, nodes, edges = [], 0, 0
        current.append(int(index))
        nodes += num_nodes
        edges += num_edges
    if current:
        runs.append(np.asarray(current, dtype=np.int64))
    return runs


def iterate_batches(
    graphs: Sequence[dict[str, Any]],
    labels: np.ndarray,
    indices: Sequence[int],
    budget: BatchBudget = BatchBudget(),
    shuffle: bool = False,
    seed: int = 0,
) -> Iterator[GraphBatch]:
    """Yield padded batches that hold each graph of ``indices`` exactly once.

    With ``shuffle`` the indices are permuted by ``numpy.random.default_rng(seed)``
    first, so each seed gives one fixed order. Packing runs on the first
    ``next()`` call and checks every graph against the budget, so an oversized
    graph raises ValueError before any batch is yielded.
    """
    order = np.asarray(indices, dtype=np.int64)
    if shuffle:
        order = np.random.default_rng(seed).permutation(order)
    for run in pack_indices(graphs, order, budget):
        yield pad_graph_batch(graphs, labels, run, budget)
