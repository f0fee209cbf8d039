"""The training loop: Adam on a task's loss, with evaluation, logs, plots and checkpoints.

Output files in `TrainConfig.output_dir`:

- `metrics.jsonl`: one JSON object per evaluation, with the step, the mean training metrics
  since the previous evaluation ("train/loss", ...), every split's metrics ("test/mse", ...)
  and the training time so far.
- `checkpoint.ckpt`: the latest checkpoint (see `checkpoint.py`).
- `summary.json`: the final results.
- `curves.png`: the training loss and the evaluation metric against the step.

With several processes only process 0 writes files, so `output_dir` must be on a file system
that every process reads for `--resume`.
"""

import dataclasses
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np
import optax
from tqdm.auto import tqdm

from . import parallel
from .checkpoint import CheckpointError, atomic_write_bytes, load_checkpoint, save_checkpoint, to_host
from .plots import plot_curves
from .task import AbstractTask

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.ckpt"
METRICS_NAME = "metrics.jsonl"
SUMMARY_NAME = "summary.json"
PLOT_NAME = "curves.png"

# Metrics that the equilibrium layer reports through the task's loss; logged at every evaluation.
_CONVERGENCE_METRICS = ("residual", "aux_loss")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run that do not change the model.

    **Arguments:**

    - `output_dir`: the folder for metrics, checkpoints, plots and the summary.
    - `steps`: the total number of optimiser steps, counted from the start of the run.
    - `batch_size`: the global number of examples per step, over all devices and hosts.
    - `eval_every`: evaluate every this many steps, and after the last step.
    - `checkpoint_every`: save a checkpoint every this many steps, and after the last step;
      `None` uses `eval_every`.
    - `seed`: seeds the initial parameters, the training data and the per-step PRNG keys.
    - `resume`: continue from `output_dir`'s checkpoint when there is one.
    - `devices`: local devices per process for data parallelism; `None` uses all.
    - `progress`: show a tqdm progress bar.
    - `plot`: write `curves.png` at the end of the run.
    """

    output_dir: str
    steps: int = 1000
    batch_size: int = 32
    eval_every: int = 100
    checkpoint_every: int | None = None
    seed: int = 0
    resume: bool = False
    devices: int | None = None
    progress: bool = True
    plot: bool = True

    def __post_init__(self):
        for field in ("steps", "batch_size", "eval_every", "checkpoint_every"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{field} must be a positive integer, got {value!r}.")


def _run_fingerprint(task: AbstractTask, config: TrainConfig) -> dict[str, Any]:
    """The settings a checkpoint must share with the run that resumes it."""
    return {
        "task": task.name,
        "options": task.options.to_json(),
        "batch_size": config.batch_size,
        "seed": config.seed,
    }


def _make_train_step(task: AbstractTask, optimiser: optax.GradientTransformation, mesh):
    replicated = parallel.replicated_sharding(mesh)

    @eqx.filter_jit
    def train_step(model, model_state, optimiser_state, batch, key):
        loss_and_grad = eqx.filter_value_and_grad(task.loss, has_aux=True)
        (loss, (metrics, model_state)), grads = loss_and_grad(model, model_state, batch, key)

        updates, optimiser_state = optimiser.update(grads, optimiser_state, eqx.filter(model, eqx.is_inexact_array))
        model = eqx.apply_updates(model, updates)

        # Keep the updated parameters replicated, as the inputs are, so the next step's
        # inputs have the same sharding and the step is not compiled again.
        model, model_state, optimiser_state = eqx.filter_shard((model, model_state, optimiser_state), replicated)
        return model, model_state, optimiser_state, loss, metrics

    return train_step


def _best_validation(history: list[dict[str, Any]], task: AbstractTask) -> dict[str, Any]:
    key = f"validation/{task.metric_name}"
    records = [record for record in history if key in record]
    if not records:
        return {}
    choose = max if task.higher_is_better else min
    best = choose(records, key=lambda record: record[key])
    return {
        "best_validation_metric": best[key],
        "best_validation_step": best["step"],
        "test_metric_at_best_validation": best.get(f"test/{task.metric_name}"),
    }


def _write_metrics_file(path: Path, history: list[dict[str, Any]]) -> None:
    lines = "".join(json.dumps(record) + "\n" for record in history)
    atomic_write_bytes(path, lines.encode())


def train(task: AbstractTask, config: TrainConfig) -> dict[str, Any]:
    """Train `task`'s model with Adam and return the run summary.

    Each step reads the batch `task.train_batch(config.seed, step, config.batch_size)` and the
    PRNG key `fold_in(key, step)`, so a run resumed from a checkpoint takes exactly the steps
    that the uninterrupted run would have taken.

    **Arguments:**

    - `task`: the task, with its options (learning rate, aggregation, ...).
    - `config`: the run settings.

    **Returns:** the summary dict that is also written to `summary.json`.
    """
    output_dir = Path(config.output_dir)
    is_writer = jax.process_index() == 0
    if is_writer:
        output_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = output_dir / CHECKPOINT_NAME
    metrics_path = output_dir / METRICS_NAME
    checkpoint_every = config.checkpoint_every or config.eval_every

    mesh = parallel.make_data_mesh(config.devices)
    logger.info(
        "Training task %s for %d steps on %d %s devices (%d processes), output in %s",
        task.name, config.steps, mesh.size, jax.default_backend(), jax.process_count(), output_dir,
    )

    # Model and optimiser.
    init_key, step_key = jax.random.split(jax.random.key(config.seed))
    model, model_state = task.init(init_key)
    optimiser = optax.adam(task.options.learning_rate)
    optimiser_state = optimiser.init(eqx.filter(model, eqx.is_inexact_array))
    num_parameters = sum(leaf.size for leaf in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)))

    # Resume: restore the arrays, the step and the evaluation history.
    fingerprint = _run_fingerprint(task, config)
    start_step = 0
    history: list[dict[str, Any]] = []
    sums: dict[str, float] = {}
    count = 0
    seconds_before = 0.0
    if config.resume and checkpoint_path.exists():
        (model, model_state, optimiser_state), metadata = load_checkpoint(
            checkpoint_path, (model, model_state, optimiser_state)
        )
        if metadata["fingerprint"] != fingerprint:
            raise CheckpointError(
                f"Checkpoint {checkpoint_path} belongs to a run with different settings "
                f"({metadata['fingerprint']}) than this one ({fingerprint}). Use another --output-dir "
                "or the same options."
            )
        start_step = metadata["step"]
        if start_step > config.steps:
            raise CheckpointError(
                f"Checkpoint {checkpoint_path} is at step {start_step}, beyond --steps {config.steps}. "
                f"Pass --steps {start_step} or more to continue it."
            )
        history = metadata["history"]
        sums = metadata["train_sums"]
        count = metadata["train_count"]
        seconds_before = metadata["seconds"]
        logger.info("Resumed from %s at step %d", checkpoint_path, start_step)
    elif config.resume:
        logger.info("No checkpoint at %s, so training starts from step 0", checkpoint_path)

    # Evaluation lines written after the checkpoint are dropped, because the steps they
    # describe will run again; so the file never repeats a step.
    if is_writer:
        _write_metrics_file(metrics_path, history)

    model, model_state, optimiser_state = parallel.replicate((model, model_state, optimiser_state), mesh)
    train_step = _make_train_step(task, optimiser, mesh)

    def save(step: int, seconds: float) -> None:
        if not is_writer:
            return
        metadata = {
            "fingerprint": fingerprint,
            "step": step,
            "history": history,
            "train_sums": sums,
            "train_count": count,
            "seconds": seconds,
        }
        save_checkpoint(checkpoint_path, (model, model_state, optimiser_state), metadata)
        logger.debug("Saved checkpoint at step %d", step)

    progress = tqdm(
        total=config.steps, initial=start_step, disable=not (config.progress and is_writer),
        desc=task.name, dynamic_ncols=True,
    )
    started = time.perf_counter()
    step = start_step
    with progress, open(metrics_path, "a") if is_writer else open(os.devnull, "w") as metrics_file:
        for step in range(start_step, config.steps):
            batch = parallel.shard_batch(task.train_batch(config.seed, step, config.batch_size), mesh)
            key = jax.random.fold_in(step_key, step)
            model, model_state, optimiser_state, loss, metrics = train_step(
                model, model_state, optimiser_state, batch, key
            )

            loss = float(loss)
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"The training loss is {loss} at step {step}. Lower --learning-rate, or use more "
                    "--solver-steps or another --solver so the equilibrium solve converges."
                )
            values = {"loss": loss, **{name: float(value) for name, value in metrics.items()}}
            for name, value in values.items():
                sums[name] = sums.get(name, 0.0) + value
            count += 1
            progress.update(1)

            done = step + 1
            seconds = seconds_before + time.perf_counter() - started
            if done % config.eval_every == 0 or done == config.steps:
                record = _evaluate(task, model, model_state, done, sums, count, seconds)
                history.append(record)
                sums, count = {}, 0
                metrics_file.write(json.dumps(record) + "\n")
                metrics_file.flush()
                _log_record(task, record)
                postfix = {"loss": f"{record['train/loss']:.4g}"}
                metric_key = f"{task.splits[-1]}/{task.metric_name}"
                postfix[metric_key] = f"{record[metric_key]:.4g}"
                progress.set_postfix(postfix)
            if done % checkpoint_every == 0 or done == config.steps:
                save(done, seconds)

    seconds = seconds_before + time.perf_counter() - started
    summary = _summarise(task, config, history, seconds, mesh.size, num_parameters)
    if is_writer:
        atomic_write_bytes(output_dir / SUMMARY_NAME, (json.dumps(summary, indent=2) + "\n").encode())
        if config.plot and history:
            plot_curves(history, task.metric_name, task.splits, output_dir / PLOT_NAME)
    logger.info("Finished %d steps in %.1f s; test %s = %s", config.steps, seconds, task.metric_name, summary["test_metric"])
    return summary


def _evaluate(task, model, model_state, step, sums, count, seconds) -> dict[str, Any]:
    """Evaluate every split on one replica of the model and build the metrics record."""
    # Tasks evaluate with their own jitted functions on host data, so they get one local
    # replica instead of arrays spread over a mesh that may span several hosts.
    device = jax.local_devices()[0]
    local_model, local_state = jax.tree.map(
        lambda leaf: jax.device_put(leaf, device) if isinstance(leaf, np.ndarray) else leaf,
        to_host((model, model_state)),
    )
    record: dict[str, Any] = {"step": step, "seconds": round(seconds, 3)}
    for name, total in sums.items():
        record[f"train/{name}"] = total / max(count, 1)

    for split in task.splits:
        result = task.evaluate(local_model, local_state, split)
        if task.metric_name not in result:
            raise ValueError(
                f"Task {task.name!r} returned {sorted(result)} from evaluate({split!r}), without its metric "
                f"{task.metric_name!r}."
            )
        for name, value in result.items():
            record[f"{split}/{name}"] = float(value)
    return record


def _log_record(task: AbstractTask, record: dict[str, Any]) -> None:
    parts = [f"step {record['step']}", f"train loss {record['train/loss']:.5g}"]
    parts += [f"{split} {task.metric_name} {record[f'{split}/{task.metric_name}']:.5g}" for split in task.splits]
    convergence = [f"{name} {record[f'train/{name}']:.3g}" for name in _CONVERGENCE_METRICS if f"train/{name}" in record]
    if convergence:
        parts.append("equilibrium " + ", ".join(convergence))
    logger.info("; ".join(parts))


def _summarise(task, config, history, seconds, num_devices, num_parameters) -> dict[str, Any]:
    last = history[-1] if history else {}
    summary = {
        "task": task.name,
        "aggregation": task.options.aggregation,
        "solver": task.options.solver,
        "adjoint": task.options.adjoint,
        "steps": config.steps,
        "batch_size": config.batch_size,
        "metric_name": task.metric_name,
        "higher_is_better": task.higher_is_better,
        "test_metric": last.get(f"test/{task.metric_name}"),
        "final_train_loss": last.get("train/loss"),
        "seconds": round(seconds, 3),
        "num_devices": num_devices,
        "num_processes": jax.process_count(),
        "num_parameters": int(num_parameters),
        "options": task.options.to_json(),
        "seed": config.seed,
    }
    summary.update(_best_validation(history, task))
    return summary
