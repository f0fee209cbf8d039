"""`eqagg bench`: compiled memory, FLOPs, step time and gradient accuracy of every solver and differentiation mode."""

from .configurations import (
    ADJOINTS,
    SOLVERS,
    TASKS,
    BenchmarkInputs,
    BenchmarkTask,
    SolverSpec,
    get_task,
    make_adjoint,
    make_solver,
)
from .measurement import CompiledStep, Reference, compile_step, compute_reference, describe_environment, run_step
from .roofline import measure_roofline
from .runner import BenchmarkSettings, run_benchmarks

__all__ = [
    "ADJOINTS",
    "SOLVERS",
    "TASKS",
    "BenchmarkInputs",
    "BenchmarkSettings",
    "BenchmarkTask",
    "CompiledStep",
    "Reference",
    "SolverSpec",
    "compile_step",
    "compute_reference",
    "describe_environment",
    "get_task",
    "make_adjoint",
    "make_solver",
    "measure_roofline",
    "run_benchmarks",
    "run_step",
]
