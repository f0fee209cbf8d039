import json

import equinox as eqx
import jax
import numpy as np
import pytest

from eqagg_implicit.training import TaskOptions, TrainConfig, load_checkpoint, train
from eqagg_implicit.training.checkpoint import CheckpointError
from experiments.median import MedianTask

# Tiny widths and evaluation samples keep each run to a few seconds of compile time.
OPTIONS = TaskOptions(latent_size=4, hidden_size=8, eval_size=32, learning_rate=1e-2)


def _config(path, **changes):
    settings = dict(output_dir=str(path), steps=4, batch_size=8, eval_every=2, progress=False, plot=False)
    settings.update(changes)
    return TrainConfig(**settings)


def _parameters(path):
    task = MedianTask(OPTIONS)
    model, state = task.init(jax.random.key(0))
    (model, _), _ = load_checkpoint(path / "checkpoint.ckpt", (model, state))
    return jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("full")
    summary = train(MedianTask(OPTIONS), _config(path, plot=True))
    return path, summary


def test_train_writes_outputs(full_run):
    path, summary = full_run

    assert (path / "checkpoint.ckpt").is_file()
    assert (path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((path / "summary.json").read_text()) == summary


def test_train_summary_fields(full_run):
    _, summary = full_run

    assert summary["task"] == "median"
    assert summary["aggregation"] == "equilibrium"
    assert summary["solver"] == "gd"
    assert summary["adjoint"] == "unrolled"
    assert summary["steps"] == 4
    assert summary["metric_name"] == "mse"
    assert summary["test_metric"] > 0
    assert summary["seconds"] > 0
    assert summary["best_validation_step"] in (2, 4)
    assert summary["test_metric_at_best_validation"] > 0


def test_train_metrics_records(full_run):
    path, summary = full_run
    records = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]

    assert [record["step"] for record in records] == [2, 4]
    for record in records:
        assert np.isfinite(record["train/loss"])
        assert record["validation/mse"] > 0
        assert record["train/residual"] >= 0
        assert record["train/aux_loss"] >= 0
    assert records[-1]["test/mse"] == summary["test_metric"]


def test_resume_matches_uninterrupted_run(full_run, tmp_path):
    path, _ = full_run
    train(MedianTask(OPTIONS), _config(tmp_path, steps=2))
    summary = train(MedianTask(OPTIONS), _config(tmp_path, steps=4, resume=True))

    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [record["step"] for record in records] == [2, 4]
    assert summary["steps"] == 4
    for resumed, uninterrupted in zip(_parameters(tmp_path), _parameters(path), strict=True):
        np.testing.assert_array_equal(resumed, uninterrupted)


def test_resume_rejects_other_settings(full_run, tmp_path):
    path, _ = full_run
    other = TaskOptions(latent_size=4, hidden_size=8, eval_size=32, learning_rate=1e-3)

    with pytest.raises(CheckpointError, match="different settings"):
        train(MedianTask(other), _config(path, steps=6, resume=True))


def test_resume_rejects_fewer_steps(full_run):
    path, _ = full_run

    with pytest.raises(CheckpointError, match="beyond --steps"):
        train(MedianTask(OPTIONS), _config(path, steps=2, resume=True))


def test_config_rejects_zero_steps(tmp_path):
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        _config(tmp_path, steps=0)
