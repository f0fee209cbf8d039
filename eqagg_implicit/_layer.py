"""The Equilibrium Aggregation layer: pooling a set into the minimiser of a learned energy."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from ._checks import check_feature_size, check_set
from ._energy import Energy, EnergyProblem
from ._pooling import AbstractPooling
from ._potentials import AbstractPotential, FunctionPotential
from ._regularisers import AbstractRegulariser, L2Regulariser
from ._segments import check_segments, segments_to_padded
from ._solution import Solution, SolveResult
from .adjoints._base import AbstractAdjoint
from .adjoints.unrolled import UnrolledAdjoint
from .solvers._base import AbstractSolver
from .solvers._least_squares import require_least_squares
from .solvers.gradient_descent import GradientDescent
from .solvers.iterate import max_abs_grad


class EquilibriumAggregation(AbstractPooling):
    """Pool a set X = {x_i} into y* = argmin_y R(y) + sum_i F(x_i, y).

    Equilibrium Aggregation (Bartunov, Fuchs and Lillicrap, UAI 2022) replaces sum, max or
    attention pooling by the minimiser of an energy whose potential F is a neural network. It is
    permutation invariant because the energy sums over the elements. Two independent choices
    decide how y* is computed and differentiated: `solver` (gradient descent, Anderson, LBFGS,
    Gauss-Newton, ...) and `adjoint` (unrolled, implicit, Jacobian-free, truncated).

    Call it like any pooling layer (see `AbstractPooling`): `layer(x)` or `layer(x, mask)` for
    one set of shape (N, d), or `layer(x, segment_ids=ids, num_segments=S)` for a ragged batch;
    `layer.solve(...)` takes the same arguments and returns a `Solution` with convergence
    diagnostics and the auxiliary loss. An empty or fully masked set returns the starting
    point (zero unless `learnable_start=True`), which is the minimiser of the L2 and zero
    regularisers.

    **Arguments:**

    - `potential`: F(x, y), an `AbstractPotential`.
    - `regulariser`: R(y); default `L2Regulariser()`, softplus(lambda) ||y||^2 with learnable lambda.
    - `solver`: default `GradientDescent(max_steps=10)`.
    - `adjoint`: default `UnrolledAdjoint()`.
    - `output_size`: M. Defaults to `potential.output_size` when the potential has one; the
      coordinate-wise analytic potentials take M from the input size when this is `None`.
    - `learnable_start`: start the solver from a learned y_0 instead of zero.
    """

    potential: AbstractPotential
    regulariser: AbstractRegulariser
    solver: AbstractSolver
    adjoint: AbstractAdjoint
    initial_value: Array | None
    output_size: int | None = eqx.field(static=True)

    def __init__(
        self,
        potential: AbstractPotential,
        regulariser: AbstractRegulariser | None = None,
        solver: AbstractSolver | None = None,
        adjoint: AbstractAdjoint | None = None,
        *,
        output_size: int | None = None,
        learnable_start: bool = False,
    ):
        if not isinstance(potential, AbstractPotential):
            raise TypeError(f"`potential` must be an AbstractPotential, got {type(potential).__name__}.")
        regulariser = L2Regulariser() if regulariser is None else regulariser
        solver = GradientDescent(max_steps=10) if solver is None else solver
        adjoint = UnrolledAdjoint() if adjoint is None else adjoint
        for name, value, kind in (
            ("regulariser", regulariser, AbstractRegulariser),
            ("solver", solver, AbstractSolver),
            ("adjoint", adjoint, AbstractAdjoint),
        ):
            if not isinstance(value, kind):
                raise TypeError(f"`{name}` must be an {kind.__name__}, got {type(value).__name__}.")
        potential_output_size = getattr(potential, "output_size", None)
        if output_size is None:
            output_size = potential_output_size
        elif potential_output_size is not None and potential_output_size != output_size:
            raise ValueError(
                f"output_size={output_size} disagrees with the potential's output_size={potential_output_size}. "
                "Omit output_size or make the two agree."
            )
        if output_size is not None and (
            not isinstance(output_size, int) or isinstance(output_size, bool) or output_size <= 0
        ):
            raise ValueError(f"output_size must be a positive int or None, got {output_size!r}.")
        if learnable_start and output_size is None:
            raise ValueError("learnable_start=True needs a known output_size; pass output_size=M.")
        if solver.requires_least_squares:
            require_least_squares(type(solver).__name__, Energy(potential, regulariser))
        self.potential = potential
        self.regulariser = regulariser
        self.solver = solver
        self.adjoint = adjoint
        self.output_size = output_size
        self.initial_value = jnp.zeros(output_size) if learnable_start else None

    @property
    def energy(self) -> Energy:
        """The energy E(X, y) = R(y) + sum_i F(x_i, y) that this layer minimises."""
        return Energy(self.potential, self.regulariser)

    def _check_input(self, x) -> None:
        input_size = getattr(self.potential, "input_size", None)
        if input_size is not None:
            check_feature_size(x, input_size)
        parameter_dtypes = {leaf.dtype for leaf in jax.tree.leaves(eqx.filter(self, eqx.is_inexact_array))}
        wider = [d for d in parameter_dtypes if jnp.finfo(d).bits > jnp.finfo(x.dtype).bits]
        if wider:
            raise ValueError(
                f"`x` has dtype {x.dtype} but the layer has {wider[0]} parameters, so the output would not be "
                f"{x.dtype}. Cast the input with x.astype({wider[0]}) or the layer with "
                f"jax.tree.map(lambda a: a.astype(jnp.{x.dtype}) if eqx.is_inexact_array(a) else a, layer)."
            )

    def _start(self, x) -> Float[Array, " m"]:
        size = x.shape[-1] if self.output_size is None else self.output_size
        if self.initial_value is None:
            return jnp.zeros(size, x.dtype)
        return self.initial_value.astype(x.dtype)

    def solve_set(self, x: Float[Array, "n d"], mask: Bool[Array, " n"]) -> Solution:
        """Minimise the energy of one padded set and return the full `Solution`."""
        y0 = self._start(x)

        # A set with a NaN or inf element is solved as an empty set and flagged NONFINITE, so its
        # value and every gradient stay finite and cannot poison the other sets of a batch.
        num_elements = jnp.sum(mask).astype(jnp.int32)
        finite_rows = jnp.all(jnp.isfinite(x), axis=-1)
        invalid = jnp.any(mask & ~finite_rows)
        x = jnp.where(finite_rows[:, None], x, jnp.zeros((), x.dtype))
        mask = mask & ~invalid

        potential = self.potential
        if isinstance(potential, FunctionPotential):
            # Arrays that `fn` closes over become leaves, so the adjoints can freeze and differentiate them.
            potential = potential.closure_converted(jnp.zeros(x.shape[1:], x.dtype), y0)
        problem = EnergyProblem(Energy(potential, self.regulariser), x, mask)
        out = self.adjoint.solve(self.solver, problem, y0)

        empty = ~jnp.any(mask)
        value = jnp.where(empty, y0, out.y).astype(x.dtype)
        residual = jnp.where(empty, 0, max_abs_grad(out.state))
        steps = jnp.maximum(out.stats.num_steps, 1)
        squared_norm_final = jnp.sum(out.state.grad * out.state.grad)
        aux_loss = jnp.where(
            out.stats.num_steps > 0, out.stats.sum_squared_grad_norm / steps, squared_norm_final
        )
        result = jnp.where(empty, SolveResult.SUCCESSFUL, out.stats.result)
        result = jnp.where(invalid, SolveResult.NONFINITE, result)
        return Solution(
            value=value,
            residual=residual.astype(x.dtype),
            grad_norm=jnp.where(empty, 0, jnp.sqrt(squared_norm_final)).astype(x.dtype),
            energy=out.state.value.astype(x.dtype),
            num_steps=out.stats.num_steps,
            converged=result == SolveResult.SUCCESSFUL,
            result=result.astype(jnp.int32),
            aux_loss=jnp.where(empty, 0, aux_loss).astype(x.dtype),
            num_elements=num_elements,
            backward_residual=out.backward_residual.astype(x.dtype),
            backward_fallback=out.backward_fallback,
        )

    def solve_segments(
        self, x: Float[Array, "total d"], segment_ids: Int[Array, " total"], num_segments: int,
        max_segment_size: int | None = None,
    ) -> Solution:
        """Minimise the energy of every segment; each field of the `Solution` gains a leading axis."""
        size = x.shape[0] if max_segment_size is None else max_segment_size
        padded, mask, sizes = segments_to_padded(x, segment_ids, num_segments, size)
        solution = jax.vmap(self.solve_set)(padded, mask)
        overflow = sizes > size
        result = jnp.where(overflow, SolveResult.SEGMENT_OVERFLOW, solution.result)
        return eqx.tree_at(
            lambda s: (s.result, s.converged), solution, (result, solution.converged & ~overflow)
        )

    def pool_set(self, x, mask):
        return self.solve_set(x, mask).value

    def pool_segments(self, x, segment_ids, num_segments, max_segment_size=None):
        return self.solve_segments(x, segment_ids, num_segments, max_segment_size).value

    def solve(
        self,
        x: Float[Array, "n d"],
        mask: Bool[Array, " n"] | None = None,
        *,
        segment_ids: Int[Array, " n"] | None = None,
        num_segments: int | None = None,
        max_segment_size: int | None = None,
    ) -> Solution:
        """Pool like `__call__`, but return the whole `Solution` rather than only its value."""
        if segment_ids is not None:
            if mask is not None:
                raise ValueError("Pass either `mask` or `segment_ids`, not both: fold the mask into the ids.")
            check_set(x, None)
            self._check_input(x)
            check_segments(x, segment_ids, num_segments, max_segment_size)
            return self.solve_segments(x, segment_ids, num_segments, max_segment_size)
        if num_segments is not None or max_segment_size is not None:
            raise ValueError("`num_segments` and `max_segment_size` only apply together with `segment_ids`.")
        check_set(x, mask)
        self._check_input(x)
        if mask is None:
            mask = jnp.ones(x.shape[0], bool)
        return self.solve_set(x, mask)

    def __call__(self, x, mask=None, *, segment_ids=None, num_segments=None, max_segment_size=None, key=None):
        del key
        return self.solve(
            x, mask, segment_ids=segment_ids, num_segments=num_segments, max_segment_size=max_segment_size
        ).value
