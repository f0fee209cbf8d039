"""Run the benchmark grid: every task x solver x differentiation mode x iteration count."""

import dataclasses
import itertools
import json
import logging
from pathlib import Path

import jax
import tqdm

from .configurations import get_task, make_adjoint, make_solver
from .measurement import compile_step, compute_reference, describe_environment, run_step
from .roofline import measure_roofline

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class BenchmarkSettings:
    """The grid to measure and the measurement settings.

    **Fields:**

    - `tasks`, `solvers`, `adjoints`, `iterations`: the grid, by name (see `configurations.py`).
    - `timed_iterations`: the T values whose training step is run and timed; the others are
      compiled and analysed only. `None` times every T.
    - `repeats`: the most timed calls per step after the warm-up call.
    - `budget_seconds`: stop repeating once the timed calls of one step add up to this much.
    - `roofline`: whether to measure the forward pass against a dense matmul.
    - `reference_tolerance`: the max |dE/dy| at which the float64 reference solve stops.
    - `seed`: the seed of the parameters and inputs.
    """

    tasks: tuple[str, ...]
    solvers: tuple[str, ...]
    adjoints: tuple[str, ...]
    iterations: tuple[int, ...]
    timed_iterations: tuple[int, ...] | None = None
    repeats: int = 3
    budget_seconds: float = 30.0
    roofline: bool = True
    reference_tolerance: float = 1e-8
    seed: int = 0


def run_benchmarks(
    settings: BenchmarkSettings, records_path: Path, roofline_path: Path
) -> tuple[list[dict], list[dict], dict]:
    """Measure every combination of `settings`, appending each record to `records_path` as it finishes.

    Each roofline measurement is appended to `roofline_path` in the same way, so an
    interrupted run keeps everything it finished.

    **Returns:** `(records, rooflines, environment)`. A combination whose solver is missing from
    the library or rejects the task is recorded with status "skipped". A combination whose
    compiled step fails at run time keeps its memory and FLOP counts and gets status "error".
    """
    environment = describe_environment()
    logger.info("Measuring on %s (%s).", environment["device"], environment["platform"])
    records, rooflines = [], []
    layer_key, input_key, roofline_key = jax.random.split(jax.random.key(settings.seed), 3)
    records_path.write_text("")
    roofline_path.write_text("")

    for task_name in settings.tasks:
        task = get_task(task_name)
        inputs = task.make_inputs(input_key)
        reference = None

        grid = list(itertools.product(settings.solvers, settings.adjoints, settings.iterations))
        for solver_name, adjoint_name, iterations in tqdm.tqdm(grid, desc=task_name, disable=None):
            record = {
                "task": task_name, "solver": solver_name, "adjoint": adjoint_name, "iterations": iterations,
                "device": environment["device"], "platform": environment["platform"],
                "versions": environment["versions"], "status": "ok", "note": "",
            }
            solver = make_solver(solver_name, iterations, task)
            if solver is None:
                record.update(status="skipped", note=f"solver {solver_name} is not in eqagg_implicit.solvers")
                _append(records_path, records, record)
                continue

            layer = task.make_layer(solver, make_adjoint(adjoint_name, iterations), layer_key)
            if reference is None:
                reference = compute_reference(task, layer, inputs, tolerance=settings.reference_tolerance)
                logger.info(
                    "Task %s: float64 reference at max |dE/dy| = %.2g in %.1f s.",
                    task_name, reference.residual, reference.seconds,
                )

            timed = settings.timed_iterations is None or iterations in settings.timed_iterations
            record["reference_residual"] = reference.residual
            try:
                step = compile_step(task, layer, inputs)
            except (TypeError, ValueError) as error:
                # Raised while tracing: the solver cannot run this task or this mode.
                record.update(status="skipped", note=_first_line(error))
                logger.warning("Skipped %s %s %s T=%d: %s", task_name, solver_name, adjoint_name, iterations, error)
                _append(records_path, records, record)
                continue

            record.update(step.analysis)
            if not timed:
                record["note"] = "compiled and analysed only (not in --timed-iterations)"
            else:
                try:
                    record.update(run_step(step, reference, repeats=settings.repeats, budget_seconds=settings.budget_seconds))
                except jax.errors.JaxRuntimeError as error:
                    record.update(status="error", note=_first_line(error))
                    logger.error("Failed %s %s %s T=%d: %s", task_name, solver_name, adjoint_name, iterations, error)
            _append(records_path, records, record)

        if settings.roofline:
            roofline = {"task": task_name, **measure_roofline(
                task, repeats=settings.repeats, budget_seconds=settings.budget_seconds, key=roofline_key
            )}
            logger.info("Task %s roofline: %s", task_name, roofline)
            _append(roofline_path, rooflines, roofline)
    return records, rooflines, environment


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__

    # XLA wraps a failed runtime check in a traceback, and the check's own message is the
    # last line that names the equinox error.
    if isinstance(error, jax.errors.JaxRuntimeError):
        messages = [line for line in lines if "EquinoxRuntimeError" in line]
        return messages[-1] if messages else lines[0]
    return lines[0]


def _append(path: Path, collected: list[dict], record: dict) -> None:
    collected.append(record)
    with open(path, "a") as file:
        file.write(json.dumps(record, sort_keys=True) + "\n")
