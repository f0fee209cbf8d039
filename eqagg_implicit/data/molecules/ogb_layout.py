"""Read and write OGB's on-disk layout for graph property prediction.

This needs neither torch nor the ``ogb`` package. A data set folder such as
``ogbg_molpcba/`` (the folder that OGB's ``GraphPropPredDataset`` downloads and
unzips) contains gzip-compressed CSV files without a header row:

* ``raw/num-node-list.csv.gz`` and ``raw/num-edge-list.csv.gz``: one row per
  graph with its number of nodes and of undirected edges.
* ``raw/edge.csv.gz``: one row ``source,target`` per undirected edge, with node
  indices local to the edge's graph. Graphs follow one another in order.
* ``raw/node-feat.csv.gz`` and ``raw/edge-feat.csv.gz``: one row of integer
  features per node and per undirected edge.
* ``raw/graph-label.csv.gz``: one row per graph and one column per task, with
  an empty field (NaN) for a missing label.
* ``split/<split type>/{train,valid,test}.csv.gz``: one graph index per row.
* ``mapping/mol.csv.gz`` (optional): has a header row whose columns other
  than ``mol_id`` and ``smiles`` name the tasks.

OGB stores each undirected edge once and, for its molecule data sets
(``add_inverse_edge`` is True for all of them), adds the reverse edge right
after each edge when it builds the graphs. :func:`load_ogb_graph_dataset` does
the same, so its graphs match ``smiles_to_graph`` edge for edge.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from eqagg_implicit.data.molecules.dataset import SPLIT_NAMES, MoleculeDataset

RAW_FILES: tuple[str, ...] = (
    "num-node-list.csv.gz",
    "num-edge-list.csv.gz",
    "edge.csv.gz",
    "node-feat.csv.gz",
    "edge-feat.csv.gz",
    "graph-label.csv.gz",
)

_PANDAS_MISSING = 'pandas is required to read OGB files; install it with pip install "eqagg-implicit[molecules]"'


def _import_pandas() -> Any:
    try:
        import pandas
    except ImportError as error:
        raise ImportError(_PANDAS_MISSING) from error
    return pandas


def _read_table(
    path: Path,
    *,
    columns: int | None,
    integer: bool,
    allow_empty: bool = False,
) -> np.ndarray:
    """Read one headerless gzip CSV file as a 2-D array, raising clear errors."""
    pandas = _import_pandas()
    if not path.is_file():
        raise FileNotFoundError(f"OGB file {path} not found; the OGB graph property prediction layout requires it")

    try:
        frame = pandas.read_csv(path, compression="gzip", header=None)
    except pandas.errors.EmptyDataError:
        if allow_empty:
            return np.zeros((0, columns or 0), dtype=np.int64 if integer else np.float32)
        raise ValueError(f"OGB file {path} is empty") from None
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, pandas.errors.ParserError) as error:
        raise ValueError(f"OGB file {path} is not a readable gzip-compressed CSV file: {error}") from error

    if columns is not None and frame.shape[1] != columns:
        raise ValueError(f"OGB file {path} has {frame.shape[1]} columns per row, expected {columns}")
    if integer:
        if not all(pandas.api.types.is_integer_dtype(dtype) for dtype in frame.dtypes):
            raise ValueError(f"OGB file {path} must contain only integers, found missing or non-integer values")
        return frame.to_numpy(dtype=np.int64)
    try:
        return frame.to_numpy(dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise ValueError(f"OGB file {path} must contain only numbers or empty fields: {error}") from error


def _read_task_names(dataset_dir: Path, num_tasks: int) -> tuple[str, ...]:
    """Take task names from ``mapping/mol.csv.gz`` when its header fits the labels."""
    default_names = tuple(f"task_{index}" for index in range(num_tasks))
    mapping_path = dataset_dir / "mapping" / "mol.csv.gz"
    if not mapping_path.is_file():
        return default_names
    try:
        with gzip.open(mapping_path, "rt", encoding="utf-8") as mapping_file:
            header = mapping_file.readline().strip().split(",")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError):
        return default_names
    task_names = tuple(name for name in header if name not in ("mol_id", "smiles"))
    return task_names if len(task_names) == num_tasks else default_names


def _check_counts(name: str, counts: np.ndarray, path: Path) -> np.ndarray:
    counts = counts[:, 0]
    if counts.size and counts.min() < 0:
        raise ValueError(f"OGB file {path} has a negative {name} count")
    return counts


def load_ogb_graph_dataset(
    path: str | Path,
    split_type: str = "scaffold",
    eval_metric: str = "ap",
) -> MoleculeDataset:
    """Load an OGB graph property prediction data set folder, such as ``ogbg_molpcba/``.

    Returns a :class:`MoleculeDataset` whose graphs hold every undirected edge
    of ``raw/edge.csv.gz`` as ``(i, j)`` followed by ``(j, i)``, both with the
    edge's features. The split comes from ``split/<split_type>/``.
    ``eval_metric`` is stored on the data set; molpcba reports ``"ap"``.

    Raises FileNotFoundError naming a missing folder or file, and ValueError
    for a file that is not gzip CSV, has the wrong number of columns or rows,
    contains non-integer values where integers are expected, or refers to nodes
    or graphs that do not exist.
    """
    dataset_dir = Path(path)
    if not dataset_dir.is_dir():
        raise FileNotFoundError(
            f"OGB data set folder {dataset_dir} not found; expected a folder with raw/ and split/ "
            "as unpacked by OGB (for example dataset/ogbg_molpcba)"
        )
    raw_dir = dataset_dir / "raw"
    num_nodes_path, num_edges_path, edge_path, node_feat_path, edge_feat_path, label_path = (
        raw_dir / name for name in RAW_FILES
    )

    num_nodes = _check_counts("node", _read_table(num_nodes_path, columns=1, integer=True), num_nodes_path)
    num_edges = _check_counts("edge", _read_table(num_edges_path, columns=1, integer=True), num_edges_path)
    num_graphs = len(num_nodes)
    if len(num_edges) != num_graphs:
        raise ValueError(f"OGB file {num_edges_path} has {len(num_edges)} rows but {num_nodes_path} has {num_graphs}")
    total_nodes, total_edges = int(num_nodes.sum()), int(num_edges.sum())

    edges = _read_table(edge_path, columns=2, integer=True, allow_empty=total_edges == 0)
    node_feat = _read_table(node_feat_path, columns=None, integer=True)
    edge_feat = _read_table(edge_feat_path, columns=None, integer=True, allow_empty=total_edges == 0)
    labels = _read_table(label_path, columns=None, integer=False)

    for file_path, rows, expected, unit in (
        (node_feat_path, len(node_feat), total_nodes, f"nodes, the sum of {num_nodes_path.name}"),
        (edge_path, len(edges), total_edges, f"edges, the sum of {num_edges_path.name}"),
        (edge_feat_path, len(edge_feat), total_edges, f"edges, the sum of {num_edges_path.name}"),
        (label_path, len(labels), num_graphs, f"graphs, the rows of {num_nodes_path.name}"),
    ):
        if rows != expected:
            raise ValueError(f"OGB file {file_path} has {rows} rows, expected {expected} ({unit})")

    # Node indices in edge.csv are local to each graph, so compare each edge with
    # the node count of the graph that it belongs to.
    edge_graph = np.repeat(np.arange(num_graphs), num_edges)
    if edges.size and (edges.min() < 0 or np.any(edges.max(axis=1) >= num_nodes[edge_graph])):
        bad_row = int(np.flatnonzero((edges.min(axis=1) < 0) | (edges.max(axis=1) >= num_nodes[edge_graph]))[0])
        raise ValueError(
            f"OGB file {edge_path} row {bad_row} refers to node {edges[bad_row].tolist()} "
            f"outside graph {edge_graph[bad_row]}, which has {num_nodes[edge_graph[bad_row]]} nodes"
        )

    both_directions = np.empty((2 * total_edges, 2), dtype=np.int64)
    both_directions[0::2] = edges
    both_directions[1::2] = edges[:, ::-1]
    both_edge_feat = np.repeat(edge_feat, 2, axis=0)

    node_offsets = np.concatenate([[0], np.cumsum(num_nodes)])
    edge_offsets = 2 * np.concatenate([[0], np.cumsum(num_edges)])
    graphs = [
        {
            "node_feat": node_feat[node_offsets[index] : node_offsets[index + 1]],
            "edge_index": both_directions[edge_offsets[index] : edge_offsets[index + 1]].T,
            "edge_feat": both_edge_feat[edge_offsets[index] : edge_offsets[index + 1]],
            "num_nodes": int(num_nodes[index]),
        }
        for index in range(num_graphs)
    ]

    split_dir = dataset_dir / "split" / split_type
    if not split_dir.is_dir():
        raise FileNotFoundError(
            f"OGB split folder {split_dir} not found; expected train.csv.gz, valid.csv.gz and test.csv.gz there"
        )
    split = {}
    for split_name in SPLIT_NAMES:
        split_path = split_dir / f"{split_name}.csv.gz"
        indices = _read_table(split_path, columns=1, integer=True, allow_empty=True)[:, 0]
        if indices.size and (indices.min() < 0 or indices.max() >= num_graphs):
            raise ValueError(f"OGB file {split_path} has graph indices outside [0, {num_graphs})")
        split[split_name] = indices

    return MoleculeDataset(
        name=dataset_dir.name,
        graphs=graphs,
        labels=labels,
        split=split,
        task_names=_read_task_names(dataset_dir, labels.shape[1]),
        eval_metric=eval_metric,
    )


def write_ogb_graph_dataset(
    path: str | Path,
    graphs: Sequence[dict[str, Any]],
    labels: np.ndarray,
    split: dict[str, np.ndarray],
    split_type: str = "scaffold",
) -> None:
    """Write graphs in OGB's layout, so that :func:`load_ogb_graph_dataset` reads them back.

    Each graph's ``edge_index`` must list every edge as ``(i, j)`` directly
    followed by ``(j, i)`` with equal features, as ``smiles_to_graph`` does.
    Only the first edge of each pair is written. Raises ValueError otherwise.
    """
    pandas = _import_pandas()
    dataset_dir = Path(path)
    labels = np.asarray(labels, dtype=np.float32)
    if labels.ndim != 2 or len(labels) != len(graphs):
        raise ValueError(f"labels must have shape ({len(graphs)}, num_tasks), got {labels.shape}")

    edge_rows, edge_feat_rows, node_feat_rows, num_edges = [], [], [], []
    for index, graph in enumerate(graphs):
        edge_index = np.asarray(graph["edge_index"])
        edge_feat = np.asarray(graph["edge_feat"])
        forward, backward = edge_index[:, 0::2], edge_index[:, 1::2]
        paired = (
            edge_index.shape[1] % 2 == 0
            and np.array_equal(forward, backward[::-1])
            and np.array_equal(edge_feat[0::2], edge_feat[1::2])
        )
        if not paired:
            raise ValueError(f"graph {index} does not list each edge as (i, j) followed by (j, i) with equal features")
        edge_rows.append(forward.T)
        edge_feat_rows.append(edge_feat[0::2])
        node_feat_rows.append(np.asarray(graph["node_feat"]))
        num_edges.append(forward.shape[1])

    raw_dir = dataset_dir / "raw"
    split_dir = dataset_dir / "split" / split_type
    raw_dir.mkdir(parents=True, exist_ok=True)
    split_dir.mkdir(parents=True, exist_ok=True)

    def write(array: np.ndarray, file_path: Path) -> None:
        pandas.DataFrame(array).to_csv(file_path, header=False, index=False, compression="gzip")

    write(np.asarray([graph["num_nodes"] for graph in graphs], dtype=np.int64)[:, None], raw_dir / "num-node-list.csv.gz")
    write(np.asarray(num_edges, dtype=np.int64)[:, None], raw_dir / "num-edge-list.csv.gz")
    write(np.concatenate(edge_rows).reshape(-1, 2), raw_dir / "edge.csv.gz")
    write(np.concatenate(node_feat_rows), raw_dir / "node-feat.csv.gz")
    write(np.concatenate(edge_feat_rows).reshape(-1, edge_feat_rows[0].shape[1]), raw_dir / "edge-feat.csv.gz")
    write(labels, raw_dir / "graph-label.csv.gz")
    for split_name in SPLIT_NAMES:
        write(np.asarray(split[split_name], dtype=np.int64)[:, None], split_dir / f"{split_name}.csv.gz")
