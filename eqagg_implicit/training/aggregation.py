"""Build pooling layers, solvers and differentiation modes from their command-line names.

Every task builds its aggregation through `build_pooling`, so the names in `TaskOptions`
mean the same thing in every experiment.
"""

from collections.abc import Sequence

import jax
from jaxtyping import PRNGKeyArray

from .. import adjoints, solvers
from .._layer import EquilibriumAggregation
from .._pooling import AbstractPooling
from .._potentials import ResNetPotential, SumOfSquaresResNetPotential
from .._regularisers import L2Regulariser
from .task import ADJOINTS, SOLVERS, TaskOptions

# Solvers that minimise a sum of squares through the Jacobian of its residual vector, so
# they need a potential of the form F = ||r(x, y)||^2.
LEAST_SQUARES_SOLVERS: frozenset[str] = frozenset({"gauss-newton", "levenberg-marquardt"})

# The class behind each solver name, and the keyword arguments that select its variant.
_SOLVER_CLASSES: dict[str, tuple[str, dict]] = {
    "gd": ("GradientDescent", {}),
    "anderson": ("AndersonAcceleration", {}),
    "lbfgs": ("LBFGS", {"backend": "optimistix"}),
    "lbfgs-jaxopt": ("LBFGS", {"backend": "jaxopt"}),
    "gauss-newton": ("GaussNewton", {}),
    "levenberg-marquardt": ("LevenbergMarquardt", {}),
}


def build_solver(name: str, max_steps: int, tolerance: float = 0.0) -> solvers.AbstractSolver:
    """Build the inner solver called `name`.

    **Arguments:**

    - `name`: one of "gd", "anderson", "lbfgs", "lbfgs-jaxopt", "gauss-newton",
      "levenberg-marquardt".
    - `max_steps`: the maximum number of solver iterations.
    - `tolerance`: stop once max |dE/dy| falls to this value; 0 runs all iterations.

    **Returns:** an `AbstractSolver`.
    """
    if name not in _SOLVER_CLASSES:
        raise ValueError(f"Unknown solver {name!r}; choose one of {', '.join(SOLVERS)}.")
    class_name, variant = _SOLVER_CLASSES[name]

    # Looked up at call time, because solver classes live in their own files and a build
    # may lack one of them.
    solver_class = getattr(solvers, class_name, None)
    if solver_class is None:
        raise ValueError(
            f"Solver {name!r} needs eqagg_implicit.solvers.{class_name}, which this installation does not "
            "provide. Choose another --solver or update eqagg-implicit."
        )
    return solver_class(max_steps=max_steps, tolerance=tolerance, **variant)


def build_adjoint(name: str, solver_steps: int) -> adjoints.AbstractAdjoint:
    """Build the differentiation mode called `name`.

    **Arguments:**

    - `name`: one of "unrolled", "implicit", "jacobian-free", "truncated".
    - `solver_steps`: the solver's maximum number of iterations; the truncated mode
      backpropagates through the last min(5, solver_steps) of them.

    **Returns:** an `AbstractAdjoint`.
    """
    if name == "unrolled":
        return adjoints.UnrolledAdjoint()
    if name == "implicit":
        return adjoints.ImplicitAdjoint()
    if name == "jacobian-free":
        return adjoints.JacobianFreeAdjoint()
    if name == "truncated":
        return adjoints.TruncatedAdjoint(num_backprop_steps=min(5, solver_steps))
    raise ValueError(f"Unknown adjoint {name!r}; choose one of {', '.join(ADJOINTS)}.")


def build_equilibrium(
    options: TaskOptions,
    input_size: int,
    output_size: int,
    potential_sizes: Sequence[int],
    *,
    key: PRNGKeyArray,
) -> EquilibriumAggregation:
    """Build an `EquilibriumAggregation` with a ResNet potential and a learnable L2 regulariser.

    **Arguments:**

    - `options`: supplies the solver, adjoint, solver steps and tolerance.
    - `input_size`: d, the size of one set element.
    - `output_size`: M, the size of the aggregate.
    - `potential_sizes`: the widths of the potential's layers, the last one included. With a
      least-squares solver the potential is ||r||^2 with r the last layer's output, so the last
      width may exceed 1; otherwise it must be 1.
    - `key`: a JAX PRNG key for the initial weights.

    **Returns:** the layer.
    """
    if options.solver in LEAST_SQUARES_SOLVERS:
        potential = SumOfSquaresResNetPotential(input_size, output_size, tuple(potential_sizes), key=key)
    else:
        potential = ResNetPotential(input_size, output_size, tuple(potential_sizes), key=key)
    return EquilibriumAggregation(
        potential,
        L2Regulariser(),
        build_solver(options.solver, options.solver_steps, options.tolerance),
        build_adjoint(options.adjoint, options.solver_steps),
    )


def build_pooling(
    options: TaskOptions,
    input_size: int,
    output_size: int,
    *,
    key: PRNGKeyArray,
    potential_sizes: Sequence[int] = (256, 256, 1),
    pna_delta: float | None = None,
) -> AbstractPooling:
    """Build the pooling layer named by `options.aggregation`.

    Sum, mean and max pooling keep the element size, so they need `output_size == input_size`.
    Attention pooling needs `output_size` divisible by `options.num_heads`.

    **Arguments:**

    - `options`: the task options; `aggregation` picks the layer.
    - `input_size`: d, the size of one set element.
    - `output_size`: M, the size of the pooled vector.
    - `key`: a JAX PRNG key for the initial weights.
    - `potential_sizes`: the potential's layer widths, for equilibrium aggregation.
    - `pna_delta`: for PNA, the mean of log(degree + 1) over the training graphs.

    **Returns:** an `AbstractPooling` that maps (N, input_size) to (output_size,).
    """
    name = options.aggregation
    if name == "equilibrium":
        return build_equilibrium(options, input_size, output_size, potential_sizes, key=key)

    from .. import pooling

    if name in ("sum", "mean", "max"):
        if output_size != input_size:
            raise ValueError(
                f"{name} pooling keeps the element size, so output_size={output_size} must equal "
                f"input_size={input_size}."
            )
        return {"sum": pooling.SumPooling, "mean": pooling.MeanPooling, "max": pooling.MaxPooling}[name]()
    if name == "attention":
        if output_size % options.num_heads != 0:
            raise ValueError(
                f"Attention pooling splits the output into heads, so output_size={output_size} must be "
                f"divisible by num_heads={options.num_heads}; change --latent-size or --num-heads."
            )
        return pooling.AttentionPooling(input_size, output_size, options.num_heads, key=key)
    if name == "pna":
        if pna_delta is None:
            raise ValueError("PNA pooling needs pna_delta, the mean of log(degree + 1) over the training graphs.")
        return pooling.PNAPooling(input_size, output_size, pna_delta, key=key)
    raise ValueError(f"Unknown aggregation {name!r}; choose one of sum, mean, max, attention, pna, equilibrium.")


def pooled_size(layer: AbstractPooling, input_size: int, set_size: int = 2) -> int:
    """Return the output size of `layer` for elements of size `input_size`, by shape inference."""
    dummy = jax.ShapeDtypeStruct((set_size, input_size), jax.numpy.float32)
    return jax.eval_shape(layer, dummy).shape[-1]
