"""Potentials F(x, y): the per-element term of the equilibrium energy.

A potential scores how well a candidate aggregate `y` of shape (M,) agrees with one set element
`x` of shape (d,). The energy of a set sums the potential over its elements (see `_energy.py`).
A potential whose value is a sum of squares, F = ||r(x, y)||^2, also exposes the residual
vector `r`, so least-squares solvers such as Gauss-Newton can use its Jacobian.
"""

import abc
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, Scalar


class AbstractPotential(eqx.Module):
    """A scalar function F(x, y) of one set element `x` (d,) and the aggregate `y` (M,)."""

    @abc.abstractmethod
    def __call__(self, x: Float[Array, " d"], y: Float[Array, " m"]) -> Scalar:
        """Return F(x, y)."""


class AbstractLeastSquaresPotential(AbstractPotential):
    """A potential of the form F(x, y) = ||r(x, y)||^2 with a residual vector r."""

    @abc.abstractmethod
    def residual(self, x: Float[Array, " d"], y: Float[Array, " m"]) -> Float[Array, " r"]:
        """Return the residual vector r(x, y)."""

    def __call__(self, x, y):
        r = self.residual(x, y)
        return jnp.sum(r * r)


class _ResNetTrunk(eqx.Module):
    """A fully connected ResNet: linear layers with skip connections between equal widths."""

    layers: tuple[eqx.nn.Linear, ...]
    activation: Callable = eqx.field(static=True)

    def __init__(self, in_size: int, sizes: Sequence[int], activation: Callable, *, key: PRNGKeyArray):
        keys = jax.random.split(key, len(sizes))
        widths = [in_size, *sizes]
        self.layers = tuple(eqx.nn.Linear(a, b, key=k) for a, b, k in zip(widths[:-1], widths[1:], keys))
        self.activation = activation

    def __call__(self, z):
        h = self.layers[0](z)
        for layer in self.layers[1:]:
            update = layer(self.activation(h))
            h = h + update if update.shape == h.shape else update
        return h


class ResNetPotential(AbstractPotential):
    """A learned potential: a fully connected ResNet over the concatenation [x, y].

    `hidden_sizes` lists the widths of every layer, the last one included, as in the layer
    sizes [256, 256, 1] (scalar head) or [512, 512, 32] (sum-of-squares head). Consecutive
    layers of equal width get a skip connection.

    With `head="scalar"` the last width must be 1 and F is that output. With
    `head="sum_of_squares"` F = ||r||^2 where r is the last layer's output; use
    `SumOfSquaresResNetPotential`'s `residual` for least-squares solvers.

    **Arguments:**

    - `input_size`: d, the size of one set element.
    - `output_size`: M, the size of the aggregate y.
    - `hidden_sizes`: the widths of the layers, last one included.
    - `activation`: a smooth activation. Implicit differentiation uses second derivatives in y,
      which vanish almost everywhere for piecewise-linear activations such as ReLU.
    - `key`: a JAX PRNG key for the initial weights.
    """

    trunk: _ResNetTrunk
    input_size: int = eqx.field(static=True)
    output_size: int = eqx.field(static=True)

    def __init__(
        self,
        input_size: int,
        output_size: int,
        hidden_sizes: Sequence[int] = (256, 256, 1),
        activation: Callable = jax.nn.silu,
        *,
        key: PRNGKeyArray,
    ):
        _check_sizes(input_size, output_size, hidden_sizes)
        if hidden_sizes[-1] != 1:
            raise ValueError(
                f"A scalar ResNetPotential needs a last width of 1, got hidden_sizes={list(hidden_sizes)}. "
                "Use SumOfSquaresResNetPotential for a vector output whose squares are summed."
            )
        self.trunk = _ResNetTrunk(input_size + output_size, hidden_sizes, activation, key=key)
        self.input_size = input_size
        self.output_size = output_size

    def __call__(self, x, y):
        return self.trunk(jnp.concatenate([x, y]))[0]


class FunctionPotential(AbstractPotential):
    """A potential given as a plain function `fn(x, y) -> scalar`.

    `fn` may close over arrays, traced ones included (for example parameters inside
    `jax.grad`). The layer hoists those arrays into explicit pytree leaves before solving (see
    `closure_converted`), so every differentiation mode, the implicit one included, can freeze
    them during the forward solve and differentiate them afterwards.

    **Arguments:**

    - `fn`: a function of one set element `x` (d,) and the aggregate `y` (M,) that returns a
      scalar. It must be differentiable twice in `y` for implicit differentiation.
    - `input_size`: d, checked against the input when given.
    - `output_size`: M, the size of the aggregate. Without it the layer takes M = d unless the
      layer gets its own `output_size`.
    """

    fn: Callable[[Array, Array], Scalar]
    input_size: int | None = eqx.field(static=True, default=None)
    output_size: int | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        if not callable(self.fn):
            raise ValueError(f"FunctionPotential needs a callable `fn(x, y)`, got {type(self.fn).__name__}.")
        for name, size in (("input_size", self.input_size), ("output_size", self.output_size)):
            if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
                raise ValueError(f"FunctionPotential needs {name} to be a positive int or None, got {size!r}.")

    def __call__(self, x, y):
        value = self.fn(x, y)
        if jnp.shape(value) != ():
            raise ValueError(
                f"FunctionPotential's `fn` must return a scalar, got shape {jnp.shape(value)}. "
                "Reduce the output, for example with jnp.sum."
            )
        return value

    def closure_converted(self, x: Float[Array, " d"], y: Float[Array, " m"]) -> "FunctionPotential":
        """Return a copy whose `fn` holds every closed-over array as a pytree leaf.

        **Arguments:**

        - `x`, `y`: example arguments; only their shapes and dtypes are used.

        **Returns:** a `FunctionPotential` that computes the same values.
        """
        converted = eqx.filter_closure_convert(self.fn, x, y)
        return FunctionPotential(converted, self.input_size, self.output_size)


class SumOfSquaresResNetPotential(AbstractLeastSquaresPotential):
    """A learned potential F(x, y) = ||r(x, y)||^2 with r a fully connected ResNet over [x, y].

    The widths [512, 512, 32] and [600, 300, 32] are the class-counting and molecular
    configurations of Equilibrium Aggregation. F is non-negative by construction, and the
    energy is a nonlinear least-squares problem in y, which Gauss-Newton solvers exploit.
    Arguments are those of `ResNetPotential`, with any last width.
    """

    trunk: _ResNetTrunk
    input_size: int = eqx.field(static=True)
    output_size: int = eqx.field(static=True)

    def __init__(
        self,
        input_size: int,
        output_size: int,
        hidden_sizes: Sequence[int] = (512, 512, 32),
        activation: Callable = jax.nn.silu,
        *,
        key: PRNGKeyArray,
    ):
        _check_sizes(input_size, output_size, hidden_sizes)
        self.trunk = _ResNetTrunk(input_size + output_size, hidden_sizes, activation, key=key)
        self.input_size = input_size
        self.output_size = output_size

    def residual(self, x, y):
        return self.trunk(jnp.concatenate([x, y]))


def _check_sizes(input_size, output_size, hidden_sizes):
    if input_size <= 0 or output_size <= 0:
        raise ValueError(
            f"input_size and output_size must be positive, got input_size={input_size}, output_size={output_size}."
        )
    if len(hidden_sizes) == 0 or any(int(w) <= 0 for w in hidden_sizes):
        raise ValueError(f"hidden_sizes must be a non-empty list of positive widths, got {list(hidden_sizes)}.")


# Analytic potentials. Each acts coordinate-wise, so x and y have the same size d = M, and
# with the regulariser named in its docstring its minimiser is a classical pooling.


class MeanPotential(AbstractLeastSquaresPotential):
    """F(x, y) = ||x - y||^2. With `ZeroRegulariser`, the minimiser is the mean of the set."""

    def residual(self, x, y):
        return x - y


class MedianPotential(AbstractPotential):
    """A smoothed absolute deviation, F(x, y) = sum_k sqrt((x_k - y_k)^2 + s^2) - s.

    With `ZeroRegulariser` and s -> 0 the minimiser is the coordinate-wise median; `smoothing`
    s > 0 keeps the gradient continuous so gradient methods converge. For an odd number of
    elements whose gaps around the median exceed s, the minimiser lies within about s of the
    median.
    """

    smoothing: float = eqx.field(static=True, default=1e-3)

    def __check_init__(self):
        if not self.smoothing > 0:
            raise ValueError(f"MedianPotential needs smoothing > 0, got {self.smoothing}.")

    def __call__(self, x, y):
        s = jnp.asarray(self.smoothing, y.dtype)
        return jnp.sum(jnp.sqrt((x - y) ** 2 + s * s) - s)


class MaxPotential(AbstractPotential):
    """A smoothed hinge, F(x, y) = sum_k t * exp((x_k - y_k) / t).

    It is a smooth stand-in for max(0, x - y), whose minimiser set [max, inf) has no single
    point. With `LinearRegulariser` (R(y) = sum(y)) the minimiser is the log-sum-exp
    t * log(sum_i exp(x_i / t)) per coordinate, which lies in [max, max + t * log N].
    """

    temperature: float = eqx.field(static=True, default=1e-2)

    def __check_init__(self):
        if not self.temperature > 0:
            raise ValueError(f"MaxPotential needs temperature > 0, got {self.temperature}.")

    def __call__(self, x, y):
        t = jnp.asarray(self.temperature, y.dtype)
        return jnp.sum(t * jnp.exp((x - y) / t))


class SumPotential(AbstractPotential):
    """F(x, y) = -x . y. With `L2Regulariser(weight=0.5)`, R(y) = ||y||^2 / 2, the minimiser is the sum."""

    def __call__(self, x, y):
        return -jnp.dot(x, y)
