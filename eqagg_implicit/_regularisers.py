"""Regularisers R(y): the set-independent term of the equilibrium energy."""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Scalar


class AbstractRegulariser(eqx.Module):
    """A scalar function R(y) of the aggregate alone."""

    @abc.abstractmethod
    def __call__(self, y: Float[Array, " m"]) -> Scalar:
        """Return R(y)."""

    def residual(self, y: Float[Array, " m"]) -> Float[Array, " r"]:
        """Return r with R(y) = ||r||^2, for least-squares solvers; raise if R has no such form."""
        raise TypeError(f"{type(self).__name__} is not a sum of squares, so least-squares solvers cannot use it.")


def inverse_softplus(value: float) -> float:
    """Return z with softplus(z) = value, for initialising a softplus-parameterised weight."""
    return float(value + np.log(-np.expm1(-value)))


class L2Regulariser(AbstractRegulariser):
    """R(y) = softplus(lambda) * ||y||^2 with a learnable lambda.

    **Arguments:**

    - `weight`: the initial value of softplus(lambda); must be positive.
    - `learnable`: whether gradients reach lambda. The fixed weight 0.5 gives the R(y) = ||y||^2 / 2
      that turns `SumPotential` into sum pooling.
    """

    raw_weight: Array
    learnable: bool = eqx.field(static=True)

    def __init__(self, weight: float = 1.0, learnable: bool = True):
        if not weight > 0:
            raise ValueError(f"L2Regulariser needs weight > 0, got {weight}.")
        self.raw_weight = jnp.asarray(inverse_softplus(weight))
        self.learnable = learnable

    @property
    def weight(self) -> Scalar:
        raw = self.raw_weight if self.learnable else jax.lax.stop_gradient(self.raw_weight)
        return jax.nn.softplus(raw)

    def __call__(self, y):
        return self.weight.astype(y.dtype) * jnp.sum(y * y)

    def residual(self, y):
        return jnp.sqrt(self.weight).astype(y.dtype) * y


class ZeroRegulariser(AbstractRegulariser):
    """R(y) = 0."""

    def __call__(self, y):
        return jnp.zeros((), y.dtype)

    def residual(self, y):
        return jnp.zeros((0,), y.dtype)


class LinearRegulariser(AbstractRegulariser):
    """R(y) = weight * sum(y). Bounded below only together with a potential that grows as y falls,
    such as `MaxPotential`; it has no minimiser of its own."""

    weight: float = eqx.field(static=True, default=1.0)

    def __call__(self, y):
        return jnp.asarray(self.weight, y.dtype) * jnp.sum(y)
