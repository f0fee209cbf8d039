"""The task protocol: what the training loop needs to know about a learning problem.

A task owns its data, its model architecture, its loss and its evaluation. The loop in
`loop.py` owns everything else (optimiser, jit, devices, checkpoints, logs), so a new
experiment only subclasses `AbstractTask` and registers itself in `experiments/registry.py`.
"""

import abc
import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import equinox as eqx
from jaxtyping import Array, PRNGKeyArray, PyTree, Scalar

AGGREGATIONS: tuple[str, ...] = ("sum", "mean", "max", "attention", "pna", "equilibrium")
SOLVERS: tuple[str, ...] = ("gd", "anderson", "lbfgs", "lbfgs-jaxopt", "gauss-newton", "levenberg-marquardt")
ADJOINTS: tuple[str, ...] = ("unrolled", "implicit", "jacobian-free", "truncated")


@dataclasses.dataclass(frozen=True)
class TaskOptions:
    """The settings that choose a task's model and its training signal.

    Every task accepts every field; a field that does not apply to a task is ignored by it,
    and a field left at `None` takes the task's own default.

    **Arguments:**

    - `aggregation`: the pooling layer, one of `AGGREGATIONS`.
    - `solver`: the inner solver of the equilibrium layer, one of `SOLVERS`.
    - `adjoint`: how gradients pass through the equilibrium layer, one of `ADJOINTS`.
    - `solver_steps`: the maximum number of inner solver iterations per forward pass.
    - `tolerance`: stop the inner solver once max |dE/dy| falls to this value; 0 runs all steps.
    - `learning_rate`: the Adam learning rate of the outer optimiser.
    - `aux_loss_weight`: the weight of the equilibrium auxiliary loss (the mean squared
      energy gradient norm over the solver steps) added to the task loss.
    - `latent_size`: D, the size of the pooled representation.
    - `hidden_size`: the width of the hidden layers of the task's networks.
    - `num_heads`: the number of heads of attention pooling.
    - `sub_batches`: for graph tasks, the number of padded sub-batches that form the leading
      axis of a batch; it must be a multiple of the number of devices.
    - `data_dir`: the folder that holds the task's data files.
    - `dataset`: the name of a dataset, for tasks that offer several.
    - `eval_size`: the number of examples per evaluation split, for tasks that sample them.
    - `extra`: task-specific settings as strings, from `--option KEY=VALUE` on the command line.
    """

    aggregation: str = "equilibrium"
    solver: str = "gd"
    adjoint: str = "unrolled"
    solver_steps: int = 5
    tolerance: float = 0.0
    learning_rate: float = 1e-3
    aux_loss_weight: float = 0.0
    latent_size: int | None = None
    hidden_size: int | None = None
    num_heads: int = 4
    sub_batches: int = 1
    data_dir: str | None = None
    dataset: str | None = None
    eval_size: int | None = None
    extra: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        choices = (("aggregation", AGGREGATIONS), ("solver", SOLVERS), ("adjoint", ADJOINTS))
        for field, allowed in choices:
            value = getattr(self, field)
            if value not in allowed:
                raise ValueError(f"Unknown {field} {value!r}; choose one of {', '.join(allowed)}.")
        positive = ("solver_steps", "num_heads", "sub_batches", "latent_size", "hidden_size", "eval_size")
        for field in positive:
            value = getattr(self, field)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise ValueError(f"{field} must be a positive integer, got {value!r}.")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate!r}.")
        if not self.tolerance >= 0:
            raise ValueError(f"tolerance must be >= 0, got {self.tolerance!r}.")
        if not self.aux_loss_weight >= 0:
            raise ValueError(f"aux_loss_weight must be >= 0, got {self.aux_loss_weight!r}.")

    def to_json(self) -> dict[str, Any]:
        """Return the options as a JSON-ready dict."""
        fields = dataclasses.asdict(self)
        fields["extra"] = dict(self.extra)
        return fields


Batch = PyTree
"""A training batch: a pytree of numpy arrays whose leaves share a leading axis.

The loop splits that leading axis across devices, so its size must be divisible by the
device count. For graph tasks it indexes whole padded sub-batches, so no graph is split
between devices.
"""


class AbstractTask(abc.ABC):
    """A learning problem: data, model, loss and evaluation.

    Subclasses set the class attributes and implement the four abstract methods. The loop
    calls them as follows:

    1. `init(key)` once, to build the model and its state.
    2. `train_batch(seed, step, batch_size)` for every training step. The batch must depend
       only on these three arguments, so that a resumed run reads the same data as an
       uninterrupted one.
    3. `loss(model, model_state, batch, key)` inside `jax.jit` and `jax.grad`.
    4. `evaluate(model, model_state, split)` every `eval_every` steps, for every name in
       `splits`; each result must contain `metric_name`.

    **Class attributes:**

    - `name`: the task name used on the command line.
    - `metric_name`: the key of the main metric in `evaluate`'s result, such as "mse".
    - `higher_is_better`: whether a larger `metric_name` is better (accuracy) or worse (error).
    - `splits`: the evaluation splits. A task with a "validation" split gets the test metric
      at the best validation step in its summary.
    """

    name: ClassVar[str]
    metric_name: ClassVar[str]
    higher_is_better: ClassVar[bool]
    splits: ClassVar[tuple[str, ...]] = ("test",)

    def __init__(self, options: TaskOptions):
        self.options = options

    @abc.abstractmethod
    def init(self, key: PRNGKeyArray) -> tuple[eqx.Module, eqx.nn.State | None]:
        """Build the model and its state (such as batch-norm statistics), or `None` for no state.

        **Arguments:**

        - `key`: a JAX PRNG key for the initial parameters.

        **Returns:** `(model, model_state)`.
        """

    @abc.abstractmethod
    def train_batch(self, seed: int, step: int, batch_size: int) -> Batch:
        """Return the training batch of one step, as a pytree of numpy arrays with fixed shapes.

        **Arguments:**

        - `seed`: the run's data seed.
        - `step`: the zero-based training step.
        - `batch_size`: the number of examples in the global batch, over all devices and hosts.

        **Returns:** a `Batch` whose value depends only on the arguments.
        """

    @abc.abstractmethod
    def loss(
        self, model: eqx.Module, model_state: eqx.nn.State | None, batch: Batch, key: PRNGKeyArray
    ) -> tuple[Scalar, tuple[dict[str, Array], eqx.nn.State | None]]:
        """Compute the mean training loss of a batch; a pure function that `jax.jit` can trace.

        **Arguments:**

        - `model`, `model_state`: as returned by `init` and updated by training.
        - `batch`: a batch from `train_batch`, as JAX arrays.
        - `key`: a JAX PRNG key for dropout or other noise; derived from the step.

        **Returns:** `(loss, (metrics, new_model_state))`, where `metrics` maps names to scalar
        arrays that the loop averages and logs. For equilibrium aggregation include
        "residual" (max |dE/dy| at the output) and "aux_loss".
        """

    @abc.abstractmethod
    def evaluate(self, model: eqx.Module, model_state: eqx.nn.State | None, split: str) -> dict[str, float]:
        """Evaluate the model on one split.

        **Arguments:**

        - `model`, `model_state`: the current model, in inference mode where that matters.
        - `split`: one of `splits`.

        **Returns:** a dict of Python floats that contains `metric_name`.
        """

    def train_batches(self, seed: int, batch_size: int, start_step: int = 0) -> Iterator[Batch]:
        """Yield the training batches of steps `start_step`, `start_step + 1`, ... without end."""
        step = start_step
        while True:
            yield self.train_batch(seed, step, batch_size)
            step += 1
