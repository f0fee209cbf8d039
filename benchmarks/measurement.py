"""Compile, time and check one training step through the equilibrium layer.

A training step is `jax.value_and_grad` of the loss sum_s ||y*_s - target_s||^2 over a batch
of sets, taken with respect to every floating-point array of the layer (potential, regulariser
and solver parameters such as a learnable step size). XLA's compiled memory and cost analysis
give the memory and FLOP counts, wall-clock runs give the time, and a float64 implicit solve
gives the reference gradient.
"""

import dataclasses
import importlib.metadata
import logging
import platform
import statistics
import time
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from eqagg_implicit import EquilibriumAggregation, GradientDescent, ImplicitAdjoint

from .configurations import BenchmarkInputs, BenchmarkTask

logger = logging.getLogger(__name__)

_VERSIONED_PACKAGES = ("eqagg-implicit", "jax", "jaxlib", "equinox", "lineax", "optimistix", "jaxopt", "numpy")


def make_train_step(task: BenchmarkTask, static: EquilibriumAggregation) -> Callable:
    """Return `train_step(params, inputs) -> (loss, max_residual, grads)` for the layer `combine(params, static)`.

    `max_residual` is the largest max |dE/dy| over the sets of the batch, from `layer.solve`.
    """

    def loss_fn(params, inputs: BenchmarkInputs):
        layer = eqx.combine(params, static)
        solution = task.solve(layer, inputs)
        loss = jnp.sum((solution.value - inputs.target) ** 2)
        return loss, jnp.max(solution.residual)

    def train_step(params, inputs: BenchmarkInputs):
        (loss, max_residual), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, inputs)
        return loss, max_residual, grads

    return train_step


def split_layer(layer: EquilibriumAggregation):
    """Split a layer into its floating-point arrays (the jit arguments) and everything else."""
    return eqx.partition(layer, eqx.is_inexact_array)


def read_memory(compiled) -> dict:
    """Return `temp_bytes`, `argument_bytes` and `output_bytes` from XLA's memory analysis.

    Each value is `None` when the backend gives no memory analysis.
    """
    stats = compiled.memory_analysis()
    fields = {
        "temp_bytes": "temp_size_in_bytes",
        "argument_bytes": "argument_size_in_bytes",
        "output_bytes": "output_size_in_bytes",
    }
    if stats is None:
        return {name: None for name in fields}
    return {name: _optional_int(getattr(stats, attribute, None)) for name, attribute in fields.items()}


def read_flops(compiled) -> float | None:
    """Return the FLOP count from XLA's cost analysis, or `None` when the backend reports none.

    Older JAX versions return a list with one dict per program and newer ones a single dict,
    so both forms are summed. XLA counts the body of a while loop once, whatever the trip
    count, and `lax.scan` and `lax.while_loop` both lower to while loops. So for a solve this
    is the cost of one iteration plus the code outside loops, not the cost of all T iterations.
    """
    analysis = compiled.cost_analysis()
    if analysis is None:
        return None
    parts = analysis if isinstance(analysis, (list, tuple)) else [analysis]
    counts = [part["flops"] for part in parts if isinstance(part, dict) and "flops" in part]
    if not counts:
        return None
    return float(sum(counts))


def _optional_int(value) -> int | None:
    return None if value is None else int(value)


@dataclasses.dataclass
class Timing:
    """Wall-clock times of repeated calls after one warm-up call.

    **Fields:**

    - `median_seconds`: the median of `seconds`.
    - `seconds`: every timed call, in order.
    - `warmup_output`: what the warm-up call returned, so results can be read without another call.
    """

    median_seconds: float
    seconds: list[float]
    warmup_output: object


def time_calls(function: Callable, args: tuple, repeats: int, budget_seconds: float) -> Timing:
    """Time `function(*args)` `repeats` times after a warm-up call, each until its output is ready.

    **Arguments:**

    - `function`: a compiled function.
    - `args`: its arguments.
    - `repeats`: the maximum number of timed calls. At least one is always made.
    - `budget_seconds`: stop repeating once the timed calls add up to this much.

    **Returns:** a `Timing`.
    """
    warmup_output = jax.block_until_ready(function(*args))

    seconds = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        jax.block_until_ready(function(*args))
        seconds.append(time.perf_counter() - start)
        if sum(seconds) >= budget_seconds:
            break
    return Timing(median_seconds=statistics.median(seconds), seconds=seconds, warmup_output=warmup_output)


def energy_gradient_vector(grads: EquilibriumAggregation) -> np.ndarray:
    """Flatten the gradient with respect to the potential and regulariser parameters into one vector.

    Solver parameters are left out: the minimiser does not depend on them, so the exact
    gradient with respect to them is zero, and only backpropagating through the steps
    gives them a (useful) non-zero gradient.
    """
    leaves = jax.tree.leaves(eqx.filter((grads.potential, grads.regulariser), eqx.is_inexact_array))
    return np.concatenate([np.asarray(leaf, np.float64).reshape(-1) for leaf in leaves])


def to_float64(tree):
    """Cast every floating-point array of `tree` to float64. Call it inside `jax.enable_x64(True)`."""
    return jax.tree.map(lambda leaf: leaf.astype(jnp.float64) if eqx.is_inexact_array(leaf) else leaf, tree)


@dataclasses.dataclass
class Reference:
    """A tightly converged float64 gradient for one task.

    **Fields:**

    - `gradient`: from `energy_gradient_vector`.
    - `residual`: the largest max |dE/dy| over the batch at the reference minimiser.
    - `seconds`: the time the reference took, compilation included.
    """

    gradient: np.ndarray
    residual: float
    seconds: float


def compute_reference(
    task: BenchmarkTask,
    layer: EquilibriumAggregation,
    inputs: BenchmarkInputs,
    *,
    tolerance: float = 1e-10,
    max_steps: int = 5000,
) -> Reference:
    """Compute the parameter gradient of the training loss with a tightly converged implicit solve in float64.

    The solver is gradient descent with the task's step size that stops once max |dE/dy| <=
    `tolerance` (or after `max_steps`), so the reference ends at the minimiser that the
    benchmarked solvers, which also start at zero, approach. The implicit gradient then
    solves its linear system by CG to a relative tolerance of 1e-12.

    **Arguments:**

    - `task`, `layer`, `inputs`: the benchmarked task, a layer with its potential and
      regulariser, and the batch. Only the potential and regulariser of `layer` are used.
    - `tolerance`: the max |dE/dy| at which the reference solve stops.
    - `max_steps`: the iteration limit of the reference solve.

    **Returns:** a `Reference`.
    """
    start = time.perf_counter()
    with jax.enable_x64(True):
        solver = GradientDescent(max_steps=max_steps, step_size=task.step_size, tolerance=tolerance)
        adjoint = ImplicitAdjoint(rtol=1e-12, atol=1e-14)
        reference_layer = eqx.tree_at(lambda lay: (lay.solver, lay.adjoint), layer, (solver, adjoint))
        reference_layer = to_float64(reference_layer)
        reference_inputs = to_float64(inputs)

        params, static = split_layer(reference_layer)
        _, residual, grads = jax.jit(make_train_step(task, static))(params, reference_inputs)
        gradient = energy_gradient_vector(grads)
        residual = float(residual)

    if residual > 100 * tolerance:
        logger.warning(
            "The float64 reference for task %s stopped at max |dE/dy| = %.3g after at most %d steps, "
            "so gradient errors below about that level are not resolved.",
            task.name, residual, max_steps,
        )
    return Reference(gradient=gradient, residual=residual, seconds=time.perf_counter() - start)


def relative_error(value: np.ndarray, reference: np.ndarray) -> float:
    """Return ||value - reference|| / ||reference||, or inf for a non-finite value."""
    if not np.all(np.isfinite(value)):
        return float("inf")
    return float(np.linalg.norm(value - reference) / max(np.linalg.norm(reference), np.finfo(np.float64).tiny))


def describe_environment() -> dict:
    """Return the device that JAX measures on and the versions of the packages involved."""
    device = jax.devices()[0]
    versions = {}
    for package in _VERSIONED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    versions["python"] = platform.python_version()
    return {
        "device": device.device_kind,
        "platform": device.platform,
        "device_count": jax.device_count(),
        "versions": versions,
    }


@dataclasses.dataclass
class CompiledStep:
    """A compiled training step, its arguments and XLA's analysis of it.

    **Fields:**

    - `compiled`: the compiled `train_step(params, inputs)`.
    - `args`: `(params, inputs)`.
    - `analysis`: `temp_bytes`, `argument_bytes`, `output_bytes`, `flops` and `compile_seconds`.
    """

    compiled: object
    args: tuple
    analysis: dict


def compile_step(task: BenchmarkTask, layer: EquilibriumAggregation, inputs: BenchmarkInputs) -> CompiledStep:
    """Compile one training step of `layer` on `inputs` and read XLA's memory and cost analysis.

    Raises whatever tracing raises, such as the `ValueError` of a differentiation mode that
    cannot run the solver.
    """
    params, static = split_layer(layer)
    jitted = jax.jit(make_train_step(task, static))

    start = time.perf_counter()
    compiled = jitted.lower(params, inputs).compile()
    compile_seconds = time.perf_counter() - start

    analysis = {**read_memory(compiled), "flops": read_flops(compiled), "compile_seconds": compile_seconds}
    return CompiledStep(compiled=compiled, args=(params, inputs), analysis=analysis)


def run_step(step: CompiledStep, reference: Reference, *, repeats: int, budget_seconds: float) -> dict:
    """Time a compiled training step and check its gradient against the reference.

    **Arguments:**

    - `step`: from `compile_step`.
    - `reference`: the float64 reference gradient of the same potential and regulariser.
    - `repeats`, `budget_seconds`: passed to `time_calls`.

    **Returns:** a dict with `step_seconds` (the median), `step_seconds_all`, `residual`
    (the largest max |dE/dy| over the batch), `grad_rel_error` and `loss`. Raises
    `jax.errors.JaxRuntimeError` when a runtime check inside the step fails.
    """
    timing = time_calls(step.compiled, step.args, repeats, budget_seconds)
    loss, residual, grads = timing.warmup_output
    return {
        "step_seconds": timing.median_seconds,
        "step_seconds_all": timing.seconds,
        "residual": float(residual),
        "grad_rel_error": relative_error(energy_gradient_vector(grads), reference.gradient),
        "loss": float(loss),
    }
