import jax
import numpy as np
import pytest

from eqagg_implicit import EquilibriumAggregation
from eqagg_implicit.training import TaskOptions
from experiments.median import MedianTask

TINY = dict(latent_size=4, hidden_size=8, eval_size=16)


def test_median_batches_depend_on_seed_and_step():
    task = MedianTask(TaskOptions(**TINY))

    first = task.train_batch(seed=3, step=7, batch_size=5)
    again = task.train_batch(seed=3, step=7, batch_size=5)
    next_step = task.train_batch(seed=3, step=8, batch_size=5)

    assert first["x"].shape == (5, 100, 1)
    assert first["y"].shape == (5,)
    np.testing.assert_array_equal(first["x"], again["x"])
    assert not np.array_equal(first["x"], next_step["x"])
    np.testing.assert_allclose(first["y"], np.median(first["x"][..., 0], axis=1))


def test_median_train_batches_start_step():
    task = MedianTask(TaskOptions(**TINY))
    stream = task.train_batches(seed=1, batch_size=2, start_step=4)

    np.testing.assert_array_equal(next(stream)["x"], task.train_batch(1, 4, 2)["x"])
    np.testing.assert_array_equal(next(stream)["x"], task.train_batch(1, 5, 2)["x"])


@pytest.mark.parametrize("aggregation", ["sum", "attention", "equilibrium"])
def test_median_models_give_finite_loss(aggregation):
    task = MedianTask(TaskOptions(aggregation=aggregation, **TINY))
    model, state = task.init(jax.random.key(0))
    batch = task.train_batch(0, 0, 3)

    loss, (metrics, new_state) = task.loss(model, state, batch, jax.random.key(1))

    assert np.isfinite(float(loss))
    assert new_state is None
    assert float(metrics["mse"]) == pytest.approx(float(loss))
    assert ("residual" in metrics) == (aggregation == "equilibrium")


def test_median_equilibrium_has_no_encoder():
    task = MedianTask(TaskOptions(**TINY))
    model, _ = task.init(jax.random.key(0))

    assert model.encoder is None
    assert isinstance(model.pooling, EquilibriumAggregation)
    assert model.pooling.potential.input_size == 1
    assert model.pooling.output_size == 4
    assert model.pooling.solver.max_steps == 5


def test_median_aux_loss_weight_adds_aux_loss():
    plain = MedianTask(TaskOptions(**TINY))
    weighted = MedianTask(TaskOptions(aux_loss_weight=0.5, **TINY))
    model, state = plain.init(jax.random.key(0))
    batch = plain.train_batch(0, 0, 3)

    loss, (metrics, _) = weighted.loss(model, state, batch, None)

    assert float(loss) == pytest.approx(float(metrics["mse"]) + 0.5 * float(metrics["aux_loss"]), rel=1e-5)


def test_median_evaluate_fixed_sample():
    task = MedianTask(TaskOptions(**TINY))
    model, state = task.init(jax.random.key(0))

    first = task.evaluate(model, state, "test")
    second = MedianTask(TaskOptions(**TINY)).evaluate(model, state, "test")
    validation = task.evaluate(model, state, "validation")

    assert first["mse"] == pytest.approx(second["mse"])
    assert first["mse"] != validation["mse"]
    with pytest.raises(ValueError, match="Unknown split 'train'"):
        task.evaluate(model, state, "train")


def test_median_attention_needs_divisible_latent():
    task = MedianTask(TaskOptions(aggregation="attention", latent_size=6, hidden_size=8))

    with pytest.raises(ValueError, match="divisible by num_heads=4"):
        task.init(jax.random.key(0))


def test_median_set_size_option():
    task = MedianTask(TaskOptions(extra={"set_size": "7"}, **TINY))

    assert task.train_batch(0, 0, 2)["x"].shape == (2, 7, 1)
    with pytest.raises(ValueError, match="set_size must be an integer"):
        MedianTask(TaskOptions(extra={"set_size": "many"}))
