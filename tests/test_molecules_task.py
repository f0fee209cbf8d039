"""The molecules task: masked loss, batches, a gradient step per model, and OGB folders."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eqagg_implicit import EquilibriumAggregation, SumOfSquaresResNetPotential
from eqagg_implicit.data.molecules import smiles_to_graph, write_ogb_graph_dataset
from eqagg_implicit.training import TaskOptions
from experiments.molecules import MoleculeTask, masked_binary_cross_entropy, merge_padded_batches
from experiments.registry import get_task_class

# Twelve small molecules with two tasks; NaN marks a missing label.
SMILES = [
    "CCO", "c1ccccc1", "CC(=O)O", "CCN", "C1CCCCC1", "c1ccncc1",
    "CCOC", "OC1CCCC1", "CC(C)O", "c1ccc(O)cc1", "CCCl", "NC(=O)C",
]
LABELS = np.array(
    [[1, 0], [0, 1], [1, np.nan], [0, 0], [1, 1], [0, np.nan],
     [1, 0], [0, 1], [1, 0], [0, 1], [np.nan, 0], [1, 1]],
    dtype=np.float32,
)
SPLIT = {"train": np.arange(0, 6), "valid": np.arange(6, 9), "test": np.arange(9, 12)}
SMALL = {"hidden_size": 8, "solver_steps": 2}
EXTRA = {"layers": "2", "max_nodes": "64", "dropout": "0.1"}


@pytest.fixture(scope="module")
def ogb_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ogbg_tiny")
    write_ogb_graph_dataset(folder, [smiles_to_graph(smiles) for smiles in SMILES], LABELS, SPLIT)
    return str(folder)


def make_task(ogb_folder, aggregation="sum", sub_batches=1, **extra):
    return MoleculeTask(
        TaskOptions(aggregation=aggregation, data_dir=ogb_folder, sub_batches=sub_batches, extra={**EXTRA, **extra}, **SMALL)
    )


def test_registry_returns_molecule_task():
    assert get_task_class("molecules") is MoleculeTask


def test_masked_loss_matches_hand_computation():
    logits = jnp.array([[0.0, 2.0], [-1.0, 3.0]])
    labels = jnp.array([[1.0, jnp.nan], [0.0, 1.0]])

    loss = masked_binary_cross_entropy(logits, labels)

    # Three labelled pairs: (logit 0, label 1), (-1, 0) and (3, 1); -log sigmoid(z) = log(1 + e^-z).
    expected = (np.log(2.0) + np.log(1 + np.exp(-1.0)) + np.log(1 + np.exp(-3.0))) / 3
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_masked_loss_gives_zero_gradient_at_missing_labels():
    logits = jnp.array([[0.5, 2.0], [-1.0, 3.0]])
    labels = jnp.array([[1.0, jnp.nan], [0.0, 1.0]])

    grad = jax.grad(masked_binary_cross_entropy)(logits, labels)

    assert bool(jnp.all(jnp.isfinite(grad)))
    assert float(grad[0, 1]) == 0.0
    # d/dz log(1 + e^-z) = sigmoid(z) - 1, divided by the 3 labelled pairs.
    np.testing.assert_allclose(grad[0, 0], (jax.nn.sigmoid(0.5) - 1) / 3, rtol=1e-6)


def test_masked_loss_applies_label_mask():
    logits = jnp.array([[4.0, -2.0]])
    labels = jnp.array([[0.0, 0.0]])
    mask = jnp.array([[False, True]])

    loss = masked_binary_cross_entropy(logits, labels, mask)

    np.testing.assert_allclose(loss, np.log(1 + np.exp(-2.0)), rtol=1e-6)


def test_masked_loss_without_labels_is_zero():
    loss = masked_binary_cross_entropy(jnp.ones((2, 3)), jnp.full((2, 3), jnp.nan))

    assert float(loss) == 0.0


def test_data_dir_reads_ogb_layout(ogb_folder):
    task = make_task(ogb_folder)

    dataset = task.dataset

    assert len(dataset) == 12
    assert dataset.num_tasks == 2
    assert np.isnan(dataset.labels[2, 1])
    np.testing.assert_array_equal(dataset.split["valid"], SPLIT["valid"])
    assert task.metric_name == "ap"


def test_train_batch_stacks_sub_batches(ogb_folder):
    task = make_task(ogb_folder, sub_batches=2)

    batch = task.train_batch(seed=0, step=0, batch_size=4)

    # Two sub-batches of at most 2 graphs each, plus one padding graph per sub-batch.
    assert batch.graphs.nodes.shape == (2, 64, 9)
    assert batch.graph_mask.shape == (2, 3)
    assert batch.graph_mask.sum() == 4
    assert set(batch.graph_index[batch.graph_mask].tolist()) <= set(SPLIT["train"].tolist())


def test_merge_offsets_node_indices(ogb_folder):
    task = make_task(ogb_folder, sub_batches=2)
    batch = task.train_batch(seed=0, step=0, batch_size=4)

    merged = merge_padded_batches(jax.tree.map(jnp.asarray, batch.graphs))

    assert merged.nodes.shape == (128, 9)
    assert merged.n_node.shape == (6,)
    np.testing.assert_array_equal(merged.senders[: batch.graphs.senders.shape[1]], batch.graphs.senders[0])
    np.testing.assert_array_equal(merged.senders[batch.graphs.senders.shape[1] :], batch.graphs.senders[1] + 64)


@pytest.mark.parametrize(
    "gnn, aggregation, local",
    [("gin", "sum", "sum"), ("gcn", "sum", "sum"), ("gin", "equilibrium", "sum"),
     ("gcn", "equilibrium", "sum"), ("gin", "equilibrium", "equilibrium")],
)
def test_forward_backward_is_finite(ogb_folder, gnn, aggregation, local):
    task = make_task(ogb_folder, aggregation, gnn=gnn, local=local)
    model, state = task.init(jax.random.key(0))
    batch = jax.tree.map(jnp.asarray, task.train_batch(seed=0, step=0, batch_size=4))

    loss_and_grad = eqx.filter_jit(eqx.filter_value_and_grad(task.loss, has_aux=True))
    (loss, (metrics, new_state)), grads = loss_and_grad(model, state, batch, jax.random.key(1))

    assert jnp.isfinite(loss)
    leaves = jax.tree.leaves(eqx.filter(grads, eqx.is_inexact_array))
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in leaves)
    head_grad = grads.network.head.weight
    assert bool(jnp.any(head_grad != 0))
    assert new_state is not None
    if aggregation == "equilibrium":
        assert set(metrics) >= {"residual", "aux_loss"}
        assert isinstance(model.network.readout.pooling.potential, SumOfSquaresResNetPotential)
    if local == "equilibrium":
        assert isinstance(model.network.convs[0].aggregation.aggregation, EquilibriumAggregation)


def test_evaluate_scores_average_precision(ogb_folder):
    task = make_task(ogb_folder, "attention")
    model, state = task.init(jax.random.key(0))

    for split in task.splits:
        result = task.evaluate(model, state, split)
        assert 0.0 <= result["ap"] <= 1.0


def test_pna_readout_builds(ogb_folder):
    task = make_task(ogb_folder, "pna")

    model, _ = task.init(jax.random.key(0))

    assert type(model.network.readout.pooling).__name__ == "PNAPooling"


@pytest.mark.parametrize(
    "extra, message",
    [({"gnn": "gat"}, "gin or gcn"), ({"layers": "1"}, "at least 2"), ({"local": "max"}, "sum or equilibrium"),
     ({"dropout": "1.5"}, r"\[0, 1\)"), ({"width": "3"}, "no option")],
)
def test_task_rejects_bad_options(extra, message):
    with pytest.raises(ValueError, match=message):
        MoleculeTask(TaskOptions(aggregation="sum", extra=extra))


def test_batch_size_must_divide_into_sub_batches(ogb_folder):
    task = make_task(ogb_folder, sub_batches=3)

    with pytest.raises(ValueError, match="divisible by sub_batches"):
        task.train_batch(seed=0, step=0, batch_size=4)
