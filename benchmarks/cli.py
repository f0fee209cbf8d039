"""`eqagg bench`: memory and speed of every solver and differentiation mode.

Run `python -m benchmarks.cli --help` for the options. Results go to `--out`: records.jsonl
(one JSON object per training step), report.md (tables and target checks), one PNG per task
and roofline.png.
"""

import argparse
import logging
import shlex
import sys
from pathlib import Path

from .configurations import ADJOINTS, DEFAULT_ADJOINTS, DEFAULT_ITERATIONS, FULL_TASKS, SOLVERS, TASKS
from .plots import plot_roofline, plot_task
from .reporting import write_report
from .runner import BenchmarkSettings, run_benchmarks

logger = logging.getLogger("benchmarks")

QUICK = {"tasks": ("counting",), "solvers": ("gd",), "adjoints": ("unrolled", "implicit"), "iterations": (15, 30), "repeats": 1}


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of `eqagg bench`."""
    parser = argparse.ArgumentParser(
        prog="eqagg bench",
        description=(
            "Compile one training step (value and gradient of a squared-error loss through the equilibrium "
            "layer) for every task, solver, differentiation mode and iteration count T; record XLA's memory "
            "and FLOP analysis, the median step time, the residual max |dE/dy| and the gradient error against "
            "a float64 implicit reference. JAX picks the device; the records name it."
        ),
    )
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=list(FULL_TASKS),
                        help=f"tasks to measure (default: {' '.join(FULL_TASKS)}). The tiny-* tasks are test sizes.")
    parser.add_argument("--solvers", nargs="+", choices=list(SOLVERS), default=list(SOLVERS),
                        help="solvers to measure (default: all). A solver missing from eqagg_implicit.solvers is skipped.")
    parser.add_argument("--adjoints", nargs="+", choices=list(ADJOINTS), default=list(DEFAULT_ADJOINTS),
                        help=f"differentiation modes (default: {' '.join(DEFAULT_ADJOINTS)})")
    parser.add_argument("--iterations", nargs="+", type=int, default=list(DEFAULT_ITERATIONS),
                        help="solver iteration counts T, the solver's max_steps (default: %(default)s)")
    parser.add_argument("--timed-iterations", nargs="+", type=int, default=None,
                        help="run and time only these T, and only compile and analyse the others (default: all)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="maximum number of timed calls per training step after one warm-up call (default: %(default)s)")
    parser.add_argument("--budget", type=float, default=30.0,
                        help="total seconds of timed calls per step after which no more calls are made (default: %(default)s)")
    parser.add_argument("--no-roofline", action="store_true",
                        help="skip the forward-pass versus dense-matmul FLOP/s measurement")
    parser.add_argument("--reference-tolerance", type=float, default=1e-8,
                        help="max |dE/dy| at which the float64 reference solve stops (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the parameters and inputs (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"),
                        help="output directory for records.jsonl, report.md and PNG plots (default: %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="a small subset for a smoke test: counting, gd, unrolled and implicit, T in 15 30, one "
                        "repeat; overrides --tasks, --solvers, --adjoints, --iterations and --repeats")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="logging level (default: %(default)s)")
    return parser


def settings_from_arguments(arguments: argparse.Namespace) -> BenchmarkSettings:
    """Turn parsed arguments into `BenchmarkSettings` and apply `--quick`. Raise `ValueError` on an invalid value."""
    chosen = {
        "tasks": tuple(arguments.tasks),
        "solvers": tuple(arguments.solvers),
        "adjoints": tuple(arguments.adjoints),
        "iterations": tuple(arguments.iterations),
        "repeats": arguments.repeats,
    }
    if arguments.quick:
        chosen.update(QUICK)
    if any(t <= 0 for t in chosen["iterations"]):
        raise ValueError(f"--iterations must be positive integers, got {list(chosen['iterations'])}.")
    if chosen["repeats"] < 1:
        raise ValueError(f"--repeats must be at least 1, got {chosen['repeats']}.")
    if not arguments.budget > 0:
        raise ValueError(f"--budget must be positive, got {arguments.budget}.")
    timed = None if arguments.timed_iterations is None else tuple(arguments.timed_iterations)
    return BenchmarkSettings(
        **chosen,
        timed_iterations=timed,
        budget_seconds=arguments.budget,
        roofline=not arguments.no_roofline,
        reference_tolerance=arguments.reference_tolerance,
        seed=arguments.seed,
    )


def main(argv: list[str] | None = None) -> int:
    """Run `eqagg bench` with `argv` (default: the process arguments) and return the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=arguments.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = settings_from_arguments(arguments)
    except ValueError as error:
        parser.error(str(error))

    out = arguments.out
    out.mkdir(parents=True, exist_ok=True)
    records_path = out / "records.jsonl"
    records, rooflines, environment = run_benchmarks(settings, records_path, out / "roofline.jsonl")

    command = shlex.join(["eqagg", "bench", *argv])
    write_report(out / "report.md", records, rooflines, environment, command)
    for task in settings.tasks:
        plot_task(records, task, out / f"{task}.png")
    if rooflines:
        plot_roofline(rooflines, out / "roofline.png")
    logger.info("Wrote records.jsonl, roofline.jsonl, report.md and PNG plots to %s.", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
