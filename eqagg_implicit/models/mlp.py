"""A fully connected ResNet: the element encoder and output network of the set models."""

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
from jaxtyping import Array, Float, PRNGKeyArray


class ResNetMLP(eqx.Module):
    """A stack of linear layers with an activation between them and skips between equal widths.

    Layer k computes h_k = W_k act(h_{k-1}) + b_k, plus h_{k-1} when both have the same width.
    The first layer reads the input without an activation, and the last layer's output is
    returned as is, so the network can regress any real value.

    **Arguments:**

    - `input_size`: the size of the input vector.
    - `layer_sizes`: the output width of every layer, the last one included, such as
      [256, 256, D] for an element encoder.
    - `activation`: the nonlinearity between layers.
    - `key`: a JAX PRNG key for the initial weights.
    """

    layers: tuple[eqx.nn.Linear, ...]
    activation: Callable = eqx.field(static=True)
    input_size: int = eqx.field(static=True)
    output_size: int = eqx.field(static=True)

    def __init__(
        self,
        input_size: int,
        layer_sizes: Sequence[int],
        activation: Callable = jax.nn.relu,
        *,
        key: PRNGKeyArray,
    ):
        if input_size <= 0 or len(layer_sizes) == 0 or any(int(size) <= 0 for size in layer_sizes):
            raise ValueError(
                f"ResNetMLP needs a positive input_size and a non-empty list of positive layer_sizes, "
                f"got input_size={input_size}, layer_sizes={list(layer_sizes)}."
            )
        widths = [input_size, *layer_sizes]
        keys = jax.random.split(key, len(layer_sizes))
        self.layers = tuple(
            eqx.nn.Linear(width_in, width_out, key=layer_key)
            for width_in, width_out, layer_key in zip(widths[:-1], widths[1:], keys)
        )
        self.activation = activation
        self.input_size = input_size
        self.output_size = int(layer_sizes[-1])

    def __call__(self, x: Float[Array, " input_size"]) -> Float[Array, " output_size"]:
        h = self.layers[0](x)
        for layer in self.layers[1:]:
            update = layer(self.activation(h))
            h = h + update if update.shape == h.shape else update
        return h
