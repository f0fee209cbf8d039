"""Sweep the set embedding size D on the median task and plot test MSE against D.

This reproduces the layout of Figure 3 of Equilibrium Aggregation (Bartunov, Fuchs and
Lillicrap, UAI 2022). It compares sum pooling, 4-head attention and equilibrium aggregation
over several seeds per point. The plot shows the mean over seeds in bold and the best seed
faded.

    python -m experiments.median_sweep --sizes 1 2 4 8 16 32 --seeds 0 1 2 --steps 20000 \
        --output-dir runs/median-sweep

Every run writes its own folder `OUTPUT_DIR/METHOD-dD-sSEED` through the training loop, and
the sweep writes `results.json` and `mse_vs_size.png`. Attention pooling needs D divisible
by its 4 heads, so smaller sizes are skipped for it and listed as skipped in `results.json`.
"""

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

from eqagg_implicit.training import TaskOptions, TrainConfig, train  # noqa: E402
from experiments.median import MedianTask  # noqa: E402

logger = logging.getLogger(__name__)

METHODS: tuple[str, ...] = ("sum", "attention", "equilibrium")
LABELS = {"sum": "Sum (Deep Sets)", "attention": "Multi-head attention", "equilibrium": "Equilibrium aggregation"}


def run_sweep(
    sizes: Sequence[int],
    seeds: Sequence[int],
    output_dir: str | Path,
    *,
    methods: Sequence[str] = METHODS,
    steps: int = 20_000,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    hidden_size: int | None = None,
    eval_size: int | None = None,
    num_heads: int = 4,
    resume: bool = False,
) -> dict:
    """Train every (method, D, seed) and collect the test MSE.

    **Arguments:**

    - `sizes`: the set embedding sizes D.
    - `seeds`: the seeds per point.
    - `output_dir`: the folder for the runs, `results.json` and the plot.
    - `methods`: a subset of "sum", "attention", "equilibrium".
    - `steps`, `batch_size`, `learning_rate`: the training settings of every run.
    - `hidden_size`, `eval_size`: the median task's options; `None` uses its defaults.
    - `num_heads`: the heads of attention pooling.
    - `resume`: continue runs that a previous sweep left unfinished.

    **Returns:** the results dict that is also written to `results.json`.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    results = {"settings": {"steps": steps, "batch_size": batch_size, "learning_rate": learning_rate,
                            "hidden_size": hidden_size, "eval_size": eval_size}, "runs": [], "skipped": []}

    for method in methods:
        for size in sizes:
            if method == "attention" and size % num_heads != 0:
                results["skipped"].append({"method": method, "latent_size": size,
                                           "reason": f"D={size} is not divisible by {num_heads} heads"})
                continue
            for seed in seeds:
                options = TaskOptions(aggregation=method, latent_size=size, hidden_size=hidden_size,
                                      eval_size=eval_size, learning_rate=learning_rate, num_heads=num_heads)
                config = TrainConfig(str(output_dir / f"{method}-d{size}-s{seed}"), steps=steps,
                                     batch_size=batch_size, eval_every=max(steps // 10, 1), seed=seed,
                                     resume=resume, progress=False)
                summary = train(MedianTask(options), config)
                results["runs"].append({"method": method, "latent_size": size, "seed": seed,
                                        "test_mse": summary["test_metric"], "seconds": summary["seconds"]})
                logger.info("%s D=%d seed %d: test MSE %.4g", method, size, seed, summary["test_metric"])

    (output_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    plot_sweep(results, output_dir / "mse_vs_size.png")
    return results


def plot_sweep(results: dict, path: str | Path) -> None:
    """Plot test MSE against D: the mean over seeds in bold and the best seed faded, per method."""
    figure, axes = plt.subplots(figsize=(6, 4))
    for index, method in enumerate(METHODS):
        runs = [run for run in results["runs"] if run["method"] == method]
        if not runs:
            continue
        sizes = sorted({run["latent_size"] for run in runs})
        per_size = [[run["test_mse"] for run in runs if run["latent_size"] == size] for size in sizes]
        colour = f"C{index}"
        axes.plot(sizes, [np.mean(values) for values in per_size], color=colour, linewidth=2.5, label=LABELS[method])
        axes.plot(sizes, [np.min(values) for values in per_size], color=colour, linewidth=1, alpha=0.4)

    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xlabel("set embedding size D")
    axes.set_ylabel("test MSE")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sweep from the command line; returns the exit status."""
    parser = argparse.ArgumentParser(description="Sweep the embedding size D on the median task (Figure 3 layout).")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32], help="embedding sizes D")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds per point")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="aggregations to compare")
    parser.add_argument("--steps", type=int, default=20_000, help="optimiser steps per run (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="sets per step (default: %(default)s)")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate (default: %(default)s)")
    parser.add_argument("--hidden-size", type=int, default=None, help="hidden width H (default: 256)")
    parser.add_argument("--eval-size", type=int, default=None, help="sets per evaluation split (default: 10000)")
    parser.add_argument("--output-dir", default="runs/median-sweep", help="folder for runs, results and plot")
    parser.add_argument("--resume", action="store_true", help="continue unfinished runs from their checkpoints")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    run_sweep(args.sizes, args.seeds, args.output_dir, methods=args.methods, steps=args.steps,
              batch_size=args.batch_size, learning_rate=args.learning_rate, hidden_size=args.hidden_size,
              eval_size=args.eval_size, resume=args.resume)
    return 0


if __name__ == "__main__":
    sys.exit(main())
