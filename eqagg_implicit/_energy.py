"""The equilibrium energy E(X, y) = R(y) + sum_i F(x_i, y) of one set, as a solvable problem."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Scalar

from ._potentials import AbstractLeastSquaresPotential, AbstractPotential
from ._regularisers import AbstractRegulariser, L2Regulariser, ZeroRegulariser


class Energy(eqx.Module):
    """E(X, y) = R(y) + sum_i mask_i * F(x_i, y).

    The sum runs over the set's real elements, never a mean, so the energy of a set depends on
    nothing outside it.
    """

    potential: AbstractPotential
    regulariser: AbstractRegulariser

    def __call__(self, y: Float[Array, " m"], x: Float[Array, "n d"], mask: Bool[Array, " n"]) -> Scalar:
        x = _fill_padding(x, mask)
        per_element = jax.vmap(self.potential, in_axes=(0, None))(x, y)
        return self.regulariser(y) + jnp.sum(jnp.where(mask, per_element, 0))

    @property
    def is_least_squares(self) -> bool:
        """Whether E is a sum of squares ||r(y)||^2, so that Gauss-Newton solvers apply."""
        return isinstance(self.potential, AbstractLeastSquaresPotential) and isinstance(
            self.regulariser, (L2Regulariser, ZeroRegulariser)
        )

    def residual(self, y, x, mask) -> Float[Array, " r"]:
        """Return the stacked residual r(y) with E(y) = ||r(y)||^2: masked element residuals, then R's."""
        if not self.is_least_squares:
            raise TypeError(
                f"The energy of {type(self.potential).__name__} with {type(self.regulariser).__name__} is not a "
                "sum of squares. Least-squares solvers need a sum-of-squares potential (such as "
                "SumOfSquaresResNetPotential) and an L2 or zero regulariser."
            )
        x = _fill_padding(x, mask)
        per_element = jax.vmap(self.potential.residual, in_axes=(0, None))(x, y)
        per_element = jnp.where(mask[:, None], per_element, 0)
        return jnp.concatenate([per_element.reshape(-1), self.regulariser.residual(y)])


class EnergyProblem(eqx.Module):
    """One inner problem, min_y E(x, y), with everything it depends on as pytree leaves.

    Solvers receive the problem rather than a closure, so that gradients with respect to the
    potential, the regulariser and the set reach every array through ordinary JAX tracing.
    """

    energy: Energy
    x: Float[Array, "n d"]
    mask: Bool[Array, " n"]

    def value(self, y) -> Scalar:
        return self.energy(y, self.x, self.mask)

    def value_and_grad(self, y) -> tuple[Scalar, Float[Array, " m"]]:
        return jax.value_and_grad(self.value)(y)

    def grad(self, y) -> Float[Array, " m"]:
        return jax.grad(self.value)(y)

    def residual(self, y) -> Float[Array, " r"]:
        return self.energy.residual(y, self.x, self.mask)

    @property
    def is_least_squares(self) -> bool:
        return self.energy.is_least_squares


def _fill_padding(x, mask):
    # Padding rows may hold anything, NaN included, and even a zero row can overflow a potential
    # such as exp((x - y) / t) far from the set. A copy of a real element keeps their potential
    # values and derivatives as finite as the real ones, so the mask's zero cotangent never meets
    # an inf. With no real element, zero rows are used.
    if x.shape[0] == 0:
        return x
    filler = jnp.where(jnp.any(mask), x[jnp.argmax(mask)], jnp.zeros((), x.dtype))
    return jnp.where(mask[:, None], x, filler)
