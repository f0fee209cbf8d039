"""The benchmarked configurations: tasks, solvers and differentiation modes, looked up by name.

The three full-size tasks follow the experiments of Equilibrium Aggregation (Bartunov, Fuchs
and Lillicrap, UAI 2022), with the potential's layer sizes of the paper:

- median estimation: sets of 100 scalars, a scalar ResNet potential [256, 256, 1], M = 64;
- Omniglot class counting: sets of 16 embeddings of 256 dimensions, a sum-of-squares ResNet
  potential [512, 512, 32], M = 256;
- the MOLPCBA graph readout: batches of 8 graphs and 1024 nodes with 300 features, a
  sum-of-squares ResNet potential [600, 300, 32], M = 300.

Inputs are random, because memory and speed do not depend on the data. The tiny tasks are
test sizes.

Solvers are looked up in `eqagg_implicit.solvers` by class name when a run starts, so a solver
that another part of the library adds later is benchmarked without a change here; one that is
missing is skipped with a logged note.
"""

import dataclasses
import logging
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

import eqagg_implicit.solvers as solvers_module
from eqagg_implicit import (
    EquilibriumAggregation,
    ImplicitAdjoint,
    JacobianFreeAdjoint,
    ResNetPotential,
    Solution,
    SumOfSquaresResNetPotential,
    TruncatedAdjoint,
    UnrolledAdjoint,
    segments_to_padded,
)
from eqagg_implicit.adjoints import AbstractAdjoint
from eqagg_implicit.solvers import AbstractSolver

logger = logging.getLogger(__name__)

DEFAULT_ITERATIONS = (5, 10, 15, 30, 60, 100)


class BenchmarkInputs(eqx.Module):
    """The arrays one training step reads.

    **Fields:**

    - `x`: the set elements, (num_sets, set_size, d) for a batch of padded sets or
      (total_rows, d) for ragged rows with segment ids.
    - `segment_ids`: the set of each row, shape (total_rows,), or `None` for padded sets.
    - `target`: the fixed regression target of the pooled output, (num_sets, M).
    """

    x: Float[Array, "..."]
    segment_ids: Int[Array, " total"] | None
    target: Float[Array, "num_sets m"]


@dataclasses.dataclass(frozen=True)
class BenchmarkTask:
    """One benchmarked layer size and batch shape.

    **Fields:**

    - `name`: the name used on the command line and in the records.
    - `description`: one line for the Markdown report.
    - `input_size`: d, the size of one set element.
    - `output_size`: M, the size of the aggregate.
    - `hidden_sizes`: the widths of the potential's layers, the last one included.
    - `sum_of_squares`: a `SumOfSquaresResNetPotential` if true, else a scalar `ResNetPotential`.
    - `num_sets`: the number of sets in one batch.
    - `set_size`: the elements per set; with segments, the `max_segment_size` bound.
    - `total_rows`: `None` for a batch of padded sets pooled with `jax.vmap`; otherwise the
      number of rows of a ragged batch pooled with segment ids.
    - `step_size`: the gradient-descent step size alpha.
    - `roofline_iterations`: T of the forward pass that the roofline measurement times.
    """

    name: str
    description: str
    input_size: int
    output_size: int
    hidden_sizes: tuple[int, ...]
    sum_of_squares: bool
    num_sets: int
    set_size: int
    total_rows: int | None = None
    step_size: float = 0.1
    roofline_iterations: int = 15

    @property
    def segmented(self) -> bool:
        """Whether the batch is ragged rows with segment ids rather than padded sets."""
        return self.total_rows is not None

    def make_layer(self, solver: AbstractSolver, adjoint: AbstractAdjoint, key: PRNGKeyArray) -> EquilibriumAggregation:
        """Build the layer with this task's potential, the default L2 regulariser and the given solver and mode."""
        potential_type = SumOfSquaresResNetPotential if self.sum_of_squares else ResNetPotential
        potential = potential_type(self.input_size, self.output_size, self.hidden_sizes, key=key)
        return EquilibriumAggregation(potential, solver=solver, adjoint=adjoint)

    def make_inputs(self, key: PRNGKeyArray, dtype=jnp.float32) -> BenchmarkInputs:
        """Draw standard normal set elements and a standard normal target."""
        x_key, target_key = jax.random.split(key)
        target = jax.random.normal(target_key, (self.num_sets, self.output_size), dtype)
        if not self.segmented:
            x = jax.random.normal(x_key, (self.num_sets, self.set_size, self.input_size), dtype)
            return BenchmarkInputs(x=x, segment_ids=None, target=target)

        x = jax.random.normal(x_key, (self.total_rows, self.input_size), dtype)
        return BenchmarkInputs(x=x, segment_ids=jnp.asarray(self.segment_sizes_to_ids()), target=target)

    def segment_sizes_to_ids(self) -> np.ndarray:
        """Split `total_rows` rows into `num_sets` sorted segments as equal as possible.

        Raises `ValueError` when a segment would exceed `set_size`, the `max_segment_size` bound.
        """
        sizes = np.full(self.num_sets, self.total_rows // self.num_sets)
        sizes[: self.total_rows % self.num_sets] += 1
        if sizes.max() > self.set_size:
            raise ValueError(
                f"Task {self.name!r} puts {sizes.max()} rows in one segment but max_segment_size is {self.set_size}. "
                "Raise set_size or lower total_rows."
            )
        return np.repeat(np.arange(self.num_sets), sizes).astype(np.int32)

    def solve(self, layer: EquilibriumAggregation, inputs: BenchmarkInputs) -> Solution:
        """Pool every set of the batch; every field of the `Solution` has a leading batch axis."""
        if self.segmented:
            return layer.solve(
                inputs.x,
                segment_ids=inputs.segment_ids,
                num_segments=self.num_sets,
                max_segment_size=self.set_size,
            )
        return jax.vmap(layer.solve)(inputs.x)

    def padded_sets(self, inputs: BenchmarkInputs) -> tuple[Float[Array, "num_sets n d"], Bool[Array, "num_sets n"]]:
        """Return the batch as padded sets and their masks, the form in which the layer solves it."""
        if self.segmented:
            padded, mask, _ = segments_to_padded(inputs.x, inputs.segment_ids, self.num_sets, self.set_size)
            return padded, mask
        return inputs.x, jnp.ones(inputs.x.shape[:2], bool)


TASKS: dict[str, BenchmarkTask] = {
    task.name: task
    for task in (
        BenchmarkTask(
            name="median",
            description="median estimation: 8 sets of 100 scalars, ResNetPotential [256, 256, 1], M = 64",
            input_size=1,
            output_size=64,
            hidden_sizes=(256, 256, 1),
            sum_of_squares=False,
            num_sets=8,
            set_size=100,
        ),
        BenchmarkTask(
            name="counting",
            description="class counting: 8 sets of 16 x 256, SumOfSquaresResNetPotential [512, 512, 32], M = 256",
            input_size=256,
            output_size=256,
            hidden_sizes=(512, 512, 32),
            sum_of_squares=True,
            num_sets=8,
            set_size=16,
        ),
        BenchmarkTask(
            name="molpcba",
            description=(
                "MOLPCBA readout: 8 graphs, 1024 nodes x 300 in segments, max_segment_size = 128, "
                "SumOfSquaresResNetPotential [600, 300, 32], M = 300"
            ),
            input_size=300,
            output_size=300,
            hidden_sizes=(600, 300, 32),
            sum_of_squares=True,
            num_sets=8,
            set_size=128,
            total_rows=1024,
        ),
        BenchmarkTask(
            name="tiny-sets",
            description="test size: 2 sets of 6 x 3, SumOfSquaresResNetPotential [8, 8, 4], M = 4",
            input_size=3,
            output_size=4,
            hidden_sizes=(8, 8, 4),
            sum_of_squares=True,
            num_sets=2,
            set_size=6,
            roofline_iterations=4,
        ),
        BenchmarkTask(
            name="tiny-graphs",
            description="test size: 3 graphs, 10 nodes x 3 in segments, max_segment_size = 4, ResNetPotential [8, 1], M = 4",
            input_size=3,
            output_size=4,
            hidden_sizes=(8, 1),
            sum_of_squares=False,
            num_sets=3,
            set_size=4,
            total_rows=10,
            roofline_iterations=4,
        ),
    )
}

FULL_TASKS = ("median", "counting", "molpcba")


@dataclasses.dataclass(frozen=True)
class SolverSpec:
    """How to build one benchmarked solver: its class name in `eqagg_implicit.solvers` and extra arguments."""

    class_name: str
    options: dict = dataclasses.field(default_factory=dict)
    takes_step_size: bool = False


SOLVERS: dict[str, SolverSpec] = {
    "gd": SolverSpec("GradientDescent", takes_step_size=True),
    "anderson": SolverSpec("AndersonAcceleration"),
    "lbfgs-optimistix": SolverSpec("LBFGS", {"backend": "optimistix"}),
    "lbfgs-jaxopt": SolverSpec("LBFGS", {"backend": "jaxopt"}),
    "gauss-newton": SolverSpec("GaussNewton"),
    "levenberg-marquardt": SolverSpec("LevenbergMarquardt"),
}

# NOTE: "implicit" relaxes ImplicitAdjoint's CG tolerance from its default rtol = 1e-6 to 1e-5.
# In float32 with M = 256, CG's residual stops falling near 1e-6 relative, so at 1e-6 it runs
# all 2 M + 10 steps, and the transposed solve of the backward pass then raises. The
# "implicit-default" entry keeps the library default, to show that failure.
ADJOINTS: dict[str, Callable[[int], AbstractAdjoint]] = {
    "unrolled": lambda iterations: UnrolledAdjoint(),
    "implicit": lambda iterations: ImplicitAdjoint(rtol=1e-5),
    "implicit-default": lambda iterations: ImplicitAdjoint(),
    "implicit-noprobe": lambda iterations: ImplicitAdjoint(rtol=1e-5, probe=False),
    "jacobian-free": lambda iterations: JacobianFreeAdjoint(),
    "truncated": lambda iterations: TruncatedAdjoint(num_backprop_steps=min(5, iterations)),
}

DEFAULT_ADJOINTS = ("unrolled", "implicit", "jacobian-free", "truncated")


def make_solver(name: str, iterations: int, task: BenchmarkTask) -> AbstractSolver | None:
    """Build the solver `name` with `max_steps = iterations`, or return `None` if the library lacks it.

    The solvers run all `iterations` steps (tolerance 0), so that every mode does the same
    forward work at a given T. A missing class, or one whose constructor rejects the arguments,
    is logged and returns `None`.
    """
    if name not in SOLVERS:
        raise ValueError(f"Unknown solver {name!r}; choose from {', '.join(SOLVERS)}.")
    spec = SOLVERS[name]
    solver_type = getattr(solvers_module, spec.class_name, None)
    if solver_type is None:
        logger.warning("Skipping solver %s: eqagg_implicit.solvers has no %s yet.", name, spec.class_name)
        return None

    options = dict(spec.options)
    if spec.takes_step_size:
        options["step_size"] = task.step_size
    try:
        return solver_type(max_steps=iterations, tolerance=0.0, **options)
    except (TypeError, ValueError) as error:
        logger.warning("Skipping solver %s: %s(max_steps=%d, %s) failed: %s", name, spec.class_name, iterations, options, error)
        return None


def make_adjoint(name: str, iterations: int) -> AbstractAdjoint:
    """Build the differentiation mode `name` for a solve of `iterations` steps."""
    if name not in ADJOINTS:
        raise ValueError(f"Unknown differentiation mode {name!r}; choose from {', '.join(ADJOINTS)}.")
    return ADJOINTS[name](iterations)


def get_task(name: str) -> BenchmarkTask:
    """Return the task called `name`."""
    if name not in TASKS:
        raise ValueError(f"Unknown task {name!r}; choose from {', '.join(TASKS)}.")
    return TASKS[name]
