"""A convolutional ResNet that encodes one grayscale image into a vector."""

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray


class DownsamplingBlock(eqx.Module):
    """A pre-activation residual block whose 3x3 convolutions halve the height and width.

    The main branch is act -> 3x3 conv with stride 2 -> act -> 3x3 conv with stride 1. The
    shortcut is a 1x1 convolution with stride 2, so that both branches have `out_channels`
    channels at half the spatial size. Arrays are channel-first, (C, H, W), as in `eqx.nn.Conv2d`.

    **Arguments:**

    - `in_channels`, `out_channels`: the channels of the input and of the output.
    - `activation`: the nonlinearity before each 3x3 convolution.
    - `key`: a JAX PRNG key for the initial weights.
    """

    first: eqx.nn.Conv2d
    second: eqx.nn.Conv2d
    shortcut: eqx.nn.Conv2d
    activation: Callable = eqx.field(static=True)

    def __init__(self, in_channels: int, out_channels: int, activation: Callable = jax.nn.relu, *, key: PRNGKeyArray):
        first_key, second_key, shortcut_key = jax.random.split(key, 3)
        self.first = eqx.nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1, key=first_key)
        self.second = eqx.nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, key=second_key)
        self.shortcut = eqx.nn.Conv2d(in_channels, out_channels, 1, stride=2, padding=0, key=shortcut_key)
        self.activation = activation

    def __call__(self, x: Float[Array, "c h w"]) -> Float[Array, "c_out h_out w_out"]:
        h = self.first(self.activation(x))
        h = self.second(self.activation(h))
        return h + self.shortcut(x)


class ConvEncoder(eqx.Module):
    """Encode one image into a vector with a convolutional ResNet and a linear projection.

    Each of the blocks is a `DownsamplingBlock`, so with the default channels [16, 32, 64] a
    32x32 image becomes 64 maps of 4x4, which are flattened and projected linearly to
    `output_size`. This is the image encoder of the class-counting experiment of Equilibrium
    Aggregation (Bartunov, Fuchs and Lillicrap, UAI 2022): three blocks of 3x3 filters with
    stride 2 on 32x32 inputs, then a projection to 256 dimensions.

    The input is channel-last, (H, W, C), the layout of the image data sets in
    `eqagg_implicit.data`; the encoder transposes it to the channel-first layout of
    `eqx.nn.Conv2d` itself. Call it on one image and use `jax.vmap` for a batch or a set.

    **Arguments:**

    - `image_size`: H = W of the input; it must be divisible by 2 ** len(channels).
    - `in_channels`: C of the input; 1 for grayscale.
    - `channels`: the output channels of each block.
    - `output_size`: the size of the encoding.
    - `activation`: the nonlinearity inside the blocks and before the projection.
    - `key`: a JAX PRNG key for the initial weights.
    """

    blocks: tuple[DownsamplingBlock, ...]
    projection: eqx.nn.Linear
    activation: Callable = eqx.field(static=True)
    image_size: int = eqx.field(static=True)
    in_channels: int = eqx.field(static=True)

    def __init__(
        self,
        image_size: int = 32,
        in_channels: int = 1,
        channels: Sequence[int] = (16, 32, 64),
        output_size: int = 256,
        activation: Callable = jax.nn.relu,
        *,
        key: PRNGKeyArray,
    ):
        channels = tuple(int(c) for c in channels)
        if len(channels) == 0 or any(c <= 0 for c in channels):
            raise ValueError(f"channels must be a non-empty list of positive integers, got {list(channels)}.")
        if in_channels <= 0 or output_size <= 0:
            raise ValueError(
                f"in_channels and output_size must be positive, got in_channels={in_channels}, "
                f"output_size={output_size}."
            )
        factor = 2 ** len(channels)
        if image_size <= 0 or image_size % factor != 0:
            raise ValueError(
                f"image_size={image_size} must be a positive multiple of {factor}, because each of the "
                f"{len(channels)} blocks halves the height and width; resize the images or drop a block."
            )

        block_keys = jax.random.split(key, len(channels) + 1)
        widths = (in_channels, *channels)
        self.blocks = tuple(
            DownsamplingBlock(a, b, activation, key=k) for a, b, k in zip(widths[:-1], widths[1:], block_keys[:-1])
        )

        final_size = image_size // factor
        self.projection = eqx.nn.Linear(channels[-1] * final_size * final_size, output_size, key=block_keys[-1])
        self.activation = activation
        self.image_size = image_size
        self.in_channels = in_channels

    def __call__(self, image: Float[Array, "h w c"]) -> Float[Array, " m"]:
        """Encode one channel-last image of shape (image_size, image_size, in_channels)."""
        expected = (self.image_size, self.image_size, self.in_channels)
        if image.shape != expected:
            raise ValueError(
                f"ConvEncoder expects one channel-last image of shape {expected}, got {image.shape}; "
                "use jax.vmap for a batch of images."
            )

        h = jnp.transpose(image, (2, 0, 1))
        for block in self.blocks:
            h = block(h)

        return self.projection(self.activation(h).reshape(-1))
