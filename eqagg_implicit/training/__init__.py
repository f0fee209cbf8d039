"""Training: the task protocol, the training loop, checkpoints and data-parallel execution."""

from .aggregation import LEAST_SQUARES_SOLVERS, build_adjoint, build_equilibrium, build_pooling, build_solver
from .task import ADJOINTS, AGGREGATIONS, SOLVERS, AbstractTask, Batch, TaskOptions

__all__ = [
    "ADJOINTS",
    "AGGREGATIONS",
    "LEAST_SQUARES_SOLVERS",
    "SOLVERS",
    "AbstractTask",
    "Batch",
    "TaskOptions",
    "build_adjoint",
    "build_equilibrium",
    "build_pooling",
    "build_solver",
]
