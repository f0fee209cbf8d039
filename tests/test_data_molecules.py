import gzip
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rdkit", reason="the molecules extra (RDKit) is not installed")
pytest.importorskip("pandas", reason="the molecules extra (pandas) is not installed")

from sklearn.metrics import average_precision_score, roc_auc_score

from eqagg_implicit.data.molecules import (
    NoValidTaskError,
    atom_feature_dims,
    bond_feature_dims,
    load_ogb_graph_dataset,
    mean_average_precision,
    mean_roc_auc,
    murcko_scaffold,
    scaffold_split,
    smiles_to_graph,
    write_ogb_graph_dataset,
)

# Index of each value in OGB's vocabularies: atomic number z is at z - 1, formal
# charge 0 at 5, hybridisation SP/SP2/SP3 at 0/1/2, "misc" at the end.
CARBON, NITROGEN, OXYGEN, CHLORINE = 5, 6, 7, 16


def test_feature_dims_match_ogb():
    assert atom_feature_dims() == [119, 5, 12, 12, 10, 6, 6, 2, 2]
    assert bond_feature_dims() == [5, 6, 2]


def test_benzene_graph():
    graph = smiles_to_graph("c1ccccc1")
    assert graph["num_nodes"] == 6
    assert graph["node_feat"].dtype == np.int64
    # carbon, no chirality, degree 3, charge 0, one H, no radical, SP2, aromatic, in ring
    np.testing.assert_array_equal(graph["node_feat"], np.tile([CARBON, 0, 3, 5, 1, 0, 1, 1, 1], (6, 1)))
    assert graph["edge_index"].shape == (2, 12)
    # Aromatic bond, no stereo, conjugated.
    np.testing.assert_array_equal(graph["edge_feat"], np.tile([3, 0, 1], (12, 1)))


def test_edges_in_both_directions():
    graph = smiles_to_graph("CCO")
    np.testing.assert_array_equal(graph["edge_index"], [[0, 1, 1, 2], [1, 0, 2, 1]])
    np.testing.assert_array_equal(graph["node_feat"][:, 0], [CARBON, CARBON, OXYGEN])
    # Ethanol has only single, non-conjugated bonds and no rings.
    np.testing.assert_array_equal(graph["edge_feat"], np.tile([0, 0, 0], (4, 1)))
    assert graph["node_feat"][:, 8].tolist() == [0, 0, 0]


def test_chiral_atom_and_stereo_bond():
    # OGB's own example: the chiral carbon and the E double bond of Cl[C@H](/C=C/C)Br.
    graph = smiles_to_graph("Cl[C@H](/C=C/C)Br")
    np.testing.assert_array_equal(graph["node_feat"][1], [CARBON, 2, 4, 5, 1, 0, 2, 0, 0])
    np.testing.assert_array_equal(graph["edge_feat"][4], [1, 2, 0])
    assert graph["node_feat"][0, 0] == CHLORINE


def test_charges_and_misc_fallback():
    graph = smiles_to_graph("C[N+](C)(C)C.*")
    assert graph["node_feat"][1, 0] == NITROGEN
    assert graph["node_feat"][1, 3] == 6  # formal charge +1
    # The dummy atom "*" has atomic number 0, which falls back to "misc".
    assert graph["node_feat"][5, 0] == atom_feature_dims()[0] - 1


def test_molecule_without_bonds():
    graph = smiles_to_graph("[Na+].[Cl-]")
    assert graph["edge_index"].shape == (2, 0)
    assert graph["edge_feat"].shape == (0, 3)


def test_invalid_smiles_names_string():
    with pytest.raises(ValueError, match="C1CC"):
        smiles_to_graph("C1CC")


SMILES = ("c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "[Na+].[Cl-]")


@pytest.fixture
def ogb_folder(tmp_path: Path) -> tuple[Path, list, np.ndarray, dict]:
    graphs = [smiles_to_graph(smiles) for smiles in SMILES]
    labels = np.array([[1.0, np.nan], [0.0, 1.0], [np.nan, 0.0]], dtype=np.float32)
    split = {"train": np.array([0, 2]), "valid": np.array([1]), "test": np.array([], dtype=np.int64)}
    folder = tmp_path / "ogbg_moltiny"
    write_ogb_graph_dataset(folder, graphs, labels, split)
    return folder, graphs, labels, split


def read_gzip_lines(path: Path) -> list[str]:
    with gzip.open(path, "rt") as file:
        return file.read().splitlines()


def test_ogb_writer_stores_each_edge_once(ogb_folder):
    folder, graphs, _, _ = ogb_folder
    assert read_gzip_lines(folder / "raw" / "num-edge-list.csv.gz") == ["7", "11", "0"]
    assert len(read_gzip_lines(folder / "raw" / "edge.csv.gz")) == 18
    assert read_gzip_lines(folder / "raw" / "edge.csv.gz")[0] == "0,1"


def test_ogb_round_trip(ogb_folder):
    folder, graphs, labels, split = ogb_folder
    dataset = load_ogb_graph_dataset(folder)
    assert dataset.name == "ogbg_moltiny"
    assert len(dataset) == 3
    for loaded, original in zip(dataset.graphs, graphs):
        assert loaded["num_nodes"] == original["num_nodes"]
        for key in ("node_feat", "edge_index", "edge_feat"):
            np.testing.assert_array_equal(loaded[key], original[key])
            assert loaded[key].dtype == np.int64
    np.testing.assert_array_equal(dataset.labels, labels)
    assert dataset.labels.dtype == np.float32
    for name in ("train", "valid", "test"):
        np.testing.assert_array_equal(dataset.split[name], split[name])
    assert dataset.task_names == ("task_0", "task_1")


def test_ogb_task_names_from_mapping(ogb_folder):
    folder = ogb_folder[0]
    (folder / "mapping").mkdir()
    with gzip.open(folder / "mapping" / "mol.csv.gz", "wt") as file:
        file.write("assay-a,assay-b,mol_id,smiles\n")
    assert load_ogb_graph_dataset(folder).task_names == ("assay-a", "assay-b")


def rewrite_gzip(path: Path, text: str) -> None:
    with gzip.open(path, "wt") as file:
        file.write(text)


def test_ogb_missing_file(ogb_folder):
    folder = ogb_folder[0]
    (folder / "raw" / "edge-feat.csv.gz").unlink()
    with pytest.raises(FileNotFoundError, match="edge-feat.csv.gz"):
        load_ogb_graph_dataset(folder)


def test_ogb_missing_folder_and_split(ogb_folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="absent"):
        load_ogb_graph_dataset(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="random"):
        load_ogb_graph_dataset(ogb_folder[0], split_type="random")


def test_ogb_file_not_gzip(ogb_folder):
    folder = ogb_folder[0]
    (folder / "raw" / "node-feat.csv.gz").write_text("5,0,3\n")
    with pytest.raises(ValueError, match="node-feat.csv.gz.*gzip"):
        load_ogb_graph_dataset(folder)


def test_ogb_wrong_column_count(ogb_folder):
    folder = ogb_folder[0]
    rewrite_gzip(folder / "raw" / "edge.csv.gz", "0,1,2\n" * 18)
    with pytest.raises(ValueError, match="edge.csv.gz has 3 columns"):
        load_ogb_graph_dataset(folder)


def test_ogb_node_count_mismatch(ogb_folder):
    folder = ogb_folder[0]
    rewrite_gzip(folder / "raw" / "num-node-list.csv.gz", "7\n11\n3\n")
    with pytest.raises(ValueError, match="node-feat.csv.gz has 20 rows, expected 21"):
        load_ogb_graph_dataset(folder)


def test_ogb_edge_outside_graph(ogb_folder):
    folder = ogb_folder[0]
    edges = read_gzip_lines(folder / "raw" / "edge.csv.gz")
    edges[0] = "0,9"
    rewrite_gzip(folder / "raw" / "edge.csv.gz", "\n".join(edges) + "\n")
    with pytest.raises(ValueError, match="row 0 refers to node"):
        load_ogb_graph_dataset(folder)


def test_ogb_non_integer_features(ogb_folder):
    folder = ogb_folder[0]
    lines = read_gzip_lines(folder / "raw" / "edge-feat.csv.gz")
    lines[2] = "0,x,1"
    rewrite_gzip(folder / "raw" / "edge-feat.csv.gz", "\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="edge-feat.csv.gz must contain only integers"):
        load_ogb_graph_dataset(folder)


def test_ogb_split_index_out_of_range(ogb_folder):
    folder = ogb_folder[0]
    rewrite_gzip(folder / "split" / "scaffold" / "test.csv.gz", "3\n")
    with pytest.raises(ValueError, match="test.csv.gz has graph indices outside"):
        load_ogb_graph_dataset(folder)


def test_ogb_writer_rejects_one_way_edges():
    graph = smiles_to_graph("CC")
    graph["edge_index"] = graph["edge_index"][:, :1]
    graph["edge_feat"] = graph["edge_feat"][:1]
    with pytest.raises(ValueError, match="graph 0"):
        write_ogb_graph_dataset("unused", [graph], np.zeros((1, 1)), {})


def direct_mean_score(y_true, y_pred, score):
    scores = []
    for task in range(y_true.shape[1]):
        labelled = ~np.isnan(y_true[:, task])
        labels = y_true[labelled, task]
        if labels.min(initial=2) == 0 and labels.max(initial=-1) == 1:
            scores.append(score(labels, y_pred[labelled, task]))
    return np.mean(scores)


def test_metrics_match_sklearn_with_missing_labels():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, size=(200, 6)).astype(np.float64)
    y_true[rng.random(y_true.shape) < 0.4] = np.nan
    y_true[:, 4] = np.where(np.isnan(y_true[:, 4]), np.nan, 0.0)  # no positive: skipped
    y_true[:, 5] = np.nan  # no label at all: skipped
    y_pred = y_true + rng.normal(0, 1.0, size=y_true.shape)
    y_pred[np.isnan(y_pred)] = rng.normal(size=np.isnan(y_pred).sum())

    expected_ap = direct_mean_score(y_true, y_pred, average_precision_score)
    expected_auc = direct_mean_score(y_true, y_pred, roc_auc_score)
    assert mean_average_precision(y_true, y_pred) == pytest.approx(expected_ap, abs=1e-12)
    assert mean_roc_auc(y_true, y_pred) == pytest.approx(expected_auc, abs=1e-12)
    # Tasks 4 and 5 must not count: scoring only tasks 0..3 gives the same mean.
    assert mean_average_precision(y_true[:, :4], y_pred[:, :4]) == pytest.approx(expected_ap, abs=1e-12)


def test_metrics_no_valid_task():
    y_true = np.array([[1.0, np.nan], [1.0, 0.0], [np.nan, 0.0]])
    with pytest.raises(NoValidTaskError, match="no task has both"):
        mean_average_precision(y_true, np.zeros_like(y_true))
    with pytest.raises(NoValidTaskError):
        mean_roc_auc(y_true, np.zeros_like(y_true))


def test_metrics_reject_bad_inputs():
    with pytest.raises(ValueError, match="same shape"):
        mean_average_precision(np.zeros((3, 2)), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="0, 1 or NaN"):
        mean_average_precision(np.array([[2.0], [0.0]]), np.zeros((2, 1)))


def test_scaffold_split_keeps_groups_together():
    scaffolds = ["a"] * 5 + ["b"] * 2 + ["c"] * 2 + ["d"]
    split = scaffold_split(scaffolds, (0.5, 0.3, 0.2))
    assert split["train"].tolist() == [0, 1, 2, 3, 4]
    # "c" would overfill valid, but the smaller "d" after it still fits there.
    assert split["valid"].tolist() == [5, 6, 9]
    assert split["test"].tolist() == [7, 8]


def test_murcko_scaffold_strips_side_chains():
    assert murcko_scaffold("CCc1ccccc1") == "c1ccccc1"
    assert murcko_scaffold("CCO") == ""
    with pytest.raises(ValueError, match="C1CC"):
        murcko_scaffold("C1CC")
