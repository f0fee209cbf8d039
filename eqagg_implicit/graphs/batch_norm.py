"""Batch normalisation over the real rows of a padded batch."""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float


class MaskedBatchNorm(eqx.Module):
    """Batch normalisation whose statistics come from the rows marked real by a mask.

    `eqx.nn.BatchNorm` averages over every row of the batch and expects a `vmap` axis name,
    so the padding nodes and graphs that `jraph.pad_with_graphs` adds would shift its
    statistics. This layer computes the mean and the biased variance over the masked rows only,
    so padding changes neither the training output of a real row nor the running statistics.
    It follows PyTorch's `BatchNorm1d`: running averages with `momentum` 0.1, the unbiased
    variance in the running average, and the running statistics at inference. A batch with no
    real rows leaves the running statistics unchanged.

    The running mean and variance live in an `eqx.nn.State`: build the model with
    `eqx.nn.make_with_state` and thread the state through every call.

    **Arguments:**

    - `size`: the number of features.
    - `momentum`: the weight of the current batch in the running averages.
    - `eps`: added to the variance before the square root.
    """

    weight: Float[Array, " size"]
    bias: Float[Array, " size"]
    state_index: eqx.nn.StateIndex
    momentum: float = eqx.field(static=True)
    eps: float = eqx.field(static=True)

    def __init__(self, size: int, momentum: float = 0.1, eps: float = 1e-5):
        if not 0 <= momentum <= 1:
            raise ValueError(f"MaskedBatchNorm needs momentum in [0, 1], got {momentum!r}.")
        if not eps > 0:
            raise ValueError(f"MaskedBatchNorm needs eps > 0, got {eps!r}.")
        self.weight = jnp.ones(size)
        self.bias = jnp.zeros(size)
        self.state_index = eqx.nn.StateIndex((jnp.zeros(size), jnp.ones(size)))
        self.momentum = momentum
        self.eps = eps

    def __call__(
        self,
        x: Float[Array, "n size"],
        mask: Bool[Array, " n"],
        state: eqx.nn.State,
        *,
        inference: bool = False,
    ) -> tuple[Float[Array, "n size"], eqx.nn.State]:
        """Normalise `x` with batch statistics (training) or running statistics (inference).

        **Arguments:**

        - `x`: the rows to normalise, padding rows included.
        - `mask`: True for the rows that count towards the statistics.
        - `state`: the model state holding the running statistics.
        - `inference`: use the running statistics and leave the state unchanged.

        **Returns:** `(normalised x, updated state)`. Padding rows are normalised too, with the
        statistics of the real rows.
        """
        running_mean, running_var = state.get(self.state_index)

        if inference:
            mean, var = running_mean.astype(x.dtype), running_var.astype(x.dtype)
        else:
            weights = mask.astype(x.dtype)[:, None]
            count = jnp.sum(weights)
            mean = jnp.sum(weights * x, axis=0) / jnp.maximum(count, 1)
            deviation = x - mean
            var = jnp.sum(weights * deviation * deviation, axis=0) / jnp.maximum(count, 1)

            unbiased_var = var * count / jnp.maximum(count - 1, 1)
            momentum = jnp.where(count > 0, self.momentum, 0).astype(running_mean.dtype)
            new_mean = (1 - momentum) * running_mean + momentum * mean.astype(running_mean.dtype)
            new_var = (1 - momentum) * running_var + momentum * unbiased_var.astype(running_var.dtype)
            state = state.set(self.state_index, (new_mean, new_var))

        normalised = (x - mean) / jnp.sqrt(var + self.eps)
        return normalised * self.weight.astype(x.dtype) + self.bias.astype(x.dtype), state
