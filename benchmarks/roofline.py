"""The FLOP rate of the equilibrium forward pass as a fraction of a dense matmul's on the same device.

The forward pass is T steps of gradient descent on a batch of sets, jitted as the layer runs
it. Its FLOP count is (T + 1) times XLA's count for one batched energy value-and-gradient,
because gradient descent evaluates it once at y_0 and once per step, and because XLA's cost
analysis would count the loop body only once. The matmul is square, float32, and sized to the
same FLOP count, so both are timed on the same amount of work in the same process.
"""

import equinox as eqx
import jax
import jax.numpy as jnp

from eqagg_implicit import EnergyProblem, GradientDescent, UnrolledAdjoint

from .configurations import BenchmarkTask
from .measurement import read_flops, split_layer, time_calls


def measure_roofline(task: BenchmarkTask, *, repeats: int, budget_seconds: float, key) -> dict:
    """Time the task's forward pass and a dense matmul of the same FLOP count.

    **Arguments:**

    - `task`: the task whose layer and batch are measured.
    - `repeats`, `budget_seconds`: passed to `time_calls` for each of the two programs.
    - `key`: the PRNG key of the layer and the inputs.

    **Returns:** a dict with `iterations`, `forward_flops`, `forward_seconds`,
    `forward_flops_per_second`, `matmul_size`, `matmul_flops`, `matmul_seconds`,
    `matmul_flops_per_second` and `fraction_of_matmul` (the ratio of the two rates).
    """
    layer_key, input_key, matmul_key = jax.random.split(key, 3)
    iterations = task.roofline_iterations
    solver = GradientDescent(max_steps=iterations, step_size=task.step_size)
    layer = task.make_layer(solver, UnrolledAdjoint(), layer_key)
    inputs = task.make_inputs(input_key)
    params, static = split_layer(layer)

    def forward(params, inputs):
        return task.solve(eqx.combine(params, static), inputs).value

    forward_compiled = jax.jit(forward).lower(params, inputs).compile()
    forward_timing = time_calls(forward_compiled, (params, inputs), repeats, budget_seconds)

    # One batched evaluation of E and dE/dy at y = 0. The value of y does not change the cost.
    def energy_value_and_grad(params, x, mask):
        energy = eqx.combine(params, static).energy
        y = jnp.zeros((x.shape[0], task.output_size), x.dtype)
        return jax.vmap(lambda y, x, mask: EnergyProblem(energy, x, mask).value_and_grad(y))(y, x, mask)

    x, mask = task.padded_sets(inputs)
    evaluation_flops = read_flops(jax.jit(energy_value_and_grad).lower(params, x, mask).compile())
    if evaluation_flops is None:
        return {"iterations": iterations, "forward_flops": None, "fraction_of_matmul": None}
    forward_flops = (iterations + 1) * evaluation_flops
    forward_rate = forward_flops / forward_timing.median_seconds

    size = max(int(round((forward_flops / 2) ** (1 / 3))), 1)
    a_key, b_key = jax.random.split(matmul_key)
    a = jax.random.normal(a_key, (size, size), jnp.float32)
    b = jax.random.normal(b_key, (size, size), jnp.float32)
    matmul_compiled = jax.jit(jnp.matmul).lower(a, b).compile()
    matmul_flops = read_flops(matmul_compiled) or 2.0 * size**3
    matmul_timing = time_calls(matmul_compiled, (a, b), repeats, budget_seconds)
    matmul_rate = matmul_flops / matmul_timing.median_seconds

    return {
        "iterations": iterations,
        "forward_flops": forward_flops,
        "forward_seconds": forward_timing.median_seconds,
        "forward_flops_per_second": forward_rate,
        "matmul_size": size,
        "matmul_flops": matmul_flops,
        "matmul_seconds": matmul_timing.median_seconds,
        "matmul_flops_per_second": matmul_rate,
        "fraction_of_matmul": forward_rate / matmul_rate,
    }

