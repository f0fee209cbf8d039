"""PNG plots of compiled memory and step time against the number of solver iterations T."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .reporting import MEBIBYTE, measured  # noqa: E402


def plot_task(records: list[dict], task: str, path: Path) -> None:
    """Plot temp_bytes and step_seconds against T, one line per solver and differentiation mode."""
    rows = [r for r in measured(records) if r["task"] == task]
    figure, (memory_axis, time_axis) = plt.subplots(1, 2, figsize=(10, 4))

    combinations = sorted({(r["solver"], r["adjoint"]) for r in rows})
    for index, (solver, adjoint) in enumerate(combinations):
        line = sorted((r for r in rows if (r["solver"], r["adjoint"]) == (solver, adjoint)), key=lambda r: r["iterations"])
        # One colour and marker per combination on both axes, also when a line has no timed points.
        style = {"color": f"C{index % 10}", "marker": "os^"[index // 10 % 3], "label": f"{solver} + {adjoint}"}
        memory_axis.plot([r["iterations"] for r in line], [r["temp_bytes"] / MEBIBYTE for r in line], **style)
        timed = [r for r in line if r.get("step_seconds") is not None]
        if timed:
            time_axis.plot([r["iterations"] for r in timed], [r["step_seconds"] for r in timed], **style)

    memory_axis.set(xlabel="solver iterations T", ylabel="XLA temp buffers (MiB)", title=f"{task}: compiled memory")
    time_axis.set(xlabel="solver iterations T", ylabel="training step (s)", title=f"{task}: step time")
    for axis in (memory_axis, time_axis):
        axis.set_yscale("log")
        axis.grid(True, which="both", alpha=0.3)
    memory_axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def plot_roofline(rooflines: list[dict], path: Path) -> None:
    """Plot the forward pass FLOP/s as a fraction of dense matmul FLOP/s, one bar per task."""
    rows = [item for item in rooflines if item.get("fraction_of_matmul") is not None]
    figure, axis = plt.subplots(figsize=(5, 3.5))
    axis.bar([item["task"] for item in rows], [item["fraction_of_matmul"] for item in rows])
    axis.axhline(0.4, color="black", linestyle="--", label="target 0.4")
    axis.set(ylabel="forward FLOP/s / matmul FLOP/s", title="Equilibrium forward pass vs dense matmul")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
