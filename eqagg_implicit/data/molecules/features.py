"""OGB's integer atom and bond features for molecules given as SMILES.

The vocabularies and the fallback rule match ``ogb.utils.features`` (OGB
1.3.x): a value outside a vocabulary maps to its last entry, ``"misc"``.
Graphs follow ``ogb.utils.mol.smiles2graph``: hydrogens stay implicit, and
each bond becomes two directed edges, ``(i, j)`` then ``(j, i)``, with the
same features.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MISC = "misc"

ATOMIC_NUMBERS: tuple[Any, ...] = (*range(1, 119), MISC)
CHIRALITY_TAGS: tuple[Any, ...] = (
    "CHI_UNSPECIFIED",
    "CHI_TETRAHEDRAL_CW",
    "CHI_TETRAHEDRAL_CCW",
    "CHI_OTHER",
    MISC,
)
DEGREES: tuple[Any, ...] = (*range(0, 11), MISC)
FORMAL_CHARGES: tuple[Any, ...] = (*range(-5, 6), MISC)
HYDROGEN_COUNTS: tuple[Any, ...] = (*range(0, 9), MISC)
RADICAL_ELECTRON_COUNTS: tuple[Any, ...] = (*range(0, 5), MISC)
HYBRIDIZATIONS: tuple[Any, ...] = ("SP", "SP2", "SP3", "SP3D", "SP3D2", MISC)
IS_AROMATIC: tuple[Any, ...] = (False, True)
IS_IN_RING: tuple[Any, ...] = (False, True)

BOND_TYPES: tuple[Any, ...] = ("SINGLE", "DOUBLE", "TRIPLE", "AROMATIC", MISC)
# OGB's stereo list has no "misc" entry and OGB fails on other values.
# NOTE: values that RDKit added later (STEREOATROPCW, STEREOATROPCCW) map to the
# last entry, STEREOANY, here, so such molecules load instead of failing.
BOND_STEREOS: tuple[Any, ...] = (
    "STEREONONE",
    "STEREOZ",
    "STEREOE",
    "STEREOCIS",
    "STEREOTRANS",
    "STEREOANY",
)
IS_CONJUGATED: tuple[Any, ...] = (False, True)

ATOM_VOCABULARIES: tuple[tuple[Any, ...], ...] = (
    ATOMIC_NUMBERS,
    CHIRALITY_TAGS,
    DEGREES,
    FORMAL_CHARGES,
    HYDROGEN_COUNTS,
    RADICAL_ELECTRON_COUNTS,
    HYBRIDIZATIONS,
    IS_AROMATIC,
    IS_IN_RING,
)
BOND_VOCABULARIES: tuple[tuple[Any, ...], ...] = (BOND_TYPES, BOND_STEREOS, IS_CONJUGATED)

ATOM_FEATURE_NAMES: tuple[str, ...] = (
    "atomic_num",
    "chirality",
    "degree",
    "formal_charge",
    "num_h",
    "num_radical_electrons",
    "hybridization",
    "is_aromatic",
    "is_in_ring",
)
BOND_FEATURE_NAMES: tuple[str, ...] = ("bond_type", "bond_stereo", "is_conjugated")

_RDKIT_MISSING = 'RDKit is required for SMILES featurisation; install it with pip install "eqagg-implicit[molecules]"'


def import_rdkit_chem() -> Any:
    """Import ``rdkit.Chem`` on first use, with an install hint if it is missing."""
    try:
        from rdkit import Chem, RDLogger
    except ImportError as error:
        raise ImportError(_RDKIT_MISSING) from error
    RDLogger.DisableLog("rdApp.*")
    return Chem


def atom_feature_dims() -> list[int]:
    """Return the vocabulary size of each of the 9 atom features."""
    return [len(vocabulary) for vocabulary in ATOM_VOCABULARIES]


def bond_feature_dims() -> list[int]:
    """Return the vocabulary size of each of the 3 bond features."""
    return [len(vocabulary) for vocabulary in BOND_VOCABULARIES]


def _index_maps(vocabularies: tuple[tuple[Any, ...], ...]) -> tuple[dict[Any, int], ...]:
    # The dicts give O(1) lookups. Booleans only occur in two-entry lists without
    # numbers, so True == 1 cannot collide with a number key.
    return tuple({value: index for index, value in enumerate(vocabulary)} for vocabulary in vocabularies)


_ATOM_INDEX_MAPS = _index_maps(ATOM_VOCABULARIES)
_BOND_INDEX_MAPS = _index_maps(BOND_VOCABULARIES)


def _encode(index_maps: tuple[dict[Any, int], ...], values: tuple[Any, ...]) -> list[int]:
    """Map each value to its index in its vocabulary, or the last index if absent."""
    return [index_map.get(value, len(index_map) - 1) for index_map, value in zip(index_maps, values)]


def atom_to_feature_vector(atom: Any) -> list[int]:
    """Encode an RDKit atom as 9 vocabulary indices, in ``ATOM_FEATURE_NAMES`` order."""
    values = (
        atom.GetAtomicNum(),
        str(atom.GetChiralTag()),
        atom.GetTotalDegree(),
        atom.GetFormalCharge(),
        atom.GetTotalNumHs(),
        atom.GetNumRadicalElectrons(),
        str(atom.GetHybridization()),
        atom.GetIsAromatic(),
        atom.IsInRing(),
    )
    return _encode(_ATOM_INDEX_MAPS, values)


def bond_to_feature_vector(bond: Any) -> list[int]:
    """Encode an RDKit bond as 3 vocabulary indices, in ``BOND_FEATURE_NAMES`` order."""
    values = (str(bond.GetBondType()), str(bond.GetStereo()), bond.GetIsConjugated())
    return _encode(_BOND_INDEX_MAPS, values)


def mol_to_graph(mol: Any) -> dict[str, Any]:
    """Convert an RDKit molecule to a graph dict; see :func:`smiles_to_graph`."""
    # Indexing by position is faster than iterating RDKit's atom and bond sequences.
    atoms = [mol.GetAtomWithIdx(index) for index in range(mol.GetNumAtoms())]
    bonds = [mol.GetBondWithIdx(index) for index in range(mol.GetNumBonds())]
    node_feat = np.asarray([atom_to_feature_vector(atom) for atom in atoms], dtype=np.int64)
    node_feat = node_feat.reshape(-1, len(ATOM_VOCABULARIES))

    edges: list[tuple[int, int]] = []
    edge_features: list[list[int]] = []
    for bond in bonds:
        begin, end = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        feature = bond_to_feature_vector(bond)
        edges += [(begin, end), (end, begin)]
        edge_features += [feature, feature]

    edge_index = np.asarray(edges, dtype=np.int64).reshape(-1, 2).T
    edge_feat = np.asarray(edge_features, dtype=np.int64).reshape(-1, len(BOND_VOCABULARIES))
    return {
        "node_feat": node_feat,
        "edge_index": np.ascontiguousarray(edge_index),
        "edge_feat": edge_feat,
        "num_nodes": int(node_feat.shape[0]),
    }


def parse_smiles(smiles: str) -> Any:
    """Parse SMILES with RDKit, raising ValueError naming the string if it is invalid."""
    chem = import_rdkit_chem()
    mol = chem.MolFromSmiles(smiles) if isinstance(smiles, str) else None
    if mol is None:
        raise ValueError(f"RDKit cannot parse SMILES {smiles!r}; check the string for typos or valence errors")
    return mol


def smiles_to_graph(smiles: str) -> dict[str, Any]:
    """Featurise one molecule the way OGB's ``smiles2graph`` does.

    Returns a dict with ``node_feat`` int64 ``(n, 9)``, ``edge_index`` int64
    ``(2, E)`` holding every bond in both directions, ``edge_feat`` int64
    ``(E, 3)`` and ``num_nodes`` (an int). Raises ValueError naming the SMILES
    if RDKit cannot parse it, and ImportError if RDKit is not installed.
    """
    return mol_to_graph(parse_smiles(smiles))
