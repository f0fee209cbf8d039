"""The in-memory form of a graph property prediction data set."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

SPLIT_NAMES: tuple[str, ...] = ("train", "valid", "test")


@dataclasses.dataclass
class MoleculeDataset:
    """Molecular graphs with multi-task labels and a train/valid/test split.

    ``graphs`` are dicts as returned by ``smiles_to_graph``: ``node_feat``
    int64 ``(n, 9)``, ``edge_index`` int64 ``(2, E)`` with both directions of
    every bond, ``edge_feat`` int64 ``(E, 3)`` and ``num_nodes``. ``labels`` is
    float32 ``(num_graphs, num_tasks)`` with NaN for a missing label. ``split``
    maps ``"train"``, ``"valid"`` and ``"test"`` to int64 graph indices.
    ``eval_metric`` is ``"ap"`` or ``"rocauc"``, the metric that the data set's
    benchmark reports.
    """

    name: str
    graphs: list[dict[str, Any]]
    labels: np.ndarray
    split: dict[str, np.ndarray]
    task_names: tuple[str, ...]
    eval_metric: str
    smiles: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        num_graphs = len(self.graphs)
        if self.labels.ndim != 2 or self.labels.shape[0] != num_graphs:
            raise ValueError(f"labels must have shape ({num_graphs}, num_tasks), got {self.labels.shape}")
        if len(self.task_names) != self.labels.shape[1]:
            raise ValueError(f"{len(self.task_names)} task names given for {self.labels.shape[1]} label columns")
        if self.smiles is not None and len(self.smiles) != num_graphs:
            raise ValueError(f"{len(self.smiles)} SMILES given for {num_graphs} graphs")
        if sorted(self.split) != sorted(SPLIT_NAMES):
            raise ValueError(f"split must have the keys {SPLIT_NAMES}, got {sorted(self.split)}")
        for split_name, indices in self.split.items():
            if indices.size and (indices.min() < 0 or indices.max() >= num_graphs):
                raise ValueError(f"split {split_name!r} has indices outside [0, {num_graphs})")

    def __len__(self) -> int:
        return len(self.graphs)

    @property
    def num_tasks(self) -> int:
        return int(self.labels.shape[1])
