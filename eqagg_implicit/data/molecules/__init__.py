"""Molecular graphs: OGB featurisation, OGB's file layout, metrics, batching.

RDKit and pandas are imported on first use, so importing this package needs
only numpy and jraph.
"""

from eqagg_implicit.data.molecules.batching import (
    BatchBudget,
    GraphBatch,
    iterate_batches,
    pack_indices,
    pad_graph_batch,
)
from eqagg_implicit.data.molecules.dataset import SPLIT_NAMES, MoleculeDataset
from eqagg_implicit.data.molecules.default import (
    DEFAULT_DATASET_NAME,
    default_cache_dir,
    load_default_molecule_dataset,
)
from eqagg_implicit.data.molecules.features import (
    ATOM_FEATURE_NAMES,
    BOND_FEATURE_NAMES,
    atom_feature_dims,
    atom_to_feature_vector,
    bond_feature_dims,
    bond_to_feature_vector,
    mol_to_graph,
    smiles_to_graph,
)
from eqagg_implicit.data.molecules.metrics import (
    NoValidTaskError,
    evaluate,
    mean_average_precision,
    mean_roc_auc,
    per_task_scores,
)
from eqagg_implicit.data.molecules.ogb_layout import load_ogb_graph_dataset, write_ogb_graph_dataset
from eqagg_implicit.data.molecules.scaffold import murcko_scaffold, scaffold_split

__all__ = [
    "ATOM_FEATURE_NAMES",
    "BOND_FEATURE_NAMES",
    "DEFAULT_DATASET_NAME",
    "SPLIT_NAMES",
    "BatchBudget",
    "GraphBatch",
    "MoleculeDataset",
    "NoValidTaskError",
    "atom_feature_dims",
    "atom_to_feature_vector",
    "bond_feature_dims",
    "bond_to_feature_vector",
    "default_cache_dir",
    "evaluate",
    "iterate_batches",
    "load_default_molecule_dataset",
    "load_ogb_graph_dataset",
    "mean_average_precision",
    "mean_roc_auc",
    "mol_to_graph",
    "murcko_scaffold",
    "pack_indices",
    "pad_graph_batch",
    "per_task_scores",
    "scaffold_split",
    "smiles_to_graph",
    "write_ogb_graph_dataset",
]
