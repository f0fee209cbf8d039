"""The class-counting task: batches, loss and one gradient step for every aggregation."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eqagg_implicit import EquilibriumAggregation, SumOfSquaresResNetPotential
from eqagg_implicit.training import TaskOptions
from experiments.counting import CountingTask, counting_loss
from experiments.registry import get_task_class

SMALL = {"latent_size": 8, "hidden_size": 16, "solver_steps": 3, "eval_size": 6}
EXTRA = {"set_size": "4", "max_count": "3"}


def make_task(aggregation: str) -> CountingTask:
    return CountingTask(TaskOptions(aggregation=aggregation, extra=EXTRA, **SMALL))


def test_registry_returns_counting_task():
    assert get_task_class("counting") is CountingTask


def test_counting_loss_matches_hand_computation():
    logits = jnp.array([[0.0, 1.0, 2.0], [3.0, 0.0, 0.0]])
    target = jnp.array([2, 1])

    cross_entropy, accuracy = counting_loss(logits, target)

    first = -2.0 + np.log(1 + np.e + np.e**2)
    second = np.log(np.e**3 + 2)
    np.testing.assert_allclose(cross_entropy, (first + second) / 2, rtol=1e-6)
    assert float(accuracy) == 0.5


def test_train_batch_shapes_and_determinism():
    task = make_task("sum")

    batch = task.train_batch(seed=0, step=3, batch_size=2)
    again = task.train_batch(seed=0, step=3, batch_size=2)

    assert batch["images"].shape == (2, 4, 32, 32, 1)
    assert batch["target"].shape == (2,)
    assert np.all((batch["target"] >= 0) & (batch["target"] < 3))
    np.testing.assert_array_equal(batch["images"], again["images"])


@pytest.mark.parametrize("aggregation", ["sum", "attention", "equilibrium"])
def test_forward_backward_is_finite(aggregation):
    task = make_task(aggregation)
    model, state = task.init(jax.random.key(0))
    batch = jax.tree.map(jnp.asarray, task.train_batch(seed=0, step=0, batch_size=2))

    loss_and_grad = eqx.filter_jit(eqx.filter_value_and_grad(task.loss, has_aux=True))
    (loss, (metrics, _)), grads = loss_and_grad(model, state, batch, jax.random.key(1))

    assert jnp.isfinite(loss)
    assert 0.0 <= float(metrics["accuracy"]) <= 1.0
    leaves = jax.tree.leaves(eqx.filter(grads, eqx.is_inexact_array))
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in leaves)
    encoder_grads = jax.tree.leaves(eqx.filter(grads.encoder, eqx.is_inexact_array))
    assert any(bool(jnp.any(leaf != 0)) for leaf in encoder_grads)
    if aggregation == "equilibrium":
        assert set(metrics) >= {"residual", "aux_loss"}


def test_equilibrium_uses_sum_of_squares_potential():
    task = make_task("equilibrium")

    model, _ = task.init(jax.random.key(0))

    assert isinstance(model.pooling, EquilibriumAggregation)
    assert isinstance(model.pooling.potential, SumOfSquaresResNetPotential)
    assert model.pooling.solver.max_steps == 3
    assert model.decoder.output_size == 3


def test_evaluate_returns_accuracy_per_split():
    task = make_task("sum")
    model, state = task.init(jax.random.key(0))

    for split in task.splits:
        result = task.evaluate(model, state, split)
        assert 0.0 <= result["accuracy"] <= 1.0
        assert np.isfinite(result["cross_entropy"])


@pytest.mark.parametrize(
    "extra, message",
    [({"set_size": "0"}, "at least 1"), ({"max_count": "x"}, "integer"), ({"colour": "red"}, "no option")],
)
def test_task_rejects_bad_options(extra, message):
    with pytest.raises(ValueError, match=message):
        CountingTask(TaskOptions(aggregation="sum", extra=extra))


def test_missing_omniglot_folder_is_reported(tmp_path):
    task = CountingTask(TaskOptions(aggregation="sum", data_dir=str(tmp_path / "absent")))

    with pytest.raises(FileNotFoundError, match="Omniglot root"):
        task.dataset("train")


def write_tiny_omniglot(root, rng):
    """Write 2 alphabets of 2 characters with 3 random 20x20 PNGs each, per split folder."""
    from PIL import Image

    for folder in ("images_background", "images_evaluation"):
        for alphabet in ("Alpha", "Beta"):
            for character in ("character01", "character02"):
                path = root / folder / alphabet / character
                path.mkdir(parents=True)
                for index in range(3):
                    pixels = (rng.random((20, 20)) > 0.5).astype(np.uint8) * 255
                    Image.fromarray(pixels, mode="L").save(path / f"{index}.png")


def test_data_dir_reads_omniglot_layout(tmp_path):
    write_tiny_omniglot(tmp_path, np.random.default_rng(0))
    task = CountingTask(TaskOptions(aggregation="sum", data_dir=str(tmp_path), extra=EXTRA, **SMALL))

    batch = task.train_batch(seed=0, step=0, batch_size=3)

    assert task.dataset("train").num_classes == 4
    assert task.dataset("test").sources[0].startswith(str(tmp_path / "images_evaluation"))
    assert batch["images"].shape == (3, 4, 32, 32, 1)
    assert np.all(batch["target"] < 3)
