"""A set model: encode each element, pool the set, and map the pooled vector to the output."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from .._layer import EquilibriumAggregation
from .._pooling import AbstractPooling
from .mlp import ResNetMLP


class SetModel(eqx.Module):
    """decoder(pool({encoder(x_i)})), with equilibrium convergence statistics on the side.

    **Arguments:**

    - `encoder`: applied to every element before pooling, or `None` to pool the raw elements
      (as equilibrium aggregation does, whose potential reads each element itself).
    - `pooling`: any `AbstractPooling`.
    - `decoder`: maps the pooled vector to the output.
    """

    encoder: ResNetMLP | None
    pooling: AbstractPooling
    decoder: ResNetMLP

    def __call__(
        self, x: Float[Array, "n d"], mask: Bool[Array, " n"] | None = None
    ) -> tuple[Float[Array, " k"], dict[str, Array]]:
        """Predict the output for one set.

        **Arguments:**

        - `x`: the set, shape (N, d).
        - `mask`: optional boolean array of shape (N,), True for real elements.

        **Returns:** `(output, statistics)`. For equilibrium pooling `statistics` contains
        "residual" (max |dE/dy| at the returned aggregate), "aux_loss" (the mean squared energy
        gradient norm over the solver steps) and "solver_steps"; for other poolings it is empty.
        """
        h = x if self.encoder is None else jax.vmap(self.encoder)(x)

        statistics: dict[str, Array] = {}
        if isinstance(self.pooling, EquilibriumAggregation):
            solution = self.pooling.solve(h, mask)
            pooled = solution.value
            statistics = {
                "residual": solution.residual,
                "aux_loss": solution.aux_loss,
                "solver_steps": solution.num_steps.astype(jnp.float32),
            }
        else:
            pooled = self.pooling(h, mask)

        return self.decoder(pooled), statistics
