"""Training: the task protocol, the training loop, checkpoints and data-parallel execution."""

from .aggregation import LEAST_SQUARES_SOLVERS, build_adjoint, build_equilibrium, build_pooling, build_solver
from .checkpoint import CheckpointError, load_checkpoint, read_checkpoint_metadata, save_checkpoint
from .loop import TrainConfig, train
from .parallel import initialize_distributed, make_data_mesh, replicate, shard_batch
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
    "CheckpointError",
    "TrainConfig",
    "initialize_distributed",
    "load_checkpoint",
    "make_data_mesh",
    "read_checkpoint_metadata",
    "replicate",
    "save_checkpoint",
    "shard_batch",
    "train",
]
