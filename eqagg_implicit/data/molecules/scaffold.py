"""Bemis-Murcko scaffold split, the split of OGB's molecule data sets."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from eqagg_implicit.data.molecules.features import import_rdkit_chem


def murcko_scaffold(molecule: str | Any, include_chirality: bool = True) -> str:
    """Return the canonical SMILES of a molecule's Bemis-Murcko scaffold.

    ``molecule`` is a SMILES string or an RDKit molecule. Acyclic molecules
    have the empty scaffold ``""``. Raises ValueError naming the SMILES if
    RDKit cannot parse it.
    """
    chem = import_rdkit_chem()
    from rdkit.Chem.Scaffolds import MurckoScaffold

    mol = chem.MolFromSmiles(molecule) if isinstance(molecule, str) else molecule
    if mol is None:
        raise ValueError(f"RDKit cannot parse SMILES {molecule!r}, so it has no scaffold")
    return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=include_chirality)


def scaffold_split(
    scaffolds: Sequence[str],
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
) -> dict[str, np.ndarray]:
    """Split molecules by scaffold so that no scaffold crosses two splits.

    ``scaffolds`` contains one scaffold string per molecule. Molecules are grouped
    by scaffold and the groups are sorted by size, largest first, with ties in
    order of each group's first molecule. In that order each group goes to
    train if train then contains at most ``fractions[0]`` of the molecules, else
    to valid if train plus valid then hold at most ``fractions[0] +
    fractions[1]``, else to test. A small group can thus still fill train or
    valid after a larger one went past it. This is MoleculeNet's scheme, which
    puts rare scaffolds in valid and test.
    Returns sorted int64 indices for ``"train"``, ``"valid"`` and ``"test"``.
    """
    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers that sum to 1, got {fractions}")

    groups: dict[str, list[int]] = {}
    for index, scaffold in enumerate(scaffolds):
        groups.setdefault(scaffold, []).append(index)
    ordered = sorted(groups.values(), key=lambda members: (-len(members), members[0]))

    num_molecules = len(scaffolds)
    train_cutoff = fractions[0] * num_molecules
    valid_cutoff = (fractions[0] + fractions[1]) * num_molecules
    train: list[int] = []
    valid: list[int] = []
    test: list[int] = []
    for members in ordered:
        if len(train) + len(members) <= train_cutoff:
            train += members
        elif len(train) + len(valid) + len(members) <= valid_cutoff:
            valid += members
        else:
            test += members
    return {name: np.sort(np.asarray(part, dtype=np.int64)) for name, part in (("train", train), ("valid", valid), ("test", test))}
