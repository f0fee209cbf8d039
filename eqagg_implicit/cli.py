"""The `eqagg` command: `eqagg train TASK [options]` and `eqagg bench ...`."""

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from .training.task import ADJOINTS, AGGREGATIONS, SOLVERS, TaskOptions

logger = logging.getLogger("eqagg_implicit.cli")

# Exit status for invalid input (options, data files, checkpoints), as argparse uses.
USAGE_ERROR = 2


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _key_value(text: str) -> tuple[str, str]:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the `eqagg` command."""
    from experiments.registry import task_names

    parser = argparse.ArgumentParser(
        prog="eqagg",
        description="Train set models with Equilibrium Aggregation and baseline poolings, or run benchmarks.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "bench", help="run the benchmarks; `eqagg bench --help` lists their options", add_help=False
    )

    train = commands.add_parser(
        "train",
        help="train a model on a task",
        description="Train a model on TASK and write metrics, checkpoints, plots and a summary to --out.",
    )
    train.add_argument("task", metavar="TASK", help=f"the task to train: {', '.join(task_names())}")

    run = train.add_argument_group("run")
    run.add_argument("--out", "--output-dir", dest="output_dir", metavar="DIR", help="folder for metrics.jsonl, summary.json, curves.png and the checkpoint "
                     "(default: runs/TASK)")
    run.add_argument("--steps", type=_positive_int, default=1000, help="total number of optimiser steps (default: %(default)s)")
    run.add_argument("--batch-size", type=_positive_int, default=32,
                     help="examples per step over all devices and hosts; must be divisible by the device count (default: %(default)s)")
    run.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate (default: %(default)s)")
    run.add_argument("--eval-every", type=_positive_int, default=100, help="evaluate every this many steps (default: %(default)s)")
    run.add_argument("--checkpoint-every", type=_positive_int, default=None,
                     help="save a checkpoint every this many steps (default: the value of --eval-every)")
    run.add_argument("--seed", type=int, default=0, help="seed of the initial parameters and the training data (default: %(default)s)")
    run.add_argument("--resume", action="store_true",
                     help="continue from the checkpoint in --out; without one, start from step 0")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    run.add_argument("--no-plot", action="store_true", help="do not write curves.png")
    run.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                     help="logging threshold (default: %(default)s)")

    model = train.add_argument_group("model")
    model.add_argument("--aggregation", choices=AGGREGATIONS, default="equilibrium", help="set pooling layer (default: %(default)s)")
    model.add_argument("--solver", choices=SOLVERS, default="gd",
                       help="inner solver of equilibrium aggregation (gauss-newton and levenberg-marquardt use a "
                            "sum-of-squares potential) (default: %(default)s)")
    model.add_argument("--adjoint", choices=ADJOINTS, default="unrolled",
                       help="how gradients pass through the inner solver (default: %(default)s)")
    model.add_argument("--solver-steps", type=_positive_int, default=5,
                       help="maximum inner solver iterations per forward pass (default: %(default)s)")
    model.add_argument("--tolerance", type=float, default=0.0,
                       help="stop the inner solver once max |dE/dy| falls to this value; 0 runs every iteration (default: %(default)s)")
    model.add_argument("--aux-loss-weight", type=float, default=0.0,
                       help="weight of the auxiliary loss, the mean squared energy gradient norm over solver steps (default: %(default)s)")
    model.add_argument("--latent-size", type=_positive_int, default=None,
                       help="size D of the pooled vector (default: the task's own)")
    model.add_argument("--hidden-size", type=_positive_int, default=None,
                       help="width of the hidden layers (default: the task's own)")
    model.add_argument("--num-heads", type=_positive_int, default=4, help="heads of attention pooling (default: %(default)s)")

    data = train.add_argument_group("data")
    data.add_argument("--data-dir", help="folder with the task's data files (tasks that read files)")
    data.add_argument("--dataset", help="dataset name, for tasks that offer several")
    data.add_argument("--eval-size", type=_positive_int, default=None,
                      help="examples per evaluation split, for tasks that sample them (default: the task's own)")
    data.add_argument("--sub-batches", type=_positive_int, default=1,
                      help="graph tasks: padded sub-batches per batch; must be a multiple of the device count (default: %(default)s)")
    data.add_argument("--option", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                      help="a task-specific setting, repeatable (for example set_size=100 for median)")

    devices = train.add_argument_group("devices")
    devices.add_argument("--devices", type=_positive_int, default=None,
                         help="local devices per process for data-parallel training (default: all)")
    devices.add_argument("--coordinator-address", metavar="HOST:PORT",
                         help="multi-host: address of process 0, the same on every host")
    devices.add_argument("--num-processes", type=_positive_int, help="multi-host: total number of processes")
    devices.add_argument("--process-id", type=int, help="multi-host: index of this process, from 0")
    return parser


def _run_bench(argv: Sequence[str]) -> int:
    try:
        bench = importlib.import_module("benchmarks.cli")
    except ModuleNotFoundError as error:
        if error.name not in ("benchmarks", "benchmarks.cli"):
            raise
        print(
            "eqagg bench: error: the benchmarks package is not installed. Run it from a source checkout "
            "of eqagg-implicit with `pip install -e .`.",
            file=sys.stderr,
        )
        return USAGE_ERROR
    return int(bench.main(list(argv)) or 0)


def _run_train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from experiments.registry import MissingDependencyError, TaskNotFoundError, get_task_class

    from .training import parallel
    from .training.checkpoint import CheckpointError
    from .training.loop import TrainConfig, train

    distributed = (args.coordinator_address, args.num_processes, args.process_id)
    if any(value is not None for value in distributed):
        if any(value is None for value in distributed):
            parser.error("multi-host training needs all of --coordinator-address, --num-processes and --process-id")
        parallel.initialize_distributed(*distributed)

    try:
        task_class = get_task_class(args.task)
        options = TaskOptions(
            aggregation=args.aggregation,
            solver=args.solver,
            adjoint=args.adjoint,
            solver_steps=args.solver_steps,
            tolerance=args.tolerance,
            learning_rate=args.learning_rate,
            aux_loss_weight=args.aux_loss_weight,
            latent_size=args.latent_size,
            hidden_size=args.hidden_size,
            num_heads=args.num_heads,
            sub_batches=args.sub_batches,
            data_dir=args.data_dir,
            dataset=args.dataset,
            eval_size=args.eval_size,
            extra=dict(args.option),
        )
        task = task_class(options)
        config = TrainConfig(
            output_dir=args.output_dir or f"runs/{args.task}",
            steps=args.steps,
            batch_size=args.batch_size,
            eval_every=args.eval_every,
            checkpoint_every=args.checkpoint_every,
            seed=args.seed,
            resume=args.resume,
            devices=args.devices,
            progress=not args.no_progress,
            plot=not args.no_plot,
        )
        summary = train(task, config)
    except (TaskNotFoundError, MissingDependencyError, CheckpointError, FileNotFoundError, ValueError) as error:
        print(f"eqagg train: error: {error}", file=sys.stderr)
        return USAGE_ERROR

    print(f"{summary['task']}: test {summary['metric_name']} = {summary['test_metric']} after {summary['steps']} "
          f"steps ({summary['seconds']:.1f} s); results in {config.output_dir}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `eqagg` command.

    **Arguments:**

    - `argv`: the arguments after the program name; `None` reads `sys.argv[1:]`.

    **Returns:** the exit status, 0 on success.
    """
    argv = list(sys.argv[1:] if argv is None else argv)

    # `bench` passes every later argument, --help included, to the benchmarks' own parser.
    if argv and argv[0] == "bench":
        return _run_bench(argv[1:])

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return _run_train(args, parser)


if __name__ == "__main__":
    sys.exit(main())
