"""Training-curve plots, drawn with Matplotlib's Agg backend so no display is needed."""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)


def plot_curves(history: Sequence[dict[str, Any]], metric_name: str, splits: Sequence[str], path: str | Path) -> None:
    """Plot the training loss and each split's metric against the step, and save a PNG.

    **Arguments:**

    - `history`: the evaluation records of `metrics.jsonl`.
    - `metric_name`: the task's main metric.
    - `splits`: the evaluation splits to draw.
    - `path`: the PNG file to write.

    **Returns:** nothing.
    """
    steps = [record["step"] for record in history]
    figure, (loss_axes, metric_axes) = plt.subplots(1, 2, figsize=(10, 4))

    loss_axes.plot(steps, [record["train/loss"] for record in history], marker=".")
    loss_axes.set_xlabel("step")
    loss_axes.set_ylabel("mean training loss")
    if all(record["train/loss"] > 0 for record in history):
        loss_axes.set_yscale("log")

    for split in splits:
        key = f"{split}/{metric_name}"
        metric_axes.plot(steps, [record.get(key, float("nan")) for record in history], marker=".", label=split)
    metric_axes.set_xlabel("step")
    metric_axes.set_ylabel(metric_name)
    metric_axes.legend()

    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
